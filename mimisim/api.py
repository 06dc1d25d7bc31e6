"""The Python API: run a scenario, load a results folder.

``mimisim.run(...)`` and ``mimisim run FILE`` do the same thing and write the
same folder, ``<outputs.dir>/<scenario name>/seed-<n>/``:

- ``trace.parquet``: every event (byte-identical for the same scenario and seed);
- one Parquet file per derived table (:mod:`mimisim.analysis.tables`);
- ``summary.csv``: the run in a dozen numbers (also printed by the CLI);
- ``manifest.json``: scenario, seed, package version, git commit, hash of
  the resolved scenario, overrides, the expanded fault schedule, wall time,
  event counts. This is the only file that differs between two runs of one
  seed (wall time).

``mimisim.load(folder)`` reads such a folder back into the same object, so a
notebook can analyse a run without running it again.
"""

from __future__ import annotations

import json
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

import mimisim
from mimisim.analysis import tables as T
from mimisim.sim.faults import FaultPlan
from mimisim.sim.scenario import Scenario, load_scenario, resolved_hash
from mimisim.sim.trace import read_parquet as read_trace_parquet
from mimisim.sim.world import World


@dataclass
class RunResult:
    """A finished (or loaded) run: the trace, the derived tables, the summary."""

    trace: pd.DataFrame
    tables: dict[str, pd.DataFrame]
    summary: pd.DataFrame
    manifest: dict[str, Any]
    dir: Path | None = None
    world: World | None = field(default=None, repr=False)

    def __getattr__(self, name: str) -> pd.DataFrame:
        # result.messages, result.commits ... as attributes
        tables = self.__dict__.get("tables", {})
        if name in tables:
            return tables[name]
        raise AttributeError(name)


def _git_commit(where: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def results_dir(scenario: Scenario, seed: int, out: str | Path | None = None) -> Path:
    base = Path(out) if out is not None else Path(scenario.outputs.dir) / scenario.name
    return base / f"seed-{seed}"


def run(
    scenario: str | Path | Scenario,
    *,
    seed: int | None = None,
    overrides: Sequence[str] = (),
    out: str | Path | None | bool = None,
    progress: bool | None = None,
    faults: FaultPlan | None = None,
) -> RunResult:
    """Run a scenario (a path or a loaded :class:`Scenario`) and return its tables.

    ``seed`` overrides the scenario's; ``overrides`` are ``key.path=value``
    strings as for ``--set``; ``out``: None writes the default results folder,
    a path writes there (the ``seed-<n>`` folder goes inside), False writes
    nothing. ``progress``: None shows a bar only on runs longer than 2 s.
    ``faults``: an explicit fault schedule instead of the one the scenario
    and seed expand to (a manifest's ``faults``, or a schedule ``mimisim
    check`` shrank).
    """
    scn = scenario if isinstance(scenario, Scenario) else load_scenario(scenario, overrides)
    world = World(scn, seed, faults=faults).run(progress=progress)
    trace = world.trace.to_pandas()
    tables = T.all_tables(trace)
    summary = T.summary(trace, tables)
    manifest = {
        "scenario": scn.name,
        "source": scn.source,
        "seed": world.seed,
        "mimisim_version": mimisim.__version__,
        "git_commit": _git_commit(Path(__file__).resolve().parent),
        "scenario_hash": resolved_hash(scn),
        "overrides": scn.overrides,
        "duration_ms": float(scn.duration),
        "wall_time_s": round(world.wall_s, 3),
        "python": platform.python_version(),
        "events": len(trace),
        "event_counts": world.trace.counts(),
        "faults": world.plan.to_json(),
        "tables": {name: T.TABLES[name] for name in tables},
    }
    result = RunResult(trace, tables, summary, manifest, None, world)
    if out is not False:
        folder = results_dir(scn, world.seed, None if out in (None, True) else Path(out))  # type: ignore[arg-type]
        write(result, folder, trace_file=scn.outputs.trace)
        result.dir = folder
    return result


def write(result: RunResult, folder: Path, *, trace_file: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    world = result.world
    if trace_file:
        if world is not None:
            world.trace.to_parquet(folder / "trace.parquet")
        else:
            result.trace.to_parquet(folder / "trace.parquet", index=False)
    for name, df in result.tables.items():
        df.to_parquet(folder / f"{name}.parquet", index=False)
    result.summary.to_csv(folder / "summary.csv", index=False)
    (folder / "manifest.json").write_text(json.dumps(result.manifest, indent=2, sort_keys=False) + "\n")


def load(folder: str | Path) -> RunResult:
    """Read a results folder written by :func:`run` (or ``mimisim run``)."""
    folder = Path(folder)
    if not (folder / "manifest.json").is_file():
        raise FileNotFoundError(f"{folder}: not a mimisim results folder (no manifest.json)")
    manifest = json.loads((folder / "manifest.json").read_text())
    trace_path = folder / "trace.parquet"
    trace = read_trace_parquet(trace_path) if trace_path.is_file() else pd.DataFrame()
    tables = {}
    for name in T.TABLES:
        p = folder / f"{name}.parquet"
        if p.is_file():
            tables[name] = pd.read_parquet(p)
    summary = pd.read_csv(folder / "summary.csv", dtype=str) if (folder / "summary.csv").is_file() else \
        T.summary(trace, tables)
    return RunResult(trace, tables, summary, manifest, folder)


def format_summary(result: RunResult) -> str:
    s = result.summary
    width = max(len(m) for m in s["metric"]) if len(s) else 10
    lines = [f"{result.manifest['scenario']} (seed {result.manifest['seed']}): "
             f"{result.manifest['events']} events in {result.manifest['wall_time_s']} s wall time"]
    lines += [f"  {m:<{width}}  {v}" for m, v in zip(s["metric"], s["value"], strict=True)]
    return "\n".join(lines)
