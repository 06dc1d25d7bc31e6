"""``mimisim plot``: a sweep's standard figures, with 95% confidence bands.

One figure per metric the study lists (``FIGURES`` in its module), as PNG,
SVG and PDF in ``RESULTS/figures/``, sized for a single paper column
(3.5 in wide, 7 pt text; nothing clipped: saved with a tight bounding box):
the first numeric grid parameter (or, for fanout, the room's members) on
the x axis, one series per combination of the other parameters (colour,
line style and marker all vary, so more than ten series stay distinct),
the mean with its 95% band, and each model column of the study drawn as an
open-marker line of the same colour. A categorical x axis (standby
settings, fault kinds) is drawn as points with error bars, never joined
lines. The legend sits outside the data, below the axes; the title names
the interval drawn and the fixed slice (grid keys with one value, e.g.
after ``--where``). Matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mimisim.analysis.studies import STUDIES
from mimisim.sim import units


def numeric(value: Any) -> tuple[float, str] | None:
    """A grid value as a number and its unit, for a numeric axis: a plain
    number, a duration (ms), a rate (per s) or a size (bytes); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value), ""
    for parse, unit in ((units.parse_duration, "ms"), (units.parse_rate, "per s"), (units.parse_size, "bytes")):
        try:
            return float(parse(value)), unit
        except (ValueError, TypeError):
            continue
    return None


def _axis(summary: pd.DataFrame, keys: Sequence[str]) -> tuple[str | None, list[str]]:
    """The x column (the first numeric key) and the line keys (the others)."""
    for k in keys:
        vals = summary[k].dropna().unique()
        if len(vals) > 1 and all(numeric(v) is not None for v in vals):
            return k, [o for o in keys if o != k]
    return (keys[0], list(keys[1:])) if keys else (None, [])


def _distinct_labels(values: Sequence[str]) -> list[str]:
    """Tick labels without the ``k=v`` words every value shares (a grid of
    mappings such as standby settings differs in one or two fields)."""
    words = [v.split(" ") for v in values]
    common = set(words[0]).intersection(*words[1:]) if len(words) > 1 else set()
    return [" ".join(w for w in ws if w not in common) or v for ws, v in zip(words, values, strict=True)]


def _short(key: str) -> str:
    """A key path's last two parts (``latency.value``), or the last one under
    ``providers.<domain>.`` (whose domain has dots of its own)."""
    parts = key.split(".")
    if parts[0] == "providers":
        return parts[-1]
    return ".".join(parts[-2:]) if len(parts) > 1 else key


_STYLES = ["-", "--", "-.", ":"]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
_MODEL_STYLE = (0, (1, 1))


def _style(i: int) -> tuple[str, Any, str]:
    """Colour, line style and marker of series ``i``: the colour cycles over
    ten, the line style and marker change with each cycle."""
    return f"C{i % 10}", _STYLES[(i // 10) % len(_STYLES)], _MARKERS[(i // 10 + i) % len(_MARKERS)]


def interval_name(summary: pd.DataFrame, metric: str) -> str:
    """What the band of ``metric`` is (the ``interval`` column of summary.csv, per kind)."""
    if f"{metric}_pooled" in summary.columns:
        return "pooled ratio, 95% cluster-robust t over runs"
    clamped = f"{metric}_clamped" in summary.columns and bool(summary[f"{metric}_clamped"].fillna(False).any())
    return "mean, 95% Student-t over runs" + (" (low clamped at 0)" if clamped else "")


def draw_metric(ax: Any, summary: pd.DataFrame, keys: Sequence[str], metric: str, ylabel: str,
                model: str | Sequence[str] | None = None) -> None:
    """Draw one metric of a sweep summary on a Matplotlib axis: a series per
    combination of the non-x keys with its 95% band (error bars on a
    categorical axis), the model column(s) in the series' colour."""
    xkey, line_keys = _axis(summary, keys)
    groups = summary.groupby(line_keys, sort=False, dropna=False) if line_keys else [((), summary)]
    models = [model] if isinstance(model, str) else list(model or [])
    unit = ""
    categorical = False
    x: list[float]
    ticks: tuple[list[float], list[str]] | None = None
    short: dict[str, dict[str, str]] = {}
    for k in line_keys:
        vals = [str(v) for v in dict.fromkeys(summary[k].astype(str))]
        short[k] = dict(zip(vals, _distinct_labels(vals), strict=True))
    for i, (gk, g) in enumerate(groups):
        gk = gk if isinstance(gk, tuple) else (gk,)
        lab = ", ".join(f"{_short(k)}={short[k].get(str(v), v)}" for k, v in zip(line_keys, gk, strict=True)) \
            or metric
        if xkey is None:
            x = [float(j) for j in range(len(g))]
            categorical = True
        else:
            parsed = [numeric(v) for v in g[xkey]]
            known = [p for p in parsed if p is not None]
            if len(known) == len(parsed):
                x = [p[0] for p in known]
                unit = known[0][1] if known else ""
            else:
                categorical = True
                cats = list(dict.fromkeys(str(v) for v in summary[xkey]))
                x = [float(cats.index(str(v))) for v in g[xkey]]
                ticks = ([float(j) for j in range(len(cats))], _distinct_labels(cats))
        order = sorted(range(len(x)), key=lambda j: x[j])
        xs = [x[j] for j in order]
        col = f"{metric}_pooled" if f"{metric}_pooled" in g.columns else metric
        mean = g[col if col.endswith("_pooled") else f"{col}_mean"].to_numpy(dtype=float)[order]
        lo = g[f"{col}_low"].to_numpy(dtype=float)[order]  # clamped in summary.csv where the metric is >= 0
        hi = g[f"{col}_high"].to_numpy(dtype=float)[order]
        color, ls, mk = _style(i)
        n_series = len(groups) if line_keys else 1
        if categorical:
            off = 0.6 * (i / max(1, n_series - 1) - 0.5) if n_series > 1 else 0.0
            xo = [v + off for v in xs]
            yerr = [[max(0.0, m - lo_) if lo_ == lo_ else 0.0 for m, lo_ in zip(mean, lo, strict=True)],
                    [max(0.0, hi_ - m) if hi_ == hi_ else 0.0 for m, hi_ in zip(mean, hi, strict=True)]]
            ax.errorbar(xo, mean, yerr=yerr, fmt=mk, color=color, markersize=4, capsize=2, linewidth=0.8,
                        label=lab)
        else:
            xo = xs
            ax.plot(xs, mean, marker=mk, linestyle=ls, color=color, markersize=3.5, linewidth=1.0, label=lab)
            ax.fill_between(xs, lo, hi, color=color, alpha=0.18, linewidth=0)
        for mi, mcol in enumerate(models):
            if f"{mcol}_mean" not in g.columns:
                continue
            mm = g[f"{mcol}_mean"].to_numpy(dtype=float)[order]
            if all(math.isnan(v) for v in mm):
                continue
            mlab = f"model {mcol} ({lab})" if line_keys else f"model {mcol}"
            if categorical:
                ax.plot(xo, mm, linestyle="none", marker="_" if mi == 0 else "x", markersize=9, color=color,
                        label=mlab)
            else:
                ax.plot(xs, mm, linestyle=_MODEL_STYLE if mi == 0 else (0, (4, 2)), marker="o" if mi == 0 else "x",
                        markerfacecolor="none", markersize=3.5, color=color, linewidth=1.0, alpha=0.9, label=mlab)
    if ticks is not None:
        ax.set_xticks(ticks[0], ticks[1], fontsize=6, rotation=20, ha="right")
    xl = _short(xkey) if xkey else "grid point"
    ax.set_xlabel(f"{xl} ({unit})" if unit else xl, fontsize=7)
    ax.set_ylabel(ylabel, fontsize=7)
    ax.tick_params(labelsize=6)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ncol = 1 if len(handles) <= 4 else 2
        ax.legend(handles, labels, fontsize=5.5, loc="upper center", bbox_to_anchor=(0.5, -0.28 if ticks else -0.2),
                  ncol=ncol, frameon=False)


def fixed_slice(summary: pd.DataFrame, grid: Sequence[str]) -> str:
    """The grid keys that take one value in ``summary`` (the slice a figure
    shows), as ``key=value`` text."""
    parts = [f"{_short(k)}={summary[k].iloc[0]}" for k in grid if k in summary.columns and summary[k].nunique() == 1]
    return ", ".join(parts)


def where_mask(summary: pd.DataFrame, where: Sequence[str], meta: dict[str, Any],
               group_keys: Sequence[str] = ()) -> pd.Series:
    """The rows matching every ``key=value`` of ``where``. A key that is not
    a grid key (or a study group key), or a value the grid does not have,
    raises ``ValueError`` naming what there is: an empty figure says
    nothing about why it is empty."""
    mask = pd.Series(True, index=summary.index)
    grid_values: dict[str, list[Any]] = meta.get("grid_values") or {}
    for cond in where:
        k, eq, v = cond.partition("=")
        if not eq or not k:
            raise ValueError(f"--where {cond}: expected KEY=VALUE")
        keys = [*meta.get("grid", []), *[g for g in group_keys if g in summary.columns]]
        if k not in keys:
            raise ValueError(f"--where {cond}: {k!r} is not a grid key (keys: {', '.join(keys) or 'none'})")
        values = [str(x) for x in grid_values[k]] if k in grid_values else \
            [str(x) for x in summary[k].dropna().unique()]
        if v not in values:
            raise ValueError(f"--where {cond}: {v!r} is not a value of {k} (values: {', '.join(values)})")
        match = summary[k].astype(str) == v
        num = numeric(v)
        if not match.any() and num is not None:  # the CSV read 5 back as 5.0
            match = summary[k].map(lambda x, num=num: numeric(x) == num)
        mask &= match.astype(bool)
    return mask


def plot_sweep(results: str | Path, *, out: str | Path | None = None, study: str | None = None,
               where: Sequence[str] = (), dpi: int = 200, size: tuple[float, float] = (3.5, 2.6)) -> list[Path]:
    """Draw the study's figures for a sweep folder (PNG, SVG and PDF);
    returns the files written. ``where``: ``key=value`` filters on the grid
    (a slice of a large grid; the slice is named in the title)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(results)
    meta_path = folder / "sweep.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder}: not a sweep results folder (no sweep.json)")
    meta = json.loads(meta_path.read_text())
    name = study or meta["study"]
    studies = meta.get("studies") or [meta["study"]]
    if name not in studies:
        raise ValueError(f"--study {name}: this sweep computed {', '.join(studies)} only "
                         f"(run mimisim sweep again with --study {name}; finished runs are kept)")
    mod = STUDIES[name]
    summary = pd.read_csv(folder / ("summary.csv" if name == meta["study"] else f"summary-{name}.csv"))
    summary = summary[where_mask(summary, where, meta, mod.GROUP_KEYS)]
    keys = [k for k in [*meta["grid"], *mod.GROUP_KEYS] if k in summary.columns and summary[k].nunique() > 1
            or k in mod.GROUP_KEYS and k in summary.columns]
    target = Path(out) if out is not None else folder / "figures"
    target.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    fixed = fixed_slice(summary, meta["grid"])
    runs = int(summary["n"].max()) if "n" in summary.columns and len(summary) else 0
    for metric, ylabel, model in mod.FIGURES:
        if f"{metric}_mean" not in summary.columns:
            continue
        fig, ax = plt.subplots(figsize=size)
        draw_metric(ax, summary, keys, metric, ylabel, model)
        title = f"{meta['scenario']}: {metric}\n{interval_name(summary, metric)}, n={runs} runs/point"
        if fixed:
            title += f"\n{fixed}"
        ax.set_title(title, fontsize=6.5)
        for ext in ("png", "svg", "pdf"):
            p = target / f"{meta['scenario']}-{metric}.{ext}"
            fig.savefig(p, dpi=dpi, bbox_inches="tight",
                        metadata={"Date": None} if ext == "svg" else {"CreationDate": None} if ext == "pdf" else None)
            written.append(p)
        plt.close(fig)
    return written
