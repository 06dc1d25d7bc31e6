"""Single-room benchmark: one room of N members over P providers (issue 14).

Run: ``python benchmarks/bench_room.py [--cases 100/10,300/20] [--sim-s 60] [--setup-s 30]
[--sharing/--no-sharing] [--profile/--no-profile] [--isolate/--no-isolate]``
(larger cases such as ``1000/50`` or ``10000/100`` are parameters; they take long).

Why a separate benchmark from :mod:`benchmarks.bench_sim`: the whole-world
benchmark has rooms of 5 to 15 members, so the work every member of a room
repeats (decoding the same commit, verifying the same signatures, validating
the same tree) never shows; a single large room is where it dominates.

Shape: users ``u00000..`` spread round-robin over P providers (one client per
user, every third on the mobile access profile), one room with all of them,
its creator (and hub) the first user. Workload: 1 message/s (200 B) and 6
Update commits/min in the room, from ``--setup-s`` simulated seconds (the
setup, KeyPackage uploads and the room built through the protocol, runs
before it; ``--setup`` picks how: one commit per user or all in one, the
scenario default being bulk above 32 members). The setup phase ends when
every member joined (the world checks each simulated second); with
incremental setup of a large room it may still be going on when the
workload starts, which the printed ``rooms built at`` shows.

Figures per case: wall time of building the world, of the setup phase (to
the workload start) and of the workload; trace rows (simulated events) per
second of wall time; peak RSS (``ru_maxrss`` of a fresh spawned process per
case, unless ``--no-isolate``); and, from a second identical run under
cProfile, the share of time in crypto (the ``cryptography`` package and the
MLS crypto/HPKE layers, see :func:`benchmarks.bench_sim.category`). That
crypto share is an upper bound of the unavoidable crypto: it includes the
repeated verifications that sharing removes.
"""

from __future__ import annotations

import argparse
import cProfile
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from benchmarks.bench_sim import COST, _maxrss_mib, attribute
from mimisim.sim.scenario import load_scenario_text
from mimisim.sim.world import World

SEED = 1
MSG_PER_MIN = 60.0
MSG_SIZE = 200
UPDATES_PER_MIN = 6.0


def scenario_yaml(n: int, p: int, sim_s: float, setup_s: float, setup: str | None, seed: int = SEED) -> str:
    """The scenario of one case as YAML text (``setup``: the room's initial setup option, or
    ``None`` to leave the scenario's default)."""
    providers = [f"p{i:03d}.example" for i in range(p)]
    cost = ", ".join(f"{k}: {v * 1e6:g}ns" for k, v in COST.items())
    out = [f"name: bench-room-{n}-{p}", f"seed: {seed}", f"duration: {sim_s:g}s", "providers:"]
    out += [f"  {d}: {{cost: {{{cost}}}}}" for d in providers]
    out.append("users:")
    users = [(f"u{i:05d}", providers[i % p], "mobile" if i % 3 == 0 else "wifi") for i in range(n)]
    out += [f"  {u}: {{provider: {d}, clients: {{d{u[1:]}: {{access: {a}}}}}}}" for u, d, a in users]
    parts = ", ".join(f"{u}: {'group_admin' if i == 0 else 'ordinary_user'}" for i, (u, _, _) in enumerate(users))
    out += ["rooms:", "  room:", f"    hub: {providers[0]}", f"    participants: {{{parts}}}"]
    if setup is not None:
        out.append(f"    setup: {setup}")
    out += f"""network:
  default:
    latency: {{kind: constant, value: 40ms}}
    jitter: 10ms
    loss: {{kind: bernoulli, p: 0.01}}
  access:
    wifi:
      latency: {{kind: uniform, low: 5ms, high: 15ms}}
    mobile:
      latency: {{kind: lognormal, median: 60ms, sigma: 0.5}}
      loss: 0.5%
      bandwidth: 10Mbit/s
workload:
  messages: {{rate: {MSG_PER_MIN:g}/min, size: {MSG_SIZE}B, start: {setup_s:g}s}}
  updates: {{rate: {UPDATES_PER_MIN:g}/min, start: {setup_s:g}s}}
outputs: {{progress: never, trace: false}}
""".splitlines()
    return "\n".join(out) + "\n"


@dataclass
class Case:
    n: int
    p: int
    sim_s: float
    setup_s: float
    setup: str | None
    events: int
    setup_events: int
    build_s: float
    setup_wall_s: float
    workload_wall_s: float
    maxrss_mib: float
    baseline_rss_mib: float
    setup_cpu_s: float
    workload_cpu_s: float
    counts: dict[str, int]
    profile: dict[str, Any] | None = None
    setup_end_ms: float | None = None  # simulated time the initial members had all joined (None: never)

    @property
    def wall_s(self) -> float:
        return self.setup_wall_s + self.workload_wall_s

    @property
    def events_per_s(self) -> float:
        return self.events / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def workload_events_per_s(self) -> float:
        w = self.workload_wall_s
        return (self.events - self.setup_events) / w if w > 0 else float("nan")


def run_case(n: int, p: int, sim_s: float, setup_s: float, setup: str | None,
             prof: cProfile.Profile | None = None) -> Case:
    """One run in this process (under ``prof`` when given). The setup phase
    ends when the world finds every initial member joined
    (``World.setup_wall_s``/``setup_cpu_s``, checked each simulated second);
    if it never ends, at the workload's start."""
    base = _maxrss_mib()
    t0 = time.perf_counter()
    world = World(load_scenario_text(scenario_yaml(n, p, sim_s, setup_s, setup), f"bench-room-{n}"), SEED)
    build = time.perf_counter() - t0
    mark: dict[str, float] = {}

    def marker() -> Any:  # records no trace row and draws nothing: the run is unchanged
        yield world.env.timeout(setup_s * 1000.0)
        mark["wall"] = time.perf_counter()
        mark["cpu"] = time.process_time()
        mark["events"] = len(world.trace)

    world.env.process(marker())
    if prof is not None:
        prof.enable()
    t1, c1 = time.perf_counter(), time.process_time()
    world.run(progress=False)
    t2, c2 = time.perf_counter(), time.process_time()
    if prof is not None:
        prof.disable()
    if world.setup_wall_s is not None and world.setup_cpu_s is not None and world.setup_end_ms is not None:
        at, cat = t1 + world.setup_wall_s, c1 + world.setup_cpu_s
        setup_events = sum(1 for t in world.trace.column("t_ms") if t <= world.setup_end_ms)
    else:
        at, cat = mark.get("wall", t2), mark.get("cpu", c2)
        setup_events = int(mark.get("events", len(world.trace)))
    return Case(n, p, sim_s, setup_s, setup, len(world.trace), setup_events, build,
                at - t1, t2 - at, _maxrss_mib(), base, cat - c1, c2 - cat, world.trace.counts(),
                setup_end_ms=world.setup_end_ms)


def measure(n: int, p: int, sim_s: float, setup_s: float, setup: str | None, profile: bool) -> Case:
    res = run_case(n, p, sim_s, setup_s, setup)
    if profile:
        prof = cProfile.Profile()
        again = run_case(n, p, sim_s, setup_s, setup, prof)
        if again.events != res.events:
            raise AssertionError(f"profiled rerun differs: {again.events} events, first run {res.events}")
        res.profile = attribute(prof)
        res.profile["wall_s"] = again.wall_s
    return res


def _isolated(n: int, p: int, sim_s: float, setup_s: float, setup: str | None, profile: bool) -> Case:
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        res: Case = pool.apply(measure, (n, p, sim_s, setup_s, setup, False))
    if profile:  # the profiled rerun in its own process, so that it does not raise the peak
        with ctx.Pool(1) as pool:
            again: Case = pool.apply(measure, (n, p, sim_s, setup_s, setup, True))
        if again.events != res.events:
            raise AssertionError(f"rerun differs: {again.events} events, first run {res.events}")
        res.profile = again.profile
    return res


def report(cases: list[Case], isolate: bool) -> str:
    mem = "ru_maxrss of a fresh spawned process per case" if isolate else "ru_maxrss of this process"
    lines = [f"seed {SEED}; one room; {MSG_PER_MIN:g} msg/min ({MSG_SIZE} B), {UPDATES_PER_MIN:g} Updates/min; "
             f"peak RSS = {mem}; wall = setup + workload (world building apart); cpu = process CPU time "
             "(the steadier figure on a shared machine)", ""]
    lines.append(f"{'N/P':>10} {'setup':>11} {'sim s':>6} {'events':>8} {'build s':>8} {'setup s':>8} "
                 f"{'work s':>8} {'wall s':>8} {'cpu set':>8} {'cpu work':>8} {'ev/s':>7} {'work ev/s':>9} {'peak MiB':>9} {'crypto%':>8}")
    for c in cases:
        crypto = f"{c.profile['share']['crypto'] * 100:.1f}" if c.profile else "-"
        lines.append(f"{f'{c.n}/{c.p}':>10} {c.setup or 'default':>11} {c.sim_s:>6g} {c.events:>8} {c.build_s:>8.2f} "
                     f"{c.setup_wall_s:>8.2f} {c.workload_wall_s:>8.2f} {c.wall_s:>8.2f} {c.setup_cpu_s:>8.2f} "
                     f"{c.workload_cpu_s:>8.2f} {c.events_per_s:>7.0f} "
                     f"{c.workload_events_per_s:>9.0f} {c.maxrss_mib:>9.0f} {crypto:>8}")
    lines.append("")
    for c in cases:
        k = c.counts
        lines.append(f"  {c.n}/{c.p}: messages submitted {k.get('client.submit', 0)}, deliveries "
                     f"{k.get('client.deliver', 0)}, commits {k.get('client.commit', 0)}, "
                     f"setup events {c.setup_events}, rooms built at "
                     f"{'never' if c.setup_end_ms is None else f'{c.setup_end_ms / 1000:.1f} s'} simulated "
                     f"(workload from {c.setup_s:g} s)")
        if c.profile:
            sh = c.profile["share"]
            lines.append(f"      profile: SimPy {sh['simpy'] * 100:.1f}%, crypto {sh['crypto'] * 100:.1f}%, rest "
                         f"{sh['rest'] * 100:.1f}%; top functions: " + ", ".join(
                             f"{f} {s * 100:.1f}%" for f, s, _ in c.profile["top_funcs"][:6]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--cases", default="100/10,300/20", help="comma-separated N/P (members/providers)")
    ap.add_argument("--sim-s", type=float, default=60.0)
    ap.add_argument("--setup-s", type=float, default=30.0, help="simulated second the workload starts")
    ap.add_argument("--setup", choices=("auto", "incremental", "bulk"), default=None,
                    help="how the room is built (default: the scenario's default, auto: bulk above 32 members)")
    ap.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--sharing", action=argparse.BooleanOptionalAction, default=None,
                    help="force sharing of pure work on/off (default: MIMISIM_SHARING, else on)")
    ap.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=True)
    a = ap.parse_args(argv)
    try:
        cases = [tuple(int(x) for x in c.split("/")) for c in a.cases.split(",")]
        if any(len(c) != 2 or c[0] < 2 or c[1] < 1 or c[1] > c[0] for c in cases):
            raise ValueError
    except ValueError:
        print(f"bench_room: bad --cases {a.cases!r} (expected N/P,...: N >= 2 members, 1 <= P <= N)",
              file=sys.stderr)
        sys.exit(2)
    if a.sharing is not None:  # the spawned children read it from the environment
        os.environ["MIMISIM_SHARING"] = "on" if a.sharing else "off"
        from mimisim import sharing
        sharing.enabled = a.sharing
    run = _isolated if a.isolate else measure
    out = []
    for n, p in cases:
        out.append(run(n, p, a.sim_s, a.setup_s, a.setup, a.profile))
        print(report(out[-1:], a.isolate), flush=True)
    print("\n" + report(out, a.isolate))


if __name__ == "__main__":
    main()
