"""The report's figures as PNG files, drawn from the report.json document: per-AU F1 bars
per model beside the trivial predictors, precision-recall curves per AU, and true vs
predicted AU co-occurrence matrices.

matplotlib is optional: without it ``write_plots`` writes nothing and returns an empty list
(the report says the plots were skipped). Figures are built with the object API
(``matplotlib.figure.Figure``), never ``pyplot``, so no global state or GUI backend is
touched.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from components.metrics.occurrence import TRIVIAL_PREDICTORS

__all__ = ["plots_available", "write_plots"]

_TRIVIAL_STYLE = {"all_positive": {"color": "0.55", "hatch": "//", "label": "all-positive"},
                  "base_rate_random": {"color": "0.8", "hatch": "..",
                                       "label": "base-rate random"}}


def plots_available() -> bool:
    """True when matplotlib can be imported."""
    return importlib.util.find_spec("matplotlib") is not None


def _figure(w: float, h: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=110, layout="constrained")


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def _nan(x: "float | None") -> float:
    return np.nan if x is None else 100.0 * x


def plot_f1_bars(doc: Mapping[str, Any], path: Path) -> Path:
    """Grouped bars: one group per AU (plus the mean), one bar per model and trivial predictor."""
    aus = [f"AU{a}" for a in doc["aus"]]
    names = list(doc["models"])
    groups = aus + ["mean"]
    n_bars = len(names) + len(TRIVIAL_PREDICTORS)
    width = 0.84 / n_bars
    fig = _figure(min(16.0, max(7.0, 0.25 * n_bars * len(groups) + 2)), 4.2)
    ax = fig.add_subplot()
    x = np.arange(len(groups))
    for i, (name, color) in enumerate(zip(names, _colors(len(names)))):
        m = doc["models"][name]
        mean = [_nan(m["f1"][au]) for au in aus] + [_nan(m["mean_f1"])]
        std = [_nan(m["f1_std"][au]) for au in aus] + [_nan(m["mean_f1_std"])]
        ax.bar(x + (i - n_bars / 2 + 0.5) * width, mean, width, yerr=np.nan_to_num(std),
               color=color, label=name, capsize=2, error_kw={"elinewidth": 0.8})
    for j, p in enumerate(TRIVIAL_PREDICTORS):
        t = doc["trivial"][p]
        vals = [_nan(t["f1"][au]) for au in aus] + [_nan(t["mean_f1"])]
        std = [_nan(t["f1_std"][au]) for au in aus] + [_nan(t["mean_f1_std"])]
        style = _TRIVIAL_STYLE[p]
        ax.bar(x + (len(names) + j - n_bars / 2 + 0.5) * width, vals, width,
               yerr=np.nan_to_num(std), capsize=2, error_kw={"elinewidth": 0.8},
               color=style["color"], hatch=style["hatch"], edgecolor="0.3", linewidth=0.4,
               label=f"{style['label']} (trivial)")
    ax.set_xticks(x, groups)
    ax.set_ylabel("F1 (%)")
    ax.set_ylim(0, 102)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(ncols=min(n_bars, 6), fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0),
              frameon=False)
    fig.savefig(path)
    return path


def plot_pr_curves(doc: Mapping[str, Any], path: Path) -> Path:
    """One panel per AU; a line per model and fold; dotted line at the AU's base rate."""
    aus = [f"AU{a}" for a in doc["aus"]]
    ncols = min(4, len(aus))
    nrows = -(-len(aus) // ncols)
    fig = _figure(3.0 * ncols, 2.7 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    names = list(doc["models"])
    for k, au in enumerate(aus):
        ax = axes[k // ncols][k % ncols]
        for name, color in zip(names, _colors(len(names))):
            folds = doc["models"][name]["folds"]
            aps = [f["ap"][au] for f in folds if f["ap"][au] is not None]
            label = f"{name} (AP {np.mean(aps):.2f})" if aps else f"{name} (no positives)"
            for f in folds:
                c = f["pr_curves"][k]
                if c is not None:
                    ax.plot(c["recall"], c["precision"], color=color, lw=1.2,
                            alpha=0.9 if len(folds) == 1 else 0.55, label=label)
                    label = None
        rates = [f["base_rate"][au] for f in doc["trivial"]["folds"]
                 if f["base_rate"][au] is not None]
        if rates:
            ax.axhline(float(np.mean(rates)), color="0.4", ls=":", lw=1, label="base rate")
        ax.set(xlim=(0, 1), ylim=(0, 1.02), title=au)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="lower left", frameon=False)
        if k % ncols == 0:
            ax.set_ylabel("precision", fontsize=8)
        if k // ncols == nrows - 1:
            ax.set_xlabel("recall", fontsize=8)
    for k in range(len(aus), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    fig.savefig(path)
    return path


def plot_cooccurrence(doc: Mapping[str, Any], path: Path) -> Path:
    """Heatmaps of P(column AU | row AU): true labels, then each model's predictions."""
    aus = [f"AU{a}" for a in doc["aus"]]
    names = list(doc["models"])
    first = {n: doc["models"][n]["folds"][0] for n in names}
    panels = [("true labels", first[names[0]]["cooccurrence"]["true"])]
    panels += [(f"{n} predicted", first[n]["cooccurrence"]["pred"]) for n in names]
    size = max(3.2, 0.33 * len(aus) + 1.2)
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig = _figure(size * ncols + 0.8, (size + 0.4) * nrows)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    axes = axes[:len(panels)]
    image = None
    for ax, (title, mat) in zip(axes, panels):
        m = np.array([[np.nan if v is None else v for v in row] for row in mat], dtype=float)
        image = ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(aus)), aus, rotation=90, fontsize=7)
        ax.set_yticks(range(len(aus)), aus, fontsize=7)
        ax.set_title(title, fontsize=9)
        if len(aus) <= 12:
            for i in range(len(aus)):
                for j in range(len(aus)):
                    if np.isfinite(m[i, j]):
                        ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=6,
                                color="black" if m[i, j] > 0.6 else "white")
    fig.colorbar(image, ax=axes, shrink=0.8, label="P(column on | row on)")
    fig.savefig(path)
    return path


def write_plots(plot_dir: "str | Path", doc: Mapping[str, Any]) -> list[Path]:
    """Write f1_per_au.png, pr_curves.png and cooccurrence.png; [] without matplotlib."""
    if not plots_available() or not doc.get("models"):
        return []
    out = Path(plot_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [plot_f1_bars(doc, out / "f1_per_au.png"),
            plot_pr_curves(doc, out / "pr_curves.png"),
            plot_cooccurrence(doc, out / "cooccurrence.png")]
