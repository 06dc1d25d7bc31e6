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
    floor: dict[str, float] | None = None  # the unavoidable-crypto floor (see crypto_floor)

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


def _cpu_median(fn: Any, reps: int = 301) -> float:
    out = []
    for _ in range(reps):
        t = time.process_time()
        fn()
        out.append(time.process_time() - t)
    out.sort()
    return out[len(out) // 2]


def unit_costs() -> dict[str, float]:
    """CPU seconds of one AEAD open (a 200 B message's PrivateMessage), one
    HPKE EncryptWithLabel (a path secret) and one Ed25519 verification,
    medians measured now, in this process (sharing off: the real work)."""
    from mimisim import sharing
    from mimisim.mls.crypto import DeterministicRandom, get_suite

    suite = get_suite(1)
    rng = DeterministicRandom(0, "floor")
    key, nonce = rng.random_bytes(suite.aead_key_len), rng.random_bytes(suite.aead_nonce_len)
    ct = suite.aead_seal(key, nonce, b"aad" * 10, b"m" * 300)
    priv, pub = suite.generate_hpke_key_pair(rng)
    spriv, spub = suite.generate_signature_key_pair(rng)
    sig = suite.sign_with_label(spriv, b"FramedContentTBS", b"c" * 300)
    with sharing.sharing(False):
        return {
            "aead_open": _cpu_median(lambda: suite.aead_open(key, nonce, b"aad" * 10, ct)),
            "hpke_seal": _cpu_median(lambda: suite.encrypt_with_label(pub, b"UpdatePathNode", b"ctx", b"s" * 32, rng)),
            "verify": _cpu_median(lambda: suite.verify_with_label(spub, b"FramedContentTBS", b"c" * 300, sig)),
        }


class _CryptoCounts:
    """Counts, during a run, the HPKE encryptions done (committers' path
    secrets and Welcome secrets) and the distinct signatures verified (the
    misses of the shared verification cache: with sharing on, each distinct
    (key, content, signature) is verified once; an upper bound if the bounded
    cache evicted one and it came again). Installed around
    ``CipherSuite.encrypt_with_label`` for the run only; the run is unchanged."""

    def __enter__(self) -> _CryptoCounts:
        from mimisim.mls import crypto

        self.seals = 0
        self._orig = crypto.CipherSuite.encrypt_with_label
        orig = self._orig

        def counted(suite: Any, *a: Any, **k: Any) -> Any:
            self.seals += 1
            return orig(suite, *a, **k)

        crypto.CipherSuite.encrypt_with_label = counted  # type: ignore[method-assign]
        self._misses0 = crypto._verify_shared.cache_info().misses
        return self

    def __exit__(self, *exc: Any) -> None:
        from mimisim.mls import crypto

        crypto.CipherSuite.encrypt_with_label = self._orig  # type: ignore[method-assign]
        self.verifies = crypto._verify_shared.cache_info().misses - self._misses0


def crypto_floor(deliveries: int, counts: _CryptoCounts, units: dict[str, float]) -> dict[str, float]:
    """The unavoidable crypto of a run, in CPU seconds: one AEAD decryption
    per member per delivered message, the HPKE encryptions committers did, one
    verification per distinct signature (issue 14's definition), priced at
    the unit costs measured in the same process."""
    return {"deliveries": deliveries, "seals": counts.seals, "verifies": counts.verifies,
            "floor_s": deliveries * units["aead_open"] + counts.seals * units["hpke_seal"]
            + counts.verifies * units["verify"], **{f"unit_{k}_us": v * 1e6 for k, v in units.items()}}


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
    with _CryptoCounts() as counted:
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
    counts = world.trace.counts()
    floor = crypto_floor(counts.get("client.deliver", 0), counted, unit_costs()) if prof is None else None
    return Case(n, p, sim_s, setup_s, setup, len(world.trace), setup_events, build,
                at - t1, t2 - at, _maxrss_mib(), base, cat - c1, c2 - cat, counts,
                setup_end_ms=world.setup_end_ms, floor=floor)


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
        w = c.workload_wall_s
        lines.append(f"      deliveries/s of workload wall {k.get('client.deliver', 0) / w if w > 0 else float('nan'):.0f}; "
                     f"CPU total {c.setup_cpu_s + c.workload_cpu_s:.1f} s")
        if c.floor:
            f = c.floor
            cpu = c.setup_cpu_s + c.workload_cpu_s
            lines.append(f"      crypto floor {f['floor_s']:.2f} s CPU ({f['deliveries']:.0f} decryptions x "
                         f"{f['unit_aead_open_us']:.1f} us, {f['seals']:.0f} HPKE encryptions x "
                         f"{f['unit_hpke_seal_us']:.0f} us, {f['verifies']:.0f} distinct verifications x "
                         f"{f['unit_verify_us']:.0f} us); run CPU / floor = {cpu / f['floor_s']:.1f}")
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
