"""Sweeps: a scenario's grid of overrides times seeds, run and merged into one table.

``mimisim sweep FILE`` expands the ``sweep:`` block
(:func:`mimisim.sim.scenario.expand_sweep`), runs every point on local
worker processes (``--workers N``) or a Dask cluster (``--dask ADDR``)
through :func:`mimisim.parallel.run_tasks`, and writes to
``<outputs.dir>/<name>/sweep/`` (or ``--out``; with ``--set`` overrides,
``sweep-<8 hex digits of their hash>/``, so a sweep of changed settings never
overwrites the tables of another: ``sweep.json`` names the overrides):

- ``runs/<run-id>.json``: one file per finished run, written as it arrives,
  so an interrupted sweep **resumes** by skipping the runs whose file exists
  (the id is the hash of the resolved scenario, which includes the seed and
  the point's overrides, so changing the grid never reuses a stale run);
- ``runs.parquet`` / ``runs.csv``: the merged table, one row per run (per
  room for fanout) in expansion order, with the grid parameters (columns
  named by their key path) and the seed as columns, then the study's metrics;
- ``summary.csv``: per grid point, ``n`` (runs), each metric's mean with
  its 95% Student-t interval over the runs (``<metric>_mean/_low/_high``;
  for a metric every run has >= 0, a count or a latency, the lower bound is
  clamped at 0 and ``<metric>_clamped`` says so) and ``<metric>_n``, the runs where it is defined (a mean over fewer runs
  than ``n`` says so here and in the printed summary); for pooled
  proportions the ratio over all trials with its cluster-robust t interval
  (``<metric>_pooled/_pooled_low/_pooled_high``, the run as the cluster),
  ``<metric>_trials`` and, for reference, the Wilson interval
  (``<metric>_wilson_low/_high``, valid only for independent trials); the
  ``interval`` column names the intervals. Fewer than two runs: NaN bounds
  and a warning;
- ``sweep.json``: scenario, source, studies, grid keys and values, seeds,
  run count, wall times (the only file that differs between two identical
  sweeps).

The metrics are a study's (:mod:`mimisim.analysis.studies`): the one the
scenario's name selects, else the generic study (latency, loss, duplicates,
retries, commits, HTTP exchanges). ``--study`` picks others, several at once
(``--study leave --study generic``): the first one's tables are
``runs.*``/``summary.csv``, each other's ``runs-<study>.*`` and
``summary-<study>.csv``, all from the same runs.

A scenario without a ``sweep:`` block is refused (a sweep of one point is
``mimisim run``, or ``mimisim check`` for many seeds).

Runs do not keep their traces unless ``--keep-runs`` is given (a sweep of
hundreds of runs would write gigabytes); each run is reproducible from the
scenario, the point's overrides and the seed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mimisim import cliargs
from mimisim.analysis.stats import mean_ci, mean_ci_nonneg, ratio_ci, wilson
from mimisim.analysis.studies import STUDIES, study_for
from mimisim.parallel import connect, run_tasks
from mimisim.sim.scenario import Scenario, ScenarioError, expand_sweep, load_scenario, resolved_hash

__all__ = ["Sweep", "add_subcommands", "label", "plan", "run_sweep", "summarise"]


def label(value: Any) -> Any:
    """A grid value as a table cell: scalars as they are, mappings and lists
    as compact ``k=v`` text (``strategy=random_delay max_delay=5s``)."""
    if isinstance(value, dict):
        return " ".join(f"{k}={label(v)}" if not isinstance(v, dict) else f"{k}=({label(v)})"
                        for k, v in value.items())
    if isinstance(value, list):
        return "[" + ", ".join(str(label(v)) for v in value) + "]"
    return value


class Sweep:
    """A planned sweep: the runs, the studies (the first is the main one), the folder."""

    def __init__(self, scenario: Scenario, study: str | Sequence[str], out: Path) -> None:
        self.scenario = scenario
        self.studies = [study] if isinstance(study, str) else list(dict.fromkeys(study))
        self.study = self.studies[0]
        self.out = out
        self.overrides: list[str] = []  # the user's --set overrides, recorded in sweep.json
        self.extra_text: dict[str, str] = {}  # study -> what its after_sweep hook printed (fits)
        self.points = expand_sweep(scenario)
        self.keys = list(scenario.sweep.grid) if scenario.sweep is not None else []
        self.ids = [f"{i:04d}-{resolved_hash(p)[:12]}" for i, (_, _, p) in enumerate(self.points)]

    def done(self) -> set[str]:
        """The runs already finished with every study's rows (a run saved
        before another study was asked for runs again)."""
        d = self.out / "runs"
        if not d.is_dir():
            return set()
        out = set()
        for p in d.glob("*.json"):
            try:
                rec = json.loads(p.read_text())
            except (OSError, ValueError):
                continue  # a torn file: run it again
            have = set(rec.get("study_rows", {})) or {self.study}
            if set(self.studies) <= have:
                out.add(p.stem)
        return out

    def files(self, study: str) -> tuple[str, str]:
        """The (runs, summary) file stems of a study's tables."""
        return ("runs", "summary") if study == self.study else (f"runs-{study}", f"summary-{study}")


def plan(file: str | Path, overrides: Sequence[str] = (), *, seeds: int | None = None, out: str | Path | None = None,
         study: str | Sequence[str] | None = None) -> Sweep:
    """Load the scenario (with ``--set`` overrides and ``--seeds``) and plan its runs.
    ``study``: a study name, several (a list, or comma-separated), or None
    for the one the scenario's name selects (else ``generic``). A scenario
    without a ``sweep:`` block raises :class:`ScenarioError`."""
    ov = list(overrides)
    if seeds is not None:
        ov.append(f"sweep.seeds={int(seeds)}")
    scn = load_scenario(file, ov)
    if scn.sweep is None:
        raise ScenarioError("no 'sweep:' block, so there is nothing to sweep (add sweep: {grid: {key.path: "
                            "[values]}, seeds: N}; for one point use mimisim run, for many seeds mimisim check)",
                            file=str(file))
    names = [study] if isinstance(study, str) else list(study or [])
    names = [n.strip() for item in names for n in item.split(",") if n.strip()]
    studies = [study_for(scn.name, n) for n in names] or [study_for(scn.name)]
    user = list(overrides)  # --seeds only adds runs to the same grid: it shares the folder
    name = "sweep" if not user else "sweep-" + hashlib.sha256("\n".join(user).encode()).hexdigest()[:8]
    folder = Path(out) if out is not None else Path(scn.outputs.dir) / scn.name / name
    sw = Sweep(scn, studies, folder)
    sw.overrides = user
    return sw


def _run_one(task: tuple[int, str, dict[str, Any], int, Scenario, list[str], str | None]) -> dict[str, Any]:
    """Worker: run one point and compute its studies' rows (module-level: picklable)."""
    from mimisim.api import run

    index, run_id, params, seed, scenario, studies, keep = task
    t0 = time.perf_counter()
    result = run(scenario, out=keep if keep else False, progress=False)
    by_study = {s: STUDIES[s].rows(result.trace, scenario) for s in studies}
    return {"index": index, "run_id": run_id, "params": {k: label(v) for k, v in params.items()}, "seed": seed,
            "rows": by_study[studies[0]], "study_rows": by_study, "events": len(result.trace),
            "wall_s": round(time.perf_counter() - t0, 3)}


def _save(folder: Path, rec: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{rec['run_id']}.json.tmp"
    tmp.write_text(json.dumps(rec, default=_jsonable) + "\n")
    os.replace(tmp, folder / f"{rec['run_id']}.json")


def _jsonable(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    return str(x)


def merge(sweep: Sweep, study: str | None = None) -> pd.DataFrame:
    """The merged table of every finished run, in expansion order, for
    ``study`` (default: the sweep's main study)."""
    study = study or sweep.study
    records = []
    for run_id in sweep.ids:
        p = sweep.out / "runs" / f"{run_id}.json"
        if p.is_file():
            records.append(json.loads(p.read_text()))
    rows = []
    for rec in records:
        rows_of = rec.get("study_rows", {}).get(study)
        if rows_of is None:
            rows_of = rec["rows"] if study == sweep.study else []
        for r in rows_of:
            rows.append({**rec["params"], "seed": rec["seed"], **{k: (math.nan if v is None else v)
                                                                   for k, v in r.items()}})
    df = pd.DataFrame(rows)
    for k in sweep.keys:
        if k in df.columns and df[k].map(type).nunique() > 1:
            df[k] = df[k].astype(str)  # mixed types (e.g. 0.5 and "1/s") would not write to Parquet
    return df


#: The ``interval`` column of summary.csv: what ``_low``/``_high`` are.
INTERVAL_TEXT = ("95% Student-t over runs (means; lower bound clamped at 0 where every run is >= 0, flagged in "
                 "<m>_clamped); 95% cluster-robust t over runs (pooled proportions)")


def summarise(runs: pd.DataFrame, keys: Sequence[str], study: str) -> pd.DataFrame:
    """Per grid point (and the study's group keys): ``n`` (runs), each numeric
    metric's mean with its 95% Student-t interval over the runs and
    ``<m>_n`` (runs where it is finite), and the study's pooled proportions
    with a cluster-robust interval (:func:`~mimisim.analysis.stats.ratio_ci`)
    and the Wilson interval for reference. A point with fewer than two runs
    gets NaN bounds and a :class:`UserWarning`."""
    mod = STUDIES[study]
    group = [k for k in [*keys, *mod.GROUP_KEYS] if k in runs.columns]
    skip = {*group, "seed"}
    metrics = [c for c in runs.columns if c not in skip and pd.api.types.is_numeric_dtype(runs[c])
               and not pd.api.types.is_bool_dtype(runs[c])]
    out = []
    thin = []
    groups = runs.groupby(group, sort=False, dropna=False) if group else [((), runs)]
    for gkey, g in groups:
        gkey = gkey if isinstance(gkey, tuple) else (gkey,)
        row: dict[str, Any] = dict(zip(group, gkey, strict=True))
        row["n"] = len(g)
        row["interval"] = INTERVAL_TEXT
        if len(g) < 2:
            thin.append(", ".join(f"{k}={v}" for k, v in row.items() if k in group) or "(one point)")
        for m in metrics:
            vals = g[m].astype(float)
            # a metric that cannot be negative here (every run >= 0) gets its
            # lower bound clamped at 0, flagged (stats.mean_ci_nonneg)
            mean, lo, hi, k, clamped = mean_ci_nonneg(vals) if bool((vals.dropna() >= 0).all()) \
                else (*mean_ci(vals), False)
            row[f"{m}_mean"], row[f"{m}_low"], row[f"{m}_high"], row[f"{m}_n"] = mean, lo, hi, k
            row[f"{m}_clamped"] = clamped
        for m, (succ, trials) in mod.POOLED.items():
            if succ in g.columns and trials in g.columns:
                s_, t_ = g[succ].astype(float), g[trials].astype(float)
                p, lo, hi, _ = ratio_ci(s_, t_)
                row[f"{m}_pooled"], row[f"{m}_pooled_low"], row[f"{m}_pooled_high"] = p, lo, hi
                row[f"{m}_trials"] = int(t_.fillna(0).sum())
                _, wlo, whi = wilson(int(s_.fillna(0).sum()), int(t_.fillna(0).sum()))
                row[f"{m}_wilson_low"], row[f"{m}_wilson_high"] = wlo, whi
        out.append(row)
    if thin:
        warnings.warn(f"{len(thin)} grid point(s) with fewer than 2 runs: no interval (NaN bounds): "
                      + "; ".join(thin[:5]), stacklevel=2)
    return pd.DataFrame(out)


def _studies_in_every_run(sweep: Sweep) -> set[str]:
    """The studies whose rows every finished run of the sweep has."""
    common: set[str] | None = None
    for run_id in sweep.ids:
        p = sweep.out / "runs" / f"{run_id}.json"
        if not p.is_file():
            return set()
        have = set(json.loads(p.read_text()).get("study_rows", {})) or {sweep.study}
        common = have if common is None else common & have
    return common or set()


def run_sweep(sweep: Sweep, *, workers: int | None = 1, dask: Any = None, progress: bool | None = None,
              keep_runs: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run what is not done yet, then write and return ``(runs, summary)``."""
    done = sweep.done()
    tasks = []
    for i, ((params, seed, point), run_id) in enumerate(zip(sweep.points, sweep.ids, strict=True)):
        if run_id in done:
            continue
        keep = str(sweep.out / "traces" / run_id) if keep_runs else None
        tasks.append((i, run_id, params, seed, point, sweep.studies, keep))
    t0 = time.perf_counter()
    runs_dir = sweep.out / "runs"
    run_tasks(_run_one, tasks, workers=workers, dask=dask, progress=progress, desc=sweep.scenario.name,
               on_result=lambda _i, rec: _save(runs_dir, rec))
    wall = time.perf_counter() - t0
    sweep.out.mkdir(parents=True, exist_ok=True)
    # A study an earlier invocation computed for every run stays available
    # (resuming with fewer --study names does not hide its tables).
    extra = [s for s in sorted(_studies_in_every_run(sweep)) if s not in sweep.studies]
    studies = [*sweep.studies, *extra]
    for study in reversed(studies):  # the main study's tables are returned
        runs = merge(sweep, study)
        summary = summarise(runs, sweep.keys, study)
        runs_name, summary_name = sweep.files(study)
        runs.to_parquet(sweep.out / f"{runs_name}.parquet", index=False)
        runs.to_csv(sweep.out / f"{runs_name}.csv", index=False)
        summary.to_csv(sweep.out / f"{summary_name}.csv", index=False)
        hook = getattr(STUDIES[study], "after_sweep", None)
        if hook is not None and len(runs):
            # A study's own products beyond the tables (mlscost: fits.csv and
            # its figures with the fits), written with the tables.
            sweep.extra_text[study] = hook(sweep.out, runs, list(sweep.keys), sweep.scenario.name)
    meta = {"scenario": sweep.scenario.name, "description": sweep.scenario.description.strip(),
            "source": sweep.scenario.source, "overrides": sweep.overrides, "study": sweep.study, "studies": studies, "grid": sweep.keys,
            "grid_values": {k: [label(v) for v in vs] for k, vs in
                            (sweep.scenario.sweep.grid.items() if sweep.scenario.sweep else [])},
            "seeds": sorted({s for _, s, _ in sweep.points}), "runs": len(sweep.points),
            "ran_now": len(tasks), "resumed": len(sweep.points) - len(tasks), "wall_s": round(wall, 3),
            "workers": "dask" if dask is not None else workers}
    (sweep.out / "sweep.json").write_text(json.dumps(meta, indent=2) + "\n")
    return runs, summary


def format_summary(summary: pd.DataFrame, keys: Sequence[str], study: str) -> str:
    """The headline of a sweep: each figure metric as ``mean [low, high]`` per
    point, ``(k of n runs)`` when it is defined in fewer runs than the point
    has, every other metric defined in fewer runs (named with its k), and every ``never_*`` count (runs or operations that never
    recovered or completed) that is not zero."""
    mod = STUDIES[study]
    group = [k for k in [*keys, *mod.GROUP_KEYS] if k in summary.columns]
    cols = [m for m, _, _ in mod.FIGURES if f"{m}_mean" in summary.columns]
    never = [c[:-5] for c in summary.columns if c.startswith("never_") and c.endswith("_mean")]
    lines = []
    for _, r in summary.iterrows():
        point = ", ".join(f"{k.rsplit('.', 1)[-1]}={r[k]}" for k in group) or "(one point)"
        n = int(r["n"])
        parts = []
        for m in cols:
            if f"{m}_pooled" in r:
                txt = (f"{m} {r[f'{m}_pooled']:.4g} [{r[f'{m}_pooled_low']:.4g}, {r[f'{m}_pooled_high']:.4g}] "
                       f"(pooled, {int(r.get(f'{m}_trials', 0))} trials)")
            else:
                txt = f"{m} {r[f'{m}_mean']:.4g} [{r[f'{m}_low']:.4g}, {r[f'{m}_high']:.4g}]"
            k = r.get(f"{m}_n")
            if k is not None and not pd.isna(k) and int(k) < n:
                txt += f" (over {int(k)} of {n} runs)"
            parts.append(txt)
        # every other metric defined in fewer runs than the point has, named
        fewer = [f"{c[:-2]} {int(r[c])} of {n}" for c in summary.columns
                 if c.endswith("_n") and f"{c[:-2]}_mean" in summary.columns and c[:-2] not in cols
                 and not pd.isna(r[c]) and int(r[c]) < n]
        if fewer:
            parts.append("defined in fewer runs: " + ", ".join(fewer))
        for c in never:
            total = r[f"{c}_mean"] * r.get(f"{c}_n", n)
            if total and not pd.isna(total):
                parts.append(f"{c} {total:.4g} in {n} runs")
        lines.append(f"  {point} (n={n}): {'; '.join(parts)}")
    return "\n".join(lines)


# ---------------------------------------------------------------- command line


def cmd_sweep(args: argparse.Namespace) -> int:
    """``mimisim sweep FILE``: run (or resume) a sweep and print its summary."""
    try:
        sweep = plan(args.file, args.overrides, seeds=args.seeds, out=args.out, study=args.study)
    except (ScenarioError, ValueError) as e:
        print(str(e), file=sys.stderr)
        return 2
    cliargs.writable_dir(sweep.out, "--out" if args.out is not None else "outputs.dir")
    done = len(sweep.done() & set(sweep.ids))
    # connect before the header, so an unreachable scheduler is the only line printed
    dask = connect(args.dask) if args.dask else None
    if not args.quiet:
        where = f"Dask at {args.dask}" if args.dask else f"{args.workers or os.cpu_count()} worker(s)"
        studies = ", ".join(f"'{s}'" for s in sweep.studies)
        print(f"{sweep.scenario.name}: {len(sweep.points)} runs ({done} already done) of study {studies} "
              f"on {where} -> {sweep.out}", file=sys.stderr)
    _, summary = run_sweep(sweep, workers=args.workers, dask=dask,
                           progress=False if args.no_progress else None, keep_runs=args.keep_runs)
    if not args.quiet:
        print(format_summary(summary, sweep.keys, sweep.study))
        for study, text in sweep.extra_text.items():
            if text:
                print(f"{study} fits (fits.csv, figures/):\n{text}")
        extra = "".join(f", runs-{s}.csv, summary-{s}.csv" for s in sweep.studies[1:])
        print(f"results: {sweep.out} (runs.csv, summary.csv{extra}); plot with: mimisim plot {sweep.out}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """``mimisim plot RESULTS``: the study's standard figures as PNG and SVG."""
    from mimisim.plots import plot_sweep

    if args.out is not None:
        cliargs.writable_dir(args.out, "--out")
    try:
        paths = plot_sweep(args.results, out=args.out, study=args.study, where=args.where)
    except (FileNotFoundError, ValueError) as e:
        print(f"mimisim plot: {e}", file=sys.stderr)
        return 2
    for p in paths:
        print(p)
    return 0


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``sweep`` and ``plot`` to the ``mimisim`` command's subparsers."""
    from mimisim.sim.scenario_cli import add_set_option

    s = subparsers.add_parser(
        "sweep", help="run a scenario's sweep grid x seeds in parallel; merged table with 95%% CIs",
        description="Expand the scenario's sweep block (grid x seeds), run the points on local worker "
                    "processes or a Dask cluster, and merge them into runs.csv / summary.csv (means with "
                    "95%% confidence intervals). Re-running resumes: finished runs are skipped.")
    s.add_argument("file", help="scenario YAML file with a sweep: block")
    add_set_option(s)
    s.add_argument("--workers", type=cliargs.workers, default=None,
                   help="local worker processes (default and 0: one per CPU)")
    s.add_argument("--dask", default=None, metavar="ADDR", help="Dask scheduler address (tcp://host:8786)")
    s.add_argument("--seeds", type=cliargs.count, default=None,
                   help="seeds per grid point, at least 1 (overrides sweep.seeds)")
    s.add_argument("--out", default=None, help="results folder (default: <outputs.dir>/<name>/sweep)")
    s.add_argument("--study", action="append", default=None, metavar="STUDY",
                   help=f"study metrics, repeatable or comma-separated ({', '.join(sorted(STUDIES))}; default: "
                        "the one the scenario's name selects, else generic)")
    s.add_argument("--keep-runs", action="store_true", help="also write each run's results folder (traces)")
    s.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    s.add_argument("--quiet", action="store_true", help="print nothing on success")
    s.set_defaults(func=cmd_sweep)

    p = subparsers.add_parser("plot", help="draw a sweep's standard figures (PNG and SVG, with 95%% CI bands)")
    p.add_argument("results", help="a sweep results folder (with sweep.json)")
    p.add_argument("--out", default=None, help="folder for the figures (default: RESULTS/figures)")
    p.add_argument("--study", default=None, choices=sorted(STUDIES),
                   help="plot this study's metrics (one the sweep computed; default: its main study)")
    p.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                   help="plot only the grid points with this value of a grid key (repeatable); a key or "
                        "value not in the grid is an error")
    p.set_defaults(func=cmd_plot)
