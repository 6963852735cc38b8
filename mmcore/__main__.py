"""`python -m mmcore` (also the entry for `torchrun -m mmcore run ...`)."""
import sys

from mmcore.cli import main

sys.exit(main())
