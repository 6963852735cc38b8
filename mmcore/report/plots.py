"""The report's figures, drawn with matplotlib (the optional `plots` extra, imported only here and
only when a figure is drawn). matplotlib's object API is used without pyplot, so drawing touches no
global backend state.

- training_curves: validation accuracy, per-modality accuracy and Shapley shares over epochs, one
  line per method (mean over seeds, band ± std), as the M-SAM appendix's Figure 4;
- gain_bars: each method's gain over the baseline, per dataset, with the paired std as error bars;
- robustness_curves: the score against the corruption rate, per protocol and target.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from mmcore.errors import MMCoreError
from mmcore.report.curves import Curves, seed_band

DPI = 80
PANEL = (3.6, 2.7)  # inches per panel


def _figure(rows: int, cols: int) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MMCoreError("mmcore report draws its figures with matplotlib, which is not installed: "
                          "pip install 'mmcore[plots]'") from None
    figure = Figure(figsize=(PANEL[0] * cols, PANEL[1] * rows), dpi=DPI, layout="constrained")
    return figure, figure.subplots(rows, cols, squeeze=False)


def _save(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", pil_kwargs={"optimize": True})
    return path


def method_colors(methods: Sequence[str], baseline: str | None = None) -> dict[str, Any]:
    """One fixed color per method across every figure; the baseline black."""
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    others = [m for m in methods if m != baseline]
    colors = {m: palette[i % len(palette)] for i, m in enumerate(others)}
    if baseline is not None:
        colors[baseline] = "black"
    return colors


def training_curves(runs: Mapping[str, Sequence[Curves]], modalities: Sequence[str], path: Path, title: str,
                    primary: str = "acc", baseline: str | None = None) -> Path:
    """Top row: fused and per-modality validation `primary`; bottom row: Shapley shares; legend last."""
    figure, axes = _figure(2, len(modalities) + 1)
    colors = method_colors(list(runs), baseline)
    panels = [(axes[0][0], primary, f"fused {primary}")]
    panels += [(axes[0][i + 1], f"{primary}/{m}", f"{primary} with only {m}") for i, m in enumerate(modalities)]
    panels += [(axes[1][i], f"value/{m}", f"Shapley share of {m}") for i, m in enumerate(modalities)]
    for ax, metric, label in panels:
        for method, curves in runs.items():
            band = seed_band(curves, metric)
            if band is None:
                continue
            epochs, mean, std = band
            ax.plot(epochs, mean, color=colors[method], label=method, lw=1.4, ls="--" if method == baseline else "-")
            ax.fill_between(epochs, mean - std, mean + std, color=colors[method], alpha=0.15, lw=0)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    legend = axes[1][-1]
    legend.axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    legend.legend(handles, labels, loc="center", fontsize=8, frameon=False)
    figure.suptitle(title, fontsize=10)
    return _save(figure, path)


def gain_bars(gains: Mapping[str, Mapping[str, Mapping[str, tuple[float, float]]]], methods: Sequence[str],
              path: Path, title: str, baseline: str, units: Mapping[str, str] | None = None) -> Path:
    """gains[dataset][method][metric] = (gain, std) in units[dataset] (default points); one panel per
    dataset, one bar group per method."""
    figure, axes = _figure(1, len(gains))
    for ax, (dataset, by_method) in zip(axes[0], gains.items()):
        shown = [m for m in methods if m in by_method]
        metrics = list(dict.fromkeys(k for m in shown for k in by_method[m]))
        height = 0.8 / max(1, len(metrics))
        for j, metric in enumerate(metrics):
            ys = [i + (j - (len(metrics) - 1) / 2) * height for i in range(len(shown))]
            values = [by_method[m].get(metric, (0.0, 0.0)) for m in shown]
            ax.barh(ys, [v[0] for v in values], height=height, xerr=[v[1] for v in values], label=metric,
                    error_kw={"lw": 0.8, "capsize": 2})
        ax.set_yticks(range(len(shown)), shown, fontsize=8)
        ax.invert_yaxis()
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(dataset, fontsize=9)
        ax.set_xlabel(f"gain over {baseline} ({(units or {}).get(dataset, 'points')})", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(axis="x", alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
    figure.suptitle(title, fontsize=10)
    return _save(figure, path)


def robustness_curves(sweeps: Mapping[str, Sequence[Mapping[str, Any]]], curve_names: Sequence[str], path: Path,
                      title: str, baseline: str | None = None) -> Path:
    """One panel per "<protocol>/<target>" curve (rows: protocols), one line per method (mean over seeds)."""
    import numpy as np

    protocols = list(dict.fromkeys(name.split("/")[0] for name in curve_names))
    targets = list(dict.fromkeys(name.split("/")[1] for name in curve_names))
    figure, axes = _figure(len(protocols), len(targets))
    colors = method_colors(list(sweeps), baseline)
    for r, protocol in enumerate(protocols):
        for c, target in enumerate(targets):
            ax, name = axes[r][c], f"{protocol}/{target}"
            for method, runs in sweeps.items():
                curves = [run["curves"][name] for run in runs if name in run["curves"]]
                if not curves:
                    continue
                rates, metric = runs[0]["settings"]["rates"], runs[0]["metric"]
                ax.plot(rates, np.mean(curves, axis=0), color=colors[method], label=method, lw=1.4, marker=".",
                        ls="--" if method == baseline else "-")
                ax.set_ylabel(metric, fontsize=8)
            what = "all modalities" if target == "all" else f"only {target}"
            ax.set_title(f"{protocol} rate, {what}", fontsize=9)
            ax.set_xlabel(f"{protocol} rate", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right center", fontsize=8, frameon=False)
    figure.suptitle(title, fontsize=10)
    return _save(figure, path)
