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
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mimisim import cliargs
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
    # attempt / rejected / accepted totals, and "<outcome>:<attack>" per attack kind
    adversary: dict[str, int] = field(default_factory=dict)
    digest: str = ""  # trace_digest of its trace, for the determinism re-run

    @property
    def ok(self) -> bool:
        return not any(self.counts.values())

    def first(self) -> Violation | None:
        for name in checks():
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
        return sum(1 for r in self.runs(name) if not r.counts.get(name))

    def runs(self, name: str) -> list[SeedResult]:
        """The seeds ``name`` judged: all of them, except ``deterministic``
        (only the re-run sample)."""
        if name == DETERMINISTIC:
            return [r for r in self.results if DETERMINISTIC in r.counts]
        return self.results

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
        names = [k for k in checks() if self.runs(k)]
        width = max(len(k) for k in names)
        lines = [f"{'invariant':<{width}}  runs passed"]
        for name in names:
            n = len(self.runs(name))
            p = self.passed(name)
            mark = "" if p == n else f"   FAILED in {n - p}"
            lines.append(f"{name:<{width}}  {p}/{n}{mark}")
        return "\n".join(lines)


#: The check that a trace replays byte-identically in a fresh process with
#: another ``PYTHONHASHSEED`` (:func:`rerun_digests`); reported like an invariant.
DETERMINISTIC = "deterministic"


def checks() -> list[str]:
    """Every check's name, in the order the table prints them."""
    return [*INVARIANTS, DETERMINISTIC]


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


def trace_digest(trace: Any) -> str:
    """SHA-256 over every column of a trace DataFrame (names, then values
    in row order): equal digests mean byte-identical traces."""
    h = hashlib.sha256()
    for col in trace.columns:
        h.update(json.dumps([str(col), *trace[col].tolist()], default=str).encode())
    return h.hexdigest()


def run_checked_digest(scn: Scenario, seed: int) -> tuple[Any, dict[str, list[Violation]], str]:
    from mimisim.sim.world import World

    world = World(scn, seed).run(progress=False)
    trace = world.trace.to_pandas()
    return world, check_trace(trace, Context.from_scenario(scn)), trace_digest(trace)


def check_seed(task: tuple[str, tuple[str, ...], int]) -> SeedResult:
    """The task ``run_tasks`` runs: (scenario path, overrides, seed)."""
    path, overrides, seed = task
    scn = _scenario(path, overrides)
    world, res, digest = run_checked_digest(scn, seed)
    counts = world.trace.counts()
    effects = [s for k, s in zip(world.trace.cols["kind"], world.trace.cols["status"], strict=True)
               if k == "fault.effect"]
    adv = {k.split(".", 1)[1]: counts.get(k, 0) for k in ("adversary.attempt", "adversary.rejected",
                                                           "adversary.accepted") if k in counts}
    for ev in world.trace.events:  # and by attack: "attempt:forge_sender", ... (unanswered too)
        if ev is not None and ev.kind.startswith("adversary."):
            key = f"{ev.kind.split('.', 1)[1]}:{getattr(ev, 'attack', None)}"
            adv[key] = adv.get(key, 0) + 1
    return SeedResult(
        seed, {k: [v.to_json() for v in vs[:KEEP]] for k, vs in res.items() if vs},
        {k: len(vs) for k, vs in res.items()}, len(world.plan.faults), sum(1 for s in effects if s == "bit"),
        len(world.trace), round(world.wall_s, 3), adv, digest,
    )


# ====================================================================== determinism

#: How the fresh process is started (a test may point it at a wrapper that
#: patches the core first, to show a nondeterminism bug is caught).
CHILD_COMMAND: list[str] = [sys.executable, "-m", "mimisim.check"]


def other_hash_seed() -> str:
    """A ``PYTHONHASHSEED`` different from this process's: its value + 1
    when it is set, else a fixed one (this process's is random, so the two
    differ but for a 1 in 2^32 chance)."""
    mine = os.environ.get("PYTHONHASHSEED", "")
    if mine.isdigit():
        return str((int(mine) + 1) % 4_294_967_296)
    return "4049"


def rerun_digests(tasks: Sequence[tuple[str, tuple[str, ...], int]], hash_seed: str | None = None) -> list[str]:
    """The trace digests of ``tasks`` computed in one fresh Python process
    with another ``PYTHONHASHSEED`` (set/dict order of strings changes, and
    nothing is shared with this process: no cached scenario, no warm state)."""
    if not tasks:
        return []
    env = dict(os.environ, PYTHONHASHSEED=hash_seed or other_hash_seed())
    payload = json.dumps([[p, list(o), s] for p, o, s in tasks])
    out = subprocess.run([*CHILD_COMMAND, "--digests"], input=payload, capture_output=True, text=True, env=env,
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(f"the determinism re-run failed (exit {out.returncode}): {out.stderr.strip()[-2000:]}")
    digests = json.loads(out.stdout.strip().splitlines()[-1])
    assert isinstance(digests, list) and len(digests) == len(tasks)
    return [str(d) for d in digests]


def _digests_main() -> int:
    """The fresh process's side: tasks as JSON on stdin, digests as one
    JSON line on stdout."""
    tasks = json.loads(sys.stdin.read())
    out = []
    for path, overrides, seed in tasks:
        _, _, digest = run_checked_digest(_scenario(path, tuple(overrides)), int(seed))
        out.append(digest)
    print(json.dumps(out))
    return 0


def sample(seeds: Sequence[int], n: int) -> list[int]:
    """``n`` seeds spread evenly over ``seeds`` (first and last included)."""
    seeds = list(seeds)
    if n <= 0 or not seeds:
        return []
    if n >= len(seeds):
        return seeds
    if n == 1:
        return [seeds[0]]
    return sorted({seeds[round(i * (len(seeds) - 1) / (n - 1))] for i in range(n)})


def verify_determinism(tasks: Sequence[tuple[str, tuple[str, ...], int]], results: Sequence[SeedResult],
                       n: int) -> int:
    """Re-run a sample of ``n`` seeds per scenario+overrides in a fresh
    process and record the verdict in each sampled seed's result (a
    ``deterministic`` count of 0 or 1, and the violation). Returns how many
    seeds were re-run."""
    groups: dict[tuple[str, tuple[str, ...]], list[int]] = {}
    for i, (p, o, _) in enumerate(tasks):
        groups.setdefault((p, o), []).append(i)
    chosen: list[int] = []
    for idx in groups.values():
        by_seed = {tasks[i][2]: i for i in idx}
        chosen += [by_seed[s] for s in sample([tasks[i][2] for i in idx], n)]
    hash_seed = other_hash_seed()
    again = rerun_digests([tasks[i] for i in chosen], hash_seed)
    for i, d in zip(chosen, again, strict=True):
        r = results[i]
        bad = d != r.digest
        r.counts[DETERMINISTIC] = int(bad)
        if bad:
            r.violations[DETERMINISTIC] = [Violation(
                DETERMINISTIC, f"seed {r.seed}: trace digest {r.digest[:16]} here, {d[:16]} in a fresh process "
                f"with PYTHONHASHSEED={hash_seed}").to_json()]
    return len(chosen)


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
          dask: Any = None, progress: bool | None = None, determinism: int = 0) -> CheckReport:
    """Run and check ``seeds`` of a scenario file (the Python side of ``mimisim check``);
    ``determinism``: how many of them to re-run in a fresh process (:func:`verify_determinism`)."""
    scn = _scenario(str(path), tuple(overrides))
    t0 = time.perf_counter()
    tasks = [(str(path), tuple(overrides), int(s)) for s in seeds]
    results = run_tasks_checked(tasks, workers=workers, dask=dask, progress=progress)
    if determinism:
        verify_determinism(tasks, results, determinism)
    return CheckReport(scn.name, list(seeds), results, time.perf_counter() - t0)


def run_tasks_checked(tasks: list[tuple[str, tuple[str, ...], int]], *, workers: int | None, dask: Any,
                      progress: bool | None) -> list[SeedResult]:
    from mimisim.parallel import run_tasks

    return run_tasks(check_seed, tasks, workers=workers, dask=dask, progress=progress, desc="check")


# ====================================================================== the configuration matrix


class MatrixError(ValueError):
    """A matrix file that cannot be used (one line: file and what is wrong)."""


@dataclass(frozen=True)
class Configuration:
    """One column of the matrix: a scenario file, overrides, seeds."""

    name: str
    scenario: str  # path, resolved against the matrix file's folder
    overrides: tuple[str, ...]
    seeds: tuple[int, ...]
    covers: tuple[str, ...] = ()  # what it is there for (documentation, printed with -v)


def load_matrix(path: str | Path, seeds: int | None = None, start: int = 1) -> list[Configuration]:
    """Read a matrix file::

        seeds: 20                       # per configuration (``--seeds`` wins)
        configurations:
          dedup-none:
            scenario: ../chaos.yaml     # relative to this file
            set: [protocol.dedup.strategy=none]
            covers: [dedup none]

    and check that every scenario loads with its overrides."""
    import yaml

    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as e:
        raise MatrixError(f"{file}: cannot read: {e.strerror or e}") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at = f":{mark.line + 1}" if mark is not None else ""
        raise MatrixError(f"{file}{at}: not YAML: {e.problem or e.context or 'invalid YAML'}") from None
    except yaml.YAMLError as e:
        raise MatrixError(f"{file}: not YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("configurations"), dict) or not data["configurations"]:
        raise MatrixError(f"{file}: needs a non-empty 'configurations' mapping")
    unknown = set(data) - {"seeds", "configurations", "description"}
    if unknown:
        raise MatrixError(f"{file}: unknown key(s) {', '.join(sorted(unknown))}")
    n = seeds if seeds is not None else data.get("seeds", 20)
    if not isinstance(n, int) or n < 1:
        raise MatrixError(f"{file}: seeds must be a positive integer, got {n!r}")
    out = []
    for name, spec in data["configurations"].items():
        where = f"{file}: configurations.{name}"
        if not isinstance(spec, dict) or "scenario" not in spec:
            raise MatrixError(f"{where}: needs 'scenario'")
        bad = set(spec) - {"scenario", "set", "covers", "seeds"}
        if bad:
            raise MatrixError(f"{where}: unknown key(s) {', '.join(sorted(bad))}")
        sets = spec.get("set", [])
        if not isinstance(sets, list) or not all(isinstance(x, str) and "=" in x for x in sets):
            raise MatrixError(f"{where}.set: a list of key.path=value strings")
        k = seeds if seeds is not None else spec.get("seeds", n)
        if not isinstance(k, int) or k < 1:
            raise MatrixError(f"{where}.seeds: a positive integer, got {k!r}")
        scn_path = (file.parent / str(spec["scenario"])).resolve()
        try:
            _scenario(str(scn_path), tuple(sets))
        except ScenarioError as e:
            raise MatrixError(f"{where}: {e}") from None
        out.append(Configuration(str(name), str(scn_path), tuple(sets), tuple(range(start, start + k)),
                                 tuple(str(c) for c in spec.get("covers", []))))
    return out


@dataclass
class MatrixReport:
    """Every configuration's :class:`CheckReport`."""

    configurations: list[Configuration]
    reports: list[CheckReport]
    wall_s: float

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.reports)

    def table(self) -> str:
        """invariant x configuration: ``passed/runs`` (``-`` where not judged)."""
        names = [k for k in checks() if any(r.runs(k) for r in self.reports)]
        cols = [c.name for c in self.configurations]
        width = max(len(k) for k in [*names, "invariant"])
        cw = [max(len(c), 7) for c in cols]
        lines = [f"{'invariant':<{width}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(cols, cw, strict=True))]
        for name in names:
            cells = []
            for r, w in zip(self.reports, cw, strict=True):
                n = len(r.runs(name))
                cell = "-" if n == 0 else f"{r.passed(name)}/{n}" + ("" if r.passed(name) == n else "!")
                cells.append(f"{cell:>{w}}")
            lines.append(f"{name:<{width}}  " + "  ".join(cells))
        return "\n".join(lines)

    def failing(self) -> dict[str, dict[str, list[int]]]:
        """configuration -> invariant -> failing seeds."""
        out: dict[str, dict[str, list[int]]] = {}
        for c, r in zip(self.configurations, self.reports, strict=True):
            for res in r.failing:
                for k, v in res.counts.items():
                    if v:
                        out.setdefault(c.name, {}).setdefault(k, []).append(res.seed)
        return out


def check_matrix(configs: Sequence[Configuration], *, workers: int | None = 1, dask: Any = None,
                 progress: bool | None = None, determinism: int = 0) -> MatrixReport:
    """Run and check every configuration's seeds (one task list, so workers
    stay busy across configurations)."""
    t0 = time.perf_counter()
    tasks = [(c.scenario, c.overrides, s) for c in configs for s in c.seeds]
    results = run_tasks_checked(tasks, workers=workers, dask=dask, progress=progress)
    if determinism:
        verify_determinism(tasks, results, determinism)
    reports, i = [], 0
    for c in configs:
        part = results[i:i + len(c.seeds)]
        i += len(c.seeds)
        reports.append(CheckReport(c.name, list(c.seeds), part, sum(r.wall_s for r in part)))
    return MatrixReport(list(configs), reports, time.perf_counter() - t0)


def cmd_matrix(args: argparse.Namespace) -> int:
    try:
        configs = load_matrix(args.matrix, args.seeds, args.start)
    except MatrixError as e:
        print(str(e), file=sys.stderr)
        return 2
    progress = False if args.no_progress else None
    report = check_matrix(configs, workers=args.workers, dask=args.dask, progress=progress,
                          determinism=args.determinism)
    runs = sum(len(c.seeds) for c in configs)
    tot: dict[str, int] = {}
    for r in report.reports:
        for k, n in r.totals().items():
            tot[k] = tot.get(k, 0) + n
    print(f"{args.matrix}: {len(configs)} configurations, {runs} runs in {report.wall_s:.1f} s wall time; "
          f"{tot.get('events', 0)} events, {tot.get('faults', 0)} faults injected, {tot.get('faults_bit', 0)} bit")
    if "adversary_attempt" in tot:
        print(f"attacks: {tot['adversary_attempt']} tried, {tot.get('adversary_rejected', 0)} rejected, "
              f"{tot.get('adversary_accepted', 0)} accepted")
    print(report.table())
    failing = report.failing()
    if args.json:
        Path(args.json).write_text(json.dumps({
            "matrix": str(args.matrix), "wall_s": round(report.wall_s, 2), "totals": tot,
            "configurations": [{
                "name": c.name, "scenario": c.scenario, "set": list(c.overrides), "seeds": list(c.seeds),
                "covers": list(c.covers), "totals": r.totals(),
                "passed": {k: r.passed(k) for k in checks() if r.runs(k)},
                "runs": {k: len(r.runs(k)) for k in checks() if r.runs(k)},
                "failing": [{"seed": x.seed, "counts": {k: v for k, v in x.counts.items() if v},
                             "violations": x.violations} for x in r.failing],
            } for c, r in zip(configs, report.reports, strict=True)],
        }, indent=2) + "\n")
    bad_attacks = tot.get("adversary_accepted", 0)
    if not failing and not bad_attacks:
        print("all invariants hold in every configuration")
        return 0
    for c, r in zip(configs, report.reports, strict=True):
        if c.name not in failing:
            continue
        print(f"\n{c.name}: " + "; ".join(f"{k} fails in seed(s) {', '.join(map(str, s))}"
                                          for k, s in failing[c.name].items()))
        first = r.failing[0]
        v = first.first()
        if v is not None:
            print(f"  first: seed {first.seed}: [{v.invariant}] {v.message}")
        print(f"  replay: {replay_command(c.scenario, first.seed, c.overrides)}")
    return 1


def cmd_check(args: argparse.Namespace) -> int:
    if args.matrix:
        if args.file:
            print("give either a scenario file or --matrix FILE, not both", file=sys.stderr)
            return 2
        return cmd_matrix(args)
    if not args.file:
        print("a scenario file (or --matrix FILE) is needed", file=sys.stderr)
        return 2
    try:
        scn = load_scenario(args.file, args.overrides)
    except ScenarioError as e:
        print(str(e), file=sys.stderr)
        return 2
    seeds = list(range(args.start, args.start + (args.seeds if args.seeds is not None else 100)))
    progress = False if args.no_progress else None
    report = check(args.file, seeds, args.overrides, workers=args.workers, dask=args.dask, progress=progress,
                   determinism=args.determinism)
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
            "passed": {k: report.passed(k) for k in checks() if report.runs(k)},
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
        if v.invariant == DETERMINISTIC:
            print(f"[{v.invariant}] {v.message}")
            print(f"\nreplay: {replay_command(args.file, first.seed, args.overrides)} "
                  "(twice, with different PYTHONHASHSEED, and compare the traces)")
            return 1
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


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``check`` to the ``mimisim`` command's subparsers."""
    from mimisim.sim.scenario_cli import add_set_option

    c = subparsers.add_parser(
        "check", help="run N seeds with their random faults and check every invariant (exit 1 on a violation)",
        description="Run seeds start..start+N-1 of a scenario (or of every configuration of a matrix file), "
                    "check the invariants of docs/invariants.md on each trace, re-run a sample of seeds in a "
                    "fresh process with another PYTHONHASHSEED and compare trace digests, print invariant x "
                    "runs passed; for a failure: the first failing seed, its violation, the command that "
                    "replays it, and a shrunk fault schedule.")
    c.add_argument("file", nargs="?", default=None, help="scenario YAML file (or use --matrix)")
    add_set_option(c)
    c.add_argument("--matrix", default=None, metavar="FILE",
                   help="a matrix file (scenarios/matrix/chaos.yaml): check every configuration, print "
                        "invariant x configuration")
    c.add_argument("--seeds", type=cliargs.count, default=None,
                   help="how many seeds, at least 1 (default 100; with --matrix: per configuration, default the "
                        "file's)")
    c.add_argument("--start", type=cliargs.seed, default=1, help=f"first seed, 0..{cliargs.MAX_SEED} (default 1)")
    c.add_argument("--determinism", type=cliargs.nonneg_int, default=3, metavar="N",
                   help="re-run N seeds (per configuration) in a fresh process with another PYTHONHASHSEED and "
                        "compare trace digests (default 3; 0: off)")
    g = c.add_mutually_exclusive_group()
    g.add_argument("--workers", type=cliargs.workers, default=1,
                   help="local worker processes (default 1; 0 = one per CPU)")
    g.add_argument("--dask", default=None, metavar="ADDR", help="run on a Dask scheduler (tcp://host:8786)")
    c.add_argument("--no-shrink", action="store_true", help="do not shrink a failing run's fault schedule")
    c.add_argument("--shrink-runs", type=cliargs.count, default=200, help="at most this many runs while shrinking")
    c.add_argument("--shrink-dir", default=None, help="where the shrunk schedule goes "
                                                      "(default <outputs.dir>/<name>/check)")
    c.add_argument("--json", default=None, metavar="FILE", help="also write the report as JSON")
    c.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    c.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    """Check the arguments that depend on each other or on the file system
    (a bad one is a one-line ``UserError``, exit 2), then run the check."""
    last = args.start + (args.seeds if args.seeds is not None else 100) - 1
    if last > cliargs.MAX_SEED:
        raise cliargs.UserError(f"mimisim check: --start {args.start} --seeds {args.seeds} goes past the largest "
                                f"seed {cliargs.MAX_SEED}")
    if args.json:
        cliargs.writable_file(args.json, "--json")
    if args.shrink_dir:
        cliargs.writable_dir(args.shrink_dir, "--shrink-dir")
    return cmd_check(args)


if __name__ == "__main__":
    if sys.argv[1:] == ["--digests"]:
        sys.exit(_digests_main())
    print("usage: python -m mimisim.check --digests  (tasks as JSON on stdin; use `mimisim check`)", file=sys.stderr)
    sys.exit(2)
