"""The Python API: run a scenario, load a results folder.

``mimisim.run(...)`` and ``mimisim run FILE`` do the same thing and write the
same folder, ``<outputs.dir>/<scenario name>/seed-<n>/`` for the scenario
as its file says, ``seed-<n>-<hash>/`` when ``--set`` overrides or an
explicit fault schedule change it (the hash is of the resolved scenario and
the schedule), so runs of different settings never overwrite each other. A
folder that holds a run of a different resolved scenario (the file was
edited since) is not overwritten without ``force``.

- ``trace.parquet``: every event (byte-identical for the same scenario and seed);
- one Parquet file per derived table (:mod:`mimisim.analysis.tables`);
- ``summary.csv``: the run's numbers, ``metric, value, unit``, one number a
  row (:mod:`mimisim.analysis.summary`; also printed by the CLI);
- ``manifest.json``: what it takes to trust and reproduce the run: scenario,
  seed, the resolved scenario itself and its hash, overrides, the expanded
  fault schedule, package version, git commit with a dirty-tree flag and
  the hash of the uncommitted changes, Python and every dependency's
  version, platform, command line, start time (UTC), wall time, event
  counts. This is the only file that differs between two runs of one seed.

``mimisim.load(folder)`` reads such a folder back into the same object, so a
notebook can analyse a run without running it again.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

import mimisim
from mimisim.analysis import tables as T
from mimisim.analysis.summary import format_table
from mimisim.analysis.summary import summary as numeric_summary
from mimisim.sim.faults import FaultPlan
from mimisim.sim.rng import check_seed
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


#: The distributions mimisim depends on (pyproject.toml's ``dependencies``;
#: a test keeps the two lists equal). Their versions go into every manifest.
DEPENDENCIES = ("cryptography", "numpy", "simpy", "networkx", "pandas", "pyarrow", "pydantic", "pyyaml", "tqdm",
                "matplotlib", "dask", "distributed")


class ResultsFolderError(FileExistsError):
    """The results folder holds a run of a different scenario (one line; the CLI exits 2)."""


def _git(where: Path, *args: str) -> bytes | None:
    try:
        out = subprocess.run(["git", *args], cwd=where, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_state(where: Path | None = None) -> dict[str, Any]:
    """The checkout the code runs from: ``commit``, ``dirty`` (uncommitted
    changes to tracked files, or untracked files not ignored) and
    ``diff_sha256`` (sha256 of ``git diff HEAD`` plus the untracked files'
    names and contents, so two runs from the same edited tree can be told
    from runs of different edits). All None outside a git checkout."""
    where = where or Path(__file__).resolve().parent
    head = _git(where, "rev-parse", "HEAD")
    if head is None:
        return {"commit": None, "dirty": None, "diff_sha256": None}
    status = _git(where, "status", "--porcelain") or b""
    dirty = bool(status.strip())
    digest = None
    if dirty:
        h = hashlib.sha256(_git(where, "diff", "HEAD", "--binary") or b"")
        top = (_git(where, "rev-parse", "--show-toplevel") or b"").decode().strip()
        for name in sorted((_git(where, "ls-files", "--others", "--exclude-standard", "-z", ":/") or b"")
                           .split(b"\0")):
            if name:
                h.update(b"\0untracked\0" + name + b"\0")
                try:
                    h.update((Path(top) / name.decode()).read_bytes())
                except OSError:
                    pass
        digest = h.hexdigest()
    return {"commit": head.decode().strip() or None, "dirty": dirty, "diff_sha256": digest}


def dependency_versions() -> dict[str, str | None]:
    """Installed version of each of :data:`DEPENDENCIES` (None if missing)."""
    out: dict[str, str | None] = {}
    for name in DEPENDENCIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def run_hash(scenario: Scenario, seed: int, faults: FaultPlan | None = None) -> str:
    """sha256 of what determines a run: the resolved scenario, the seed and,
    if given, the explicit fault schedule."""
    h = hashlib.sha256(resolved_hash(scenario).encode())
    h.update(f"|seed={seed}".encode())
    if faults is not None:
        h.update(b"|faults=" + json.dumps(faults.to_json(), sort_keys=True).encode())
    return h.hexdigest()


def results_dir(scenario: Scenario, seed: int, out: str | Path | None = None, *,
                faults: FaultPlan | None = None) -> Path:
    """``<out or outputs.dir/name>/seed-<n>``, with ``-<hash>`` (10 hex digits
    of :func:`run_hash`) when overrides or an explicit fault schedule make
    the run differ from the scenario file's own."""
    base = Path(out) if out is not None else Path(scenario.outputs.dir) / scenario.name
    name = f"seed-{seed}"
    if scenario.overrides or faults is not None:
        name += "-" + run_hash(scenario, seed, faults)[:10]
    return base / name


def _check_folder(folder: Path, scenario: Scenario, seed: int, faults: FaultPlan | None) -> None:
    """Refuse to overwrite a folder holding a run of something else."""
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return
    try:
        old = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return
    want = run_hash(scenario, seed, faults)
    if old.get("run_hash", want) != want:
        raise ResultsFolderError(
            f"{folder}: holds a run of a different scenario (run hash {str(old.get('run_hash'))[:10]}, "
            f"this run {want[:10]}); use --force to overwrite it, or --out for another folder")


def run(
    scenario: str | Path | Scenario,
    *,
    seed: int | None = None,
    overrides: Sequence[str] = (),
    out: str | Path | None | bool = None,
    progress: bool | None = None,
    faults: FaultPlan | None = None,
    force: bool = False,
    command: str | None = None,
) -> RunResult:
    """Run a scenario (a path or a loaded :class:`Scenario`) and return its tables.

    ``seed`` overrides the scenario's; ``overrides`` are ``key.path=value``
    strings as for ``--set``; ``out``: None writes the default results folder,
    a path writes there (the ``seed-<n>`` folder goes inside), False writes
    nothing. ``progress``: None shows a bar only on runs longer than 2 s.
    ``faults``: an explicit fault schedule instead of the one the scenario
    and seed expand to (a manifest's ``faults``, or a schedule ``mimisim
    check`` shrank). ``force``: overwrite a results folder that holds a
    run of a different scenario (else :class:`ResultsFolderError`).
    ``command``: the command line for the manifest (default: this
    process's ``sys.argv``).
    """
    scn = scenario if isinstance(scenario, Scenario) else load_scenario(scenario, overrides)
    seed = check_seed(scn.seed if seed is None else seed)
    folder = None
    if out is not False:
        folder = results_dir(scn, seed, None if out in (None, True) else Path(out), faults=faults)  # type: ignore[arg-type]
        if not force:
            _check_folder(folder, scn, seed, faults)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    world = World(scn, seed, faults=faults).run(progress=progress)
    trace = world.trace.to_pandas()
    tables = T.all_tables(trace)
    summary = numeric_summary(trace, tables, world.setup_end_ms)
    git = git_state()
    manifest = {
        "scenario": scn.name,
        "source": scn.source,
        "seed": world.seed,
        "run_hash": run_hash(scn, seed, faults),
        "scenario_hash": resolved_hash(scn),
        "overrides": scn.overrides,
        "faults_given": faults is not None,
        "duration_ms": float(scn.duration),
        "command": command if command is not None else shlex.join(sys.argv),
        "started_utc": started,
        "wall_time_s": round(world.wall_s, 3),
        # The initial rooms' setup apart (World.setup_end_ms; wall and CPU
        # time to the first check, each simulated second, that found it done;
        # null when it never ended).
        "setup": {"rooms_built_ms": world.setup_end_ms,
                  "wall_time_s": None if world.setup_wall_s is None else round(world.setup_wall_s, 3),
                  "cpu_time_s": None if world.setup_cpu_s is None else round(world.setup_cpu_s, 3)},
        "mimisim_version": mimisim.__version__,
        "git_commit": git["commit"],
        "git_dirty": git["dirty"],
        "git_diff_sha256": git["diff_sha256"],
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "dependencies": dependency_versions(),
        "platform": {"system": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count()},
        "events": len(trace),
        "event_counts": world.trace.counts(),
        "faults": world.plan.to_json(),
        "tables": {name: T.TABLES[name] for name in tables},
        "resolved_scenario": scn.model_dump(mode="json"),
    }
    result = RunResult(trace, tables, summary, manifest, None, world)
    if folder is not None:
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
    if (folder / "summary.csv").is_file():
        summary = pd.read_csv(folder / "summary.csv", dtype={"metric": str, "unit": str}, keep_default_na=False,
                              na_values={"value": ["", "nan", "NaN"]})
    else:
        summary = numeric_summary(trace, tables) if len(trace) else pd.DataFrame(columns=["metric", "value", "unit"])
    return RunResult(trace, tables, summary, manifest, folder)


def format_summary(result: RunResult) -> str:
    """The table ``mimisim run`` prints, from the numeric summary."""
    lines = [f"{result.manifest['scenario']} (seed {result.manifest['seed']}): "
             f"{result.manifest['events']} events in {result.manifest['wall_time_s']} s wall time"]
    return "\n".join(lines + format_table(result.summary))
