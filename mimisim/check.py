"""``mimisim check``: run many seeds of a scenario, check every invariant on
each trace, report, and shrink a failing run's fault schedule.

The regression harness the FoundationDB way: a seed is a bug report. For a
failure, ``check`` prints the first failing seed, its first violation with the
rows that show it, and the one command that replays it; then it shrinks the
run's fault schedule by delta debugging (remove faults while the same
invariant still fails) and writes the smallest schedule it found as JSON,
which ``mimisim run ... --faults FILE`` replays.

Each seed runs in its own task (:func:`mimisim.parallel.run_tasks`), so
``--workers N`` and ``--dask ADDR`` give the same table as a serial run. The
task returns only small values (counts, the violations' JSON), never the
trace, so a thousand seeds cost little memory.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mimisim.analysis.invariants import INVARIANTS, Context, Violation, check_trace, format_violation
from mimisim.sim.faults import FaultPlan
from mimisim.sim.scenario import Scenario, ScenarioError, load_scenario

#: How many violations per invariant a seed's result keeps (the rest are counted).
KEEP = 3


@dataclass
class SeedResult:
    """One seed's verdicts: small, picklable, enough for the report."""

    seed: int
    violations: dict[str, list[dict[str, Any]]]  # invariant -> first KEEP violations' JSON
    counts: dict[str, int]  # invariant -> number of violations
    faults: int = 0
    faults_bit: int = 0
    events: int = 0
    wall_s: float = 0.0
    adversary: dict[str, int] = field(default_factory=dict)  # attempt / rejected / accepted

    @property
    def ok(self) -> bool:
        return not any(self.counts.values())

    def first(self) -> Violation | None:
        for name in INVARIANTS:
            for v in self.violations.get(name, []):
                return Violation(v["invariant"], v["message"], tuple(v["rows"]))
        return None


@dataclass
class CheckReport:
    """Every seed's verdicts, in seed order, and the wall time they took."""

    scenario: str
    seeds: list[int]
    results: list[SeedResult]
    wall_s: float

    @property
    def failing(self) -> list[SeedResult]:
        return [r for r in self.results if not r.ok]

    @property
    def ok(self) -> bool:
        return not self.failing

    def passed(self, name: str) -> int:
        return sum(1 for r in self.results if not r.counts.get(name))

    def totals(self) -> dict[str, int]:
        t = {"faults": 0, "faults_bit": 0, "events": 0}
        for r in self.results:
            t["faults"] += r.faults
            t["faults_bit"] += r.faults_bit
            t["events"] += r.events
            for k, v in r.adversary.items():
                t[f"adversary_{k}"] = t.get(f"adversary_{k}", 0) + v
        return t

    def table(self) -> str:
        n = len(self.results)
        width = max(len(k) for k in INVARIANTS)
        lines = [f"{'invariant':<{width}}  runs passed"]
        for name in INVARIANTS:
            p = self.passed(name)
            mark = "" if p == n else f"   FAILED in {n - p}"
            lines.append(f"{name:<{width}}  {p}/{n}{mark}")
        return "\n".join(lines)


# ====================================================================== one seed

_SCENARIOS: dict[tuple[str, tuple[str, ...]], Scenario] = {}


def _scenario(path: str, overrides: tuple[str, ...]) -> Scenario:
    key = (path, overrides)
    if key not in _SCENARIOS:
        _SCENARIOS[key] = load_scenario(path, list(overrides))
    return _SCENARIOS[key]


def run_checked(scn: Scenario, seed: int, faults: FaultPlan | None = None) -> tuple[Any, dict[str, list[Violation]]]:
    """Run one seed (optionally with an explicit fault plan) and check it;
    returns the world and the violations by invariant."""
    from mimisim.sim.world import World

    world = World(scn, seed, faults=faults).run(progress=False)
    trace = world.trace.to_pandas()
    return world, check_trace(trace, Context.from_scenario(scn))


def check_seed(task: tuple[str, tuple[str, ...], int]) -> SeedResult:
    """The task ``run_tasks`` runs: (scenario path, overrides, seed)."""
    path, overrides, seed = task
    scn = _scenario(path, overrides)
    world, res = run_checked(scn, seed)
    counts = world.trace.counts()
    effects = [s for k, s in zip(world.trace.cols["kind"], world.trace.cols["status"], strict=True)
               if k == "fault.effect"]
    adv = {k.split(".", 1)[1]: counts.get(k, 0) for k in ("adversary.attempt", "adversary.rejected",
                                                           "adversary.accepted") if k in counts}
    return SeedResult(
        seed, {k: [v.to_json() for v in vs[:KEEP]] for k, vs in res.items() if vs},
        {k: len(vs) for k, vs in res.items()}, len(world.plan.faults), sum(1 for s in effects if s == "bit"),
        len(world.trace), round(world.wall_s, 3), adv,
    )


# ====================================================================== shrinking


def shrink(scn: Scenario, seed: int, invariant: str, plan: FaultPlan,
           fails: Callable[[FaultPlan], bool] | None = None, max_runs: int = 200) -> tuple[FaultPlan, int]:
    """Delta debugging (Zeller's ddmin) over the fault list: the smallest
    sub-list found for which ``invariant`` still fails on this seed.
    Returns the plan and the number of runs it took. Each fault keeps its id,
    so the shrunk plan's rows still say which fault of the original it was."""
    runs = 0

    def default(p: FaultPlan) -> bool:
        _, res = run_checked(scn, seed, p)
        return bool(res.get(invariant))

    test = fails or default
    items = list(plan.faults)
    n = 2
    while len(items) >= 1 and runs < max_runs:
        if len(items) == 1:
            runs += 1
            if test(FaultPlan([])):
                items = []
            break
        size = max(1, len(items) // n)
        chunks = [items[i:i + size] for i in range(0, len(items), size)]
        reduced = False
        for i in range(len(chunks)):
            complement = [f for j, c in enumerate(chunks) if j != i for f in c]
            runs += 1
            if test(FaultPlan(complement)):
                items = complement
                n = max(n - 1, 2)
                reduced = True
                break
            if runs >= max_runs:
                break
        if not reduced:
            if n >= len(items):
                break
            n = min(len(items), n * 2)
    return FaultPlan(items), runs


# ====================================================================== the command


def replay_command(path: str, seed: int, overrides: Sequence[str], faults_file: str | None = None) -> str:
    parts = ["mimisim", "run", path, "--seed", str(seed)]
    for o in overrides:
        parts += ["--set", o]
    if faults_file:
        parts += ["--faults", faults_file]
    return " ".join(shlex.quote(p) for p in parts)


def check(path: str, seeds: Sequence[int], overrides: Sequence[str] = (), *, workers: int | None = 1,
          dask: Any = None, progress: bool | None = None) -> CheckReport:
    """Run and check ``seeds`` of a scenario file (the Python side of ``mimisim check``)."""
    scn = _scenario(str(path), tuple(overrides))
    t0 = time.perf_counter()
    tasks = [(str(path), tuple(overrides), int(s)) for s in seeds]
    results = run_tasks_checked(tasks, workers=workers, dask=dask, progress=progress)
    return CheckReport(scn.name, list(seeds), results, time.perf_counter() - t0)


def run_tasks_checked(tasks: list[tuple[str, tuple[str, ...], int]], *, workers: int | None, dask: Any,
                      progress: bool | None) -> list[SeedResult]:
    from mimisim.parallel import run_tasks

    return run_tasks(check_seed, tasks, workers=workers, dask=dask, progress=progress, desc="check")


def cmd_check(args: argparse.Namespace) -> int:
    try:
        scn = load_scenario(args.file, args.overrides)
    except ScenarioError as e:
        print(str(e), file=sys.stderr)
        return 2
    seeds = list(range(args.start, args.start + args.seeds))
    progress = False if args.no_progress else None
    report = check(args.file, seeds, args.overrides, workers=args.workers, dask=args.dask, progress=progress)
    n = len(seeds)
    tot = report.totals()
    print(f"{scn.name}: {n} seeds ({seeds[0]}..{seeds[-1]}) in {report.wall_s:.1f} s wall time; "
          f"{tot['events']} events, {tot['faults']} faults injected, {tot['faults_bit']} bit")
    if "adversary_attempt" in tot:
        print(f"attacks: {tot['adversary_attempt']} tried, {tot.get('adversary_rejected', 0)} rejected, "
              f"{tot.get('adversary_accepted', 0)} accepted")
    print(report.table())
    if args.json:
        Path(args.json).write_text(json.dumps({
            "scenario": scn.name, "seeds": seeds, "wall_s": round(report.wall_s, 2), "totals": tot,
            "passed": {k: report.passed(k) for k in INVARIANTS},
            "failing": [{"seed": r.seed, "counts": r.counts, "violations": r.violations} for r in report.failing],
        }, indent=2) + "\n")
    bad_attacks = tot.get("adversary_accepted", 0)
    if report.ok and not bad_attacks:
        print("all invariants hold")
        return 0
    if bad_attacks:
        first_bad = next(r for r in report.results if r.adversary.get("accepted"))
        print(f"\n{bad_attacks} attack(s) were accepted; first in seed {first_bad.seed} "
              "(adversary.accepted rows in its trace)")
        print(f"replay: {replay_command(args.file, first_bad.seed, args.overrides)}")
    if report.failing:
        first = report.failing[0]
        v = first.first()
        assert v is not None
        print(f"\nfirst failing seed: {first.seed} ({sum(first.counts.values())} violation(s): "
              + ", ".join(f"{k} x{c}" for k, c in first.counts.items() if c) + ")")
        world, res = run_checked(scn, first.seed)
        trace = world.trace.to_pandas()
        print(format_violation(res[v.invariant][0], trace))
        print(f"\nreplay: {replay_command(args.file, first.seed, args.overrides)}")
        if not args.no_shrink and world.plan.faults:
            small, runs = shrink(scn, first.seed, v.invariant, world.plan, max_runs=args.shrink_runs)
            folder = Path(args.shrink_dir or Path(scn.outputs.dir) / scn.name / "check")
            folder.mkdir(parents=True, exist_ok=True)
            fpath = folder / f"seed-{first.seed}-faults.json"
            fpath.write_text(json.dumps(small.to_json(), indent=2) + "\n")
            ids = " ".join(f.id for f in small.faults) or "none"
            print(f"shrunk the fault schedule from {len(world.plan.faults)} to {len(small.faults)} fault(s) "
                  f"({ids}) in {runs} runs; {v.invariant} still fails with:")
            print(f"replay: {replay_command(args.file, first.seed, args.overrides, str(fpath))}")
    return 1


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``check`` to the ``mimisim`` command's subparsers."""
    from mimisim.sim.scenario_cli import add_set_option

    c = subparsers.add_parser(
        "check", help="run N seeds with their random faults and check every invariant (exit 1 on a violation)",
        description="Run seeds start..start+N-1 of a scenario, check the invariants of docs/invariants.md on "
                    "each trace, print invariant x runs passed; for a failure: the first failing seed, its "
                    "violation, the command that replays it, and a shrunk fault schedule.")
    c.add_argument("file", help="scenario YAML file")
    add_set_option(c)
    c.add_argument("--seeds", type=int, default=100, help="how many seeds (default 100)")
    c.add_argument("--start", type=int, default=1, help="first seed (default 1)")
    g = c.add_mutually_exclusive_group()
    g.add_argument("--workers", type=int, default=1, help="local worker processes (default 1; 0 = one per CPU)")
    g.add_argument("--dask", default=None, metavar="ADDR", help="run on a Dask scheduler (tcp://host:8786)")
    c.add_argument("--no-shrink", action="store_true", help="do not shrink a failing run's fault schedule")
    c.add_argument("--shrink-runs", type=int, default=200, help="at most this many runs while shrinking")
    c.add_argument("--shrink-dir", default=None, help="where the shrunk schedule goes "
                                                      "(default <outputs.dir>/<name>/check)")
    c.add_argument("--json", default=None, metavar="FILE", help="also write the report as JSON")
    c.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    c.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    if args.workers == 0:
        args.workers = None
    return cmd_check(args)
