"""A test-only plugin: SIGKILLs its own process right before optimizer step N (env MMCORE_TEST_KILL_AT_STEP)."""
import os
import signal

import mmcore


@mmcore.hookimpl
def mmcore_before_optimizer_step(trainer, state):
    if trainer.step == int(os.environ["MMCORE_TEST_KILL_AT_STEP"]):
        os.kill(os.getpid(), signal.SIGKILL)
