"""Draw docs/figures/lifecycle.svg: where every hook and every component method runs.

    python docs/figures/lifecycle.py [--out docs/figures/lifecycle.svg]

The order follows mmcore/trainer.py; tests/test_hookspecs.py checks the hooks fire in this order and
tests/test_docs.py that every hook in mmcore/hookspecs.py and every Balancer method is drawn.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch, Rectangle  # noqa: E402

COLOURS = {"core": "#eeeeee", "component": "#cfe2f3", "hook": "#fde3c3"}
LEGEND = {"core": "the core", "component": "a component's method (balancer, valuator, supervisor)",
          "hook": "a hook (pluggy): registration, validation, commands, observers"}

# (text, kind, indent). A "loop" row opens a dashed frame around the rows below it that are
# indented deeper, up to the next row at its own indent or shallower.
RUN = [
    ("PluginHost(): built-ins, entry points, -p modules", "core", 0),
    ("mmcore_register_components(registry)", "hook", 0),
    ("mmcore_add_commands(subparsers, parents)", "hook", 0),
    ("mmcore validate / run: structure, core checks", "core", 0),
    ("mmcore_validate_config(config)", "hook", 0),
    ("Trainer: data, model, valuators, balancers, supervisors", "core", 0),
    ("balancers and supervisors: attach(model)", "component", 0),
    ("optimizer and scheduler built (after attach)", "core", 0),
    ("--resume: load_state_dict(state) of each component", "component", 0),
    ("--resume: mmcore_load_checkpoint(trainer, checkpoint)", "hook", 0),
    ("fit(): mmcore_train_start(trainer)", "hook", 0),
    ("each epoch", "loop", 0),
    ("balancers: on_epoch_start(epoch, control)", "component", 1),
    ("mmcore_epoch_start(trainer, epoch)", "hook", 1),
    ("training steps (right)", "core", 1),
    ("validation; mmcore_log_metrics(split='val')", "hook", 1),
    ("best so far: state_dict() of each component", "component", 1),
    ("mmcore_save_checkpoint(trainer, checkpoint) -> best/", "hook", 1),
    ("balancers: on_epoch_end(epoch, metrics, control)", "component", 1),
    ("mmcore_epoch_end(trainer, epoch, metrics)", "hook", 1),
    ("state_dict() of each component", "component", 1),
    ("mmcore_save_checkpoint(trainer, checkpoint) -> last/", "hook", 1),
    ("test split; mmcore_log_metrics(split='test')", "hook", 0),
    ("mmcore_train_end(trainer, summary)", "hook", 0),
]

STEP = [
    ("owner.step(closure, finish, state), or closure(); finish()", "component", 0),
    ("closure(): pass 0, 1, ... (a step owner calls it again)", "loop", 0),
    ("optimizer.zero_grad()", "core", 1),
    ("each micro-batch (run.grad_accum)", "loop", 1),
    ("balancers: before_forward(state)", "component", 2),
    ("model(batch): encoders, fusion", "core", 2),
    ("losses: task + fusion aux_losses", "core", 2),
    ("supervisors: losses(state)", "component", 2),
    ("pass 0: valuators: value(state)", "component", 2),
    ("balancers: before_backward(state)", "component", 2),
    ("sum(losses).backward()", "core", 2),
    ("mmcore_after_backward(trainer, state)", "hook", 2),
    ("finish(): once per step", "loop", 0),
    ("all-reduce gradients (DDP)", "core", 1),
    ("unscale (fp16 gradient scaler)", "core", 1),
    ("balancers (not the owner): after_backward(state)", "component", 1),
    ("clip gradients", "core", 1),
    ("mmcore_before_optimizer_step(trainer, state)", "hook", 1),
    ("optimizer.step(), scheduler.step(), broadcast buffers", "core", 1),
    ("every log_every_steps: mmcore_log_metrics(split='train')", "hook", 0),
    ("every checkpoint_every_steps: mmcore_save_checkpoint", "hook", 0),
]

ROW, WIDTH, INDENT = 0.42, 5.6, 0.3


def _frame_end(items, first):
    depth = items[first][2]
    last = first
    for k in range(first + 1, len(items)):
        if items[k][2] <= depth:
            break
        last = k
    return last


def draw_column(ax, items, x0, title):
    ax.text(x0, 0.35, title, fontsize=12, fontweight="bold", va="center")
    for i, (text, kind, indent) in enumerate(items):
        y = -(i + 1) * ROW
        x = x0 + indent * INDENT
        width = WIDTH - indent * 2 * INDENT
        if kind == "loop":
            end = _frame_end(items, i)
            nested = max(items[k][2] for k in range(i, end + 1)) - indent - 1  # frames inside this one
            bottom = -(end + 1) * ROW - 0.2 - 0.07 * nested
            ax.add_patch(Rectangle((x, bottom), width, y + 0.2 - bottom, fill=False, ec="#555555", lw=0.8, ls="--"))
            ax.text(x + 0.08, y, text, fontsize=8.5, va="center", style="italic", color="#333333")
            continue
        ax.add_patch(FancyBboxPatch((x + 0.04, y - 0.15), width - 0.08, 0.3,
                                    boxstyle="round,pad=0.02", fc=COLOURS[kind], ec="#888888", lw=0.6))
        ax.text(x + 0.12, y, text, fontsize=8.5, va="center", family="monospace" if kind == "hook" else None)


def figure():
    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "mmcore-lifecycle", "font.size": 9})
    rows = max(len(RUN), len(STEP)) + 1 + len(LEGEND)
    fig, ax = plt.subplots(figsize=(13, rows * ROW * 1.05))
    draw_column(ax, RUN, 0.0, "A run")
    draw_column(ax, STEP, 6.4, "One training step")
    for i, (kind, text) in enumerate(LEGEND.items()):
        y = -(rows - len(LEGEND) + i + 0.5) * ROW
        ax.add_patch(FancyBboxPatch((0.04, y - 0.12), 0.3, 0.24, boxstyle="round,pad=0.02",
                                    fc=COLOURS[kind], ec="#888888", lw=0.6))
        ax.text(0.45, y, text, fontsize=8.5, va="center")
    ax.set_xlim(-0.2, 12.2)
    ax.set_ylim(-rows * ROW, 0.6)
    ax.axis("off")
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".svg"))
    args = parser.parse_args()
    figure().savefig(args.out, format="svg", bbox_inches="tight", metadata={"Date": None})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
