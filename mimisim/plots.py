"""``mimisim plot``: a sweep's standard figures, with 95% confidence bands.

One figure per metric the study lists (``FIGURES`` in its module), as PNG
and SVG in ``RESULTS/figures/``: the first grid parameter (or, for fanout,
the room's members) on the x axis, one line per combination of the other
parameters, the mean over seeds with its Student-t 95% band, and the
model's prediction dashed when the study has one. Axis labels carry units;
the title names the scenario. Matplotlib's Agg backend: no display needed.
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


def draw_metric(ax: Any, summary: pd.DataFrame, keys: Sequence[str], metric: str, ylabel: str,
                model: str | None = None) -> None:
    """Draw one metric of a sweep summary on a Matplotlib axis: a line per
    combination of the non-x keys, its 95% band, the model dashed."""
    xkey, line_keys = _axis(summary, keys)
    groups = summary.groupby(line_keys, sort=False, dropna=False) if line_keys else [((), summary)]
    unit = ""
    x: list[float]
    for i, (gk, g) in enumerate(groups):
        gk = gk if isinstance(gk, tuple) else (gk,)
        lab = ", ".join(f"{_short(k)}={v}" for k, v in zip(line_keys, gk, strict=True)) or metric
        if xkey is None:
            x = [float(j) for j in range(len(g))]
        else:
            parsed = [numeric(v) for v in g[xkey]]
            known = [p for p in parsed if p is not None]
            if len(known) == len(parsed):
                x = [p[0] for p in known]
                unit = known[0][1] if known else ""
            else:
                x = [float(j) for j in range(len(g))]
                ax.set_xticks(x, _distinct_labels([str(v) for v in g[xkey]]), fontsize=7, rotation=10)
        order = sorted(range(len(x)), key=lambda j: x[j])
        xs = [x[j] for j in order]
        # A pooled proportion gets its Wilson interval; other metrics the t interval over
        # seeds, clipped at 0 (every study metric is a count, a time or a probability).
        col = f"{metric}_pooled" if f"{metric}_pooled" in g.columns else metric
        mean = g[col if col.endswith("_pooled") else f"{col}_mean"].to_numpy()[order]
        lo = g[f"{col}_low"].to_numpy()[order].clip(min=0)
        hi = g[f"{col}_high"].to_numpy()[order]
        color = f"C{i % 10}"
        ax.plot(xs, mean, marker="o", color=color, label=lab)
        ax.fill_between(xs, lo, hi, color=color, alpha=0.2, linewidth=0)
        if model and f"{model}_mean" in g.columns:
            mm = g[f"{model}_mean"].to_numpy()[order]
            if not all(math.isnan(v) for v in mm):
                ax.plot(xs, mm, linestyle="--", color=color, alpha=0.9,
                        label=f"model ({lab})" if line_keys else "model")
    xl = _short(xkey) if xkey else "grid point"
    ax.set_xlabel(f"{xl} ({unit})" if unit else xl)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


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
               where: Sequence[str] = (), dpi: int = 110, size: tuple[float, float] = (6.4, 4.0)) -> list[Path]:
    """Draw the study's figures for a sweep folder; returns the files written.
    ``where``: ``key=value`` filters on the grid (a slice of a large grid)."""
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
    for metric, ylabel, model in mod.FIGURES:
        if f"{metric}_mean" not in summary.columns:
            continue
        fig, ax = plt.subplots(figsize=size)
        draw_metric(ax, summary, keys, metric, ylabel, model)
        ax.set_title(f"{meta['scenario']}: {metric} (mean, 95% CI over {len(meta.get('seeds') or [])} seeds)",
                     fontsize=9)
        fig.tight_layout()
        for ext in ("png", "svg"):
            p = target / f"{meta['scenario']}-{metric}.{ext}"
            fig.savefig(p, dpi=dpi, metadata={"Date": None} if ext == "svg" else None)
            written.append(p)
        plt.close(fig)
    return written
