"""The mutation catch rate of ``mimisim check`` over the configuration
matrix (issue 11, item 7).

For each mutation of :mod:`tests.mutations`: apply it, run seeds
1..``seeds`` of every configuration of ``scenarios/matrix/chaos.yaml``, and
call it *caught* at the first (configuration, seed) where an invariant fails
that held on the same configuration and seed without the mutation (the
matrix has known failures today: a mutation gets no credit for those), or
where an attack is accepted, or the run raises. Runs in this process (the
patches are monkeypatches), serially.

    python -m tests.mutation_matrix [--seeds 3] [--only NAME ...]

``tests/test_check_mutations.py::test_matrix_catch_rate`` (slow) runs it.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from mimisim.check import Configuration, _scenario, load_matrix, run_checked
from tests.mutations import Mutation, all_mutations

MATRIX = Path(__file__).resolve().parents[1] / "scenarios" / "matrix" / "chaos.yaml"

Key = tuple[str, int]


def verdicts(configs: list[Configuration], only: Key | None = None) -> dict[Key, frozenset[str]]:
    """(configuration, seed) -> the names of the checks that failed (an
    accepted attack counts as ``adversary``; a raised exception as ``raised``)."""
    out: dict[Key, frozenset[str]] = {}
    for c in configs:
        scn = _scenario(c.scenario, c.overrides)
        for s in c.seeds:
            if only is not None and (c.name, s) != only:
                continue
            out[(c.name, s)] = _one(scn, s)
    return out


def _one(scn: object, seed: int) -> frozenset[str]:
    try:
        world, res = run_checked(scn, seed)  # type: ignore[arg-type]
    except Exception as e:  # a mutation that makes the run raise is caught, loudly
        return frozenset({f"raised {type(e).__name__}"})
    bad = {k for k, v in res.items() if v}
    if world.trace.counts().get("adversary.accepted"):
        bad.add("adversary")
    return frozenset(bad)


@dataclass
class Outcome:
    mutation: str
    caught: bool
    where: str  # "config seed: invariants" of the first catch
    runs: int
    wall_s: float


def hunt(m: Mutation, configs: list[Configuration], baseline: dict[Key, frozenset[str]]) -> Outcome:
    t0 = time.perf_counter()
    runs = 0
    with pytest.MonkeyPatch.context() as mp:
        m.apply(mp)
        # seed-major order: one seed of every configuration first, so a
        # mutation that one configuration exposes is found early
        for seed in range(1, max(len(c.seeds) for c in configs) + 1):
            for c in configs:
                if seed not in c.seeds:
                    continue
                runs += 1
                got = _one(_scenario(c.scenario, c.overrides), seed)
                new = got - baseline[(c.name, seed)]
                if new:
                    return Outcome(m.name, True, f"{c.name} seed {seed}: {', '.join(sorted(new))}", runs,
                                   time.perf_counter() - t0)
    return Outcome(m.name, False, "", runs, time.perf_counter() - t0)


def catch_rate(seeds: int = 3, only: list[str] | None = None, out: object = None) -> list[Outcome]:
    configs = load_matrix(MATRIX, seeds)
    baseline = verdicts(configs)
    results = []
    for m in all_mutations():
        if only and m.name not in only:
            continue
        r = hunt(m, configs, baseline)
        results.append(r)
        if out is not None:
            mark = f"caught ({r.where})" if r.caught else "ESCAPED"
            print(f"{m.name:<40} {m.bug_class:<28} {mark}  [{r.runs} runs, {r.wall_s:.0f} s]", file=out,
                  flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--only", nargs="*", default=None)
    a = ap.parse_args(argv)
    res = catch_rate(a.seeds, a.only, sys.stdout)
    caught = sum(r.caught for r in res)
    print(f"catch rate: {caught}/{len(res)} mutations caught with {a.seeds} seed(s) per configuration")
    return 0


if __name__ == "__main__":
    sys.exit(main())
