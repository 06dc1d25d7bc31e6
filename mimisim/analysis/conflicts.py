"""The epoch-conflict study: commits against the same epoch, from the trace.

Two members commit against epoch *e*; the hub accepts the first and answers
``wrongEpoch`` to the other, who catches up and retries (or abandons, per
``workload.retry.mode``). Definitions (docs/studies.md):

- an **operation** is one thing a client wanted to commit (an Update, an
  add, a commit of pending proposals): its first ``client.commit`` row
  (``attempt 1``) and every retry after it (``attempt n``) by the same client
  in the same room;
- the operation **conflicted** if its first attempt was answered
  ``wrongEpoch``; the **conflict probability** is conflicted / operations;
- **time to accepted commit**: from the first attempt's creation to the hub
  accepting any attempt of the operation (NaN if none was accepted);
- the **vulnerable window** W: a commit by Y is invisible to member X for
  ``d(Y, X)`` = from its creation to X processing it (``client.epoch`` with
  its msg_id). A commit by X conflicts if some other member committed within
  that time before it. With the committer uniform over the n members, the
  rate of commits X cannot see yet is lambda/n per other member, so
  ``P(conflict) = 1 - exp(-lambda W)`` with ``W = (1/n) sum_{Y != X} d(Y, X)``,
  averaged over commits. :func:`vulnerable_window` measures it from
  accepted Update commits (first attempts, so that retries, which follow a
  commit by construction, do not bias it); :func:`window_from_scenario`
  computes it from the scenario's mean latencies alone (``p_model_scenario``).
"""

from __future__ import annotations

import bisect
import functools
import heapq
import math
from typing import Any

import numpy as np
import pandas as pd

from mimisim.analysis.stats import wilson

#: Columns of :func:`operations`.
OPERATION_COLUMNS = ["room", "client", "op", "t_request", "t_first", "queued", "epoch", "attempts", "wrong_epoch",
                     "conflicted", "accepted", "gave_up", "t_accept", "time_to_accept_ms", "time_to_settle_ms",
                     "outcome"]
#: A first attempt built this long after the workload asked for it waited in
#: the client's one-operation-per-room queue (ms; building is instantaneous
#: in simulated time, so any positive gap is a wait).
QUEUED_AFTER_MS = 0.5


def requests(trace: pd.DataFrame, op: str = "update") -> pd.DataFrame:
    """The operations the workload asked for (offered load): ``workload.action``
    rows of that action, setup excluded: ``room, client, t_request``."""
    w = trace[(trace["kind"] == "workload.action") & (trace["action"] == op)]
    if "setup" in w.columns:
        w = w[~w["setup"].fillna(False).astype(bool)]
    w = w[(w["status"] != "skipped") & (w["node"] != "")]  # a skipped request asked nothing of a client
    return pd.DataFrame({"room": w["room"].to_numpy(), "client": w["node"].to_numpy(),
                         "t_request": w["t_ms"].to_numpy(dtype=float)})


def operations(trace: pd.DataFrame) -> pd.DataFrame:
    """One row per commit operation a client built: ``room, client, op,
    t_request, t_first, queued, epoch, attempts, wrong_epoch, conflicted,
    accepted, gave_up, t_accept, time_to_accept_ms, time_to_settle_ms, outcome``.

    ``outcome`` is ``accepted``, ``gave_up`` (a ``client.fail``: retries
    exhausted, or abandoned under ``retry.mode: abandon``) or ``in_flight``
    (neither when the run ended). ``t_request`` is the workload's request
    for workload Updates (a client runs one operation per room at a time,
    first in first out, so the k-th request of a client in a room is its k-th
    Update operation); ``queued`` marks a first attempt built later than
    requested (it waited behind another operation). ``time_to_settle_ms``:
    first attempt to acceptance or give-up. External commits (joins,
    resyncs) are operations too (``op`` = join)."""
    rows_ = trace[trace["kind"].isin(["client.commit", "client.fail"])]
    acc = trace[(trace["kind"] == "hub.accept") & (trace["msg_id"] != "")].groupby("msg_id")["t_ms"].min()
    rej = trace[(trace["kind"] == "hub.reject") & (trace["status"] == "wrongEpoch")].groupby("msg_id").size()
    ops: list[dict[str, Any]] = []
    last: dict[tuple[str, str], dict[str, Any]] = {}
    cols = ["kind", "room", "node", "t_ms", "epoch", "msg_id", "operation", "attempt"]
    for row in rows_[cols].itertuples(index=False):
        kind = str(row.operation)
        key = (row.room, row.node)
        op = last.get(key)
        if row.kind == "client.fail":
            if op is not None and op["op"] == kind and not op["gave_up"] and math.isnan(op["t_accept"]):
                op["gave_up"], op["t_end"] = True, float(row.t_ms)
            continue
        attempt = 1 if row.attempt is pd.NA else int(row.attempt)
        if attempt == 1 or op is None or op["op"] != kind:
            op = {"room": row.room, "client": row.node, "op": kind, "t_first": row.t_ms, "epoch": row.epoch,
                  "attempts": 0, "wrong_epoch": 0, "conflicted": False, "t_accept": math.nan, "gave_up": False,
                  "t_end": math.nan}
            ops.append(op)
            last[key] = op
        op["attempts"] += 1
        n_wrong = int(rej.get(row.msg_id, 0))
        if op["attempts"] == 1 and n_wrong:
            op["conflicted"] = True
        op["wrong_epoch"] += n_wrong
        if row.msg_id in acc.index and math.isnan(op["t_accept"]):
            op["t_accept"] = op["t_end"] = float(acc[row.msg_id])
    out = pd.DataFrame(ops, columns=["room", "client", "op", "t_first", "epoch", "attempts", "wrong_epoch",
                                     "conflicted", "t_accept", "gave_up", "t_end"])
    out["t_request"] = out["t_first"].astype(float)
    req = requests(trace)
    if len(req) and len(out):
        upd = out["op"] == "update"
        k = out[upd].groupby(["room", "client"]).cumcount()
        rk = req.assign(k=req.groupby(["room", "client"]).cumcount())
        m = out[upd].assign(k=k).reset_index().merge(rk, on=["room", "client", "k"], how="left",
                                                     suffixes=("", "_w"))
        t = m.set_index("index")["t_request_w"]
        out.loc[t.index, "t_request"] = t.fillna(out.loc[t.index, "t_first"]).to_numpy()
    out["queued"] = (out["t_first"] - out["t_request"]) > QUEUED_AFTER_MS
    out["accepted"] = out["t_accept"].notna()
    out["gave_up"] = out["gave_up"].astype(bool) & ~out["accepted"]
    out["time_to_accept_ms"] = out["t_accept"] - out["t_first"]
    out["time_to_settle_ms"] = out["t_end"] - out["t_first"]
    out["outcome"] = np.where(out["accepted"], "accepted", np.where(out["gave_up"], "gave_up", "in_flight"))
    return out[OPERATION_COLUMNS]


def vulnerable_window(trace: pd.DataFrame, op: str = "update") -> dict[str, float]:
    """The measured window: ``W_ms`` (see the module docstring), ``d_mean_ms``
    (mean commit-to-member delay over (commit, other member) pairs),
    ``d_min_ms`` / ``d_max_ms`` (per commit, the first and the last other
    member to process it, averaged over commits), ``members`` (mean n)."""
    c = trace[trace["kind"] == "client.commit"]
    c = c[(c["operation"] == op) & (c["attempt"] == 1).fillna(False)][["msg_id", "node", "t_ms"]]
    e = trace[(trace["kind"] == "client.epoch") & trace["msg_id"].isin(c["msg_id"])][["msg_id", "node", "t_ms"]]
    j = e.merge(c, on="msg_id", suffixes=("", "_c"))
    j = j[j["node"] != j["node_c"]]
    if j.empty:
        return {"W_ms": math.nan, "d_mean_ms": math.nan, "d_min_ms": math.nan, "d_max_ms": math.nan,
                "members": math.nan}
    j = j.assign(d=j["t_ms"] - j["t_ms_c"])
    g = j.groupby("msg_id")["d"]
    per = pd.DataFrame({"sum": g.sum(), "n": g.size() + 1, "min": g.min(), "max": g.max()})
    return {"W_ms": float((per["sum"] / per["n"]).mean()), "d_mean_ms": float(j["d"].mean()),
            "d_min_ms": float(per["min"].mean()), "d_max_ms": float(per["max"].mean()),
            "members": float(per["n"].mean())}


def mean_latency_ms(dist: Any) -> float:
    """The mean of a scenario latency distribution (ms); NaN for a kind it does not know.
    Truncation of ``truncnormal`` is ignored; jitter is symmetric and adds nothing."""
    kind = getattr(dist, "kind", None)
    if kind == "constant":
        return float(dist.value)
    if kind == "uniform":
        return (float(dist.low) + float(dist.high)) / 2
    if kind == "lognormal":
        return float(dist.median) * math.exp(float(dist.sigma) ** 2 / 2)
    if kind == "exponential":
        return float(dist.mean)
    if kind == "truncnormal":
        return float(dist.mean)
    if kind == "pareto" and float(dist.shape) > 1:
        return float(dist.scale) * float(dist.shape) / (float(dist.shape) - 1)
    if kind == "empirical" and dist.samples:
        return float(np.mean(dist.samples))
    return math.nan


def window_from_scenario(scenario: Any, room: str | None = None) -> float:
    """W computed from the scenario alone (ms): ``d(Y, X) = access up (Y) +
    link (Y's provider -> hub) + link (hub -> X's provider) + access down (X)``
    with mean latencies, a link counting 0 when both ends are the same
    provider, and ``W = mean over Y of (1/n) sum_{X != Y} d(Y, X)`` over the
    room's initial member clients. Processing costs and bandwidth are left
    out (sub-millisecond in the study scenarios)."""
    name = room or next(iter(scenario.rooms))
    spec = scenario.rooms[name]
    hub = spec.hub
    users = set(spec.participants)
    members = [c for c in scenario.clients() if c.user in users]
    if len(members) < 2:
        return math.nan

    def access(profile: str) -> tuple[float, float]:
        if profile not in scenario.network.access:
            return 0.0, 0.0
        up, down = scenario.access(profile)
        return mean_latency_ms(up.latency), mean_latency_ms(down.latency)

    def link(a: str, b: str) -> float:
        return 0.0 if a == b else mean_latency_ms(scenario.link(a, b).latency)

    n = len(members)
    total = 0.0
    for y in members:
        up_y = access(y.spec.access)[0]
        for x in members:
            if x is not y:
                total += up_y + link(y.provider, hub) + link(hub, x.provider) + access(x.spec.access)[1]
    return total / (n * n)


def client_paths(scenario: Any, room: str | None = None) -> list[tuple[float, float]]:
    """Per initial member client of the room: ``(up, down)`` in ms, the mean
    latency of its path to the hub (access up + link to the hub's provider)
    and from the hub (link + access down); a link counts 0 on the hub's own
    provider. Processing costs are left out (sub-millisecond here)."""
    name = room or next(iter(scenario.rooms))
    spec = scenario.rooms[name]
    hub = spec.hub
    users = set(spec.participants)

    def access(profile: str) -> tuple[float, float]:
        if profile not in scenario.network.access:
            return 0.0, 0.0
        up, down = scenario.access(profile)
        return mean_latency_ms(up.latency), mean_latency_ms(down.latency)

    def link(a: str, b: str) -> float:
        return 0.0 if a == b else mean_latency_ms(scenario.link(a, b).latency)

    out = []
    for c in scenario.clients():
        if c.user in users:
            up, down = access(c.spec.access)
            out.append((up + link(c.provider, hub), link(hub, c.provider) + down))
    return out


def model_p_conflict(rate_per_s: float, window_ms: float) -> float:
    """The light-load model: ``1 - exp(-lambda W)`` (Poisson commits, every
    requested Update built at once: it over-predicts once clients queue)."""
    return 1.0 - math.exp(-rate_per_s * window_ms / 1000.0)


def _queue_replication(rng: np.random.Generator, up: list[float], down: list[float], rate_per_s: float,
                       horizon_ms: float, max_attempts: int, mode: str, base_ms: float, factor: float,
                       cap_ms: float, jitter: str) -> dict[str, int]:
    """One replay of the horizon for :func:`model_queue`: first attempts built
    (``ops``), conflicted (``conf``), built after waiting (``q``) and those
    conflicted (``qconf``)."""
    n = len(up)
    tot = {"ops": 0, "conf": 0, "q": 0, "qconf": 0}
    k = int(rng.poisson(rate_per_s * horizon_ms / 1000.0))
    times = np.sort(rng.uniform(0.0, horizon_ms, k))
    who = rng.integers(0, n, k)
    heap: list[tuple[float, int, int, int]] = []  # (time, seq, kind, client); kind 0 request, 1 at hub, 2 rebuild
    seq = 0
    for t, i in zip(times, who, strict=True):
        heap.append((float(t), seq, 0, int(i)))
        seq += 1
    heapq.heapify(heap)
    accepts: list[float] = []
    queue = [0] * n
    busy = [False] * n
    attempts = [0] * n
    built_epoch = [0] * n
    first_queued = [False] * n
    # the initial epoch is 0 at every member
    def build(i: int, t: float, queued: bool) -> None:
        nonlocal seq
        built_epoch[i] = bisect.bisect_right(accepts, t - down[i])
        attempts[i] += 1
        if attempts[i] == 1:
            first_queued[i] = queued
        heapq.heappush(heap, (t + up[i], seq, 1, i))
        seq += 1

    def finish(i: int, t: float) -> None:
        busy[i] = False
        attempts[i] = 0
        if queue[i] > 0:
            queue[i] -= 1
            busy[i] = True
            build(i, t, True)

    while heap:
        t, _, kind, i = heapq.heappop(heap)
        if kind == 0:
            if busy[i]:
                queue[i] += 1
            else:
                busy[i] = True
                build(i, t, False)
        elif kind == 1:
            ok = built_epoch[i] == len(accepts)
            if attempts[i] == 1 and t - up[i] <= horizon_ms:
                tot["ops"] += 1
                tot["q"] += first_queued[i]
                if not ok:
                    tot["conf"] += 1
                    tot["qconf"] += first_queued[i]
            if ok:
                accepts.append(t)
                finish(i, t + down[i])
                continue
            if attempts[i] >= max_attempts or mode == "abandon":
                finish(i, t + down[i])
                continue
            w = min(cap_ms, base_ms * factor ** (attempts[i] - 1))
            back = {"full": rng.uniform(0, w), "equal": w / 2 + rng.uniform(0, w / 2)}.get(jitter, w)
            heapq.heappush(heap, (t + down[i] + float(back), seq, 2, i))
            seq += 1
        else:
            build(i, t, first_queued[i])
    return tot


@functools.lru_cache(maxsize=256)
def model_queue(paths: tuple[tuple[float, float], ...], rate_per_s: float, horizon_ms: float,
                max_attempts: int = 10, mode: str = "rebuild", base_ms: float = 50.0, factor: float = 2.0,
                cap_ms: float = 2000.0, jitter: str = "full", min_ops: int = 8_000,
                seed: int = 0) -> dict[str, float]:
    """The queue model of epoch conflicts, evaluated by a small Monte Carlo.

    What it keeps of the simulation: Poisson Update requests at
    ``rate_per_s`` per room, each by a member drawn uniformly; **one
    operation per member per room at a time** (requests that arrive while
    the member is busy wait, first in first out); member i's commit reaches
    the hub ``up_i`` after it is built against the epoch i has processed,
    the hub accepts it if no other commit was accepted since that epoch,
    and every member processes an accepted commit ``down_i`` after its
    acceptance; a refused member learns it ``down_i`` after the refusal and
    rebuilds after the backoff (``retry`` of the scenario), giving up after
    ``max_attempts`` (``abandon``: after the first refusal). What it drops:
    MLS, HTTP, processing costs, loss. ``paths`` are the members' ``(up,
    down)`` (:func:`client_paths`), ``horizon_ms`` the time Updates run.

    Returns ``p_conflict`` (conflicted first attempts over first attempts
    built), ``p_fresh`` / ``p_queued`` (the same for first attempts built at
    once / after waiting), ``queued_frac``, ``carried_per_s`` (first attempts
    built per second) and ``ops``. The horizon is replayed with seeds
    ``seed, seed+1, ...`` until ``min_ops`` first attempts were built."""
    n = len(paths)
    if n < 2 or not rate_per_s > 0 or not horizon_ms > 0:
        return {"p_conflict": math.nan, "p_fresh": math.nan, "p_queued": math.nan, "queued_frac": math.nan,
                "carried_per_s": math.nan, "ops": 0}
    up = [p[0] for p in paths]
    down = [p[1] for p in paths]
    tot = {"ops": 0, "conf": 0, "q": 0, "qconf": 0}
    reps = 0
    while tot["ops"] < min_ops and reps < 500:
        rng = np.random.default_rng(seed + reps)
        reps += 1
        for key, v in _queue_replication(rng, up, down, rate_per_s, horizon_ms, max_attempts, mode, base_ms,
                                         factor, cap_ms, jitter).items():
            tot[key] += v
    ops, q = tot["ops"], tot["q"]
    return {"p_conflict": tot["conf"] / ops if ops else math.nan,
            "p_fresh": (tot["conf"] - tot["qconf"]) / (ops - q) if ops > q else math.nan,
            "p_queued": tot["qconf"] / q if q else math.nan, "queued_frac": q / ops if ops else math.nan,
            "carried_per_s": ops / reps / (horizon_ms / 1000.0), "ops": ops}


def model_queue_for(scenario: Any, min_ops: int = 8_000) -> dict[str, float]:
    """:func:`model_queue` with the scenario's paths, Update rate, horizon and retry policy."""
    nan = {"p_conflict": math.nan, "p_fresh": math.nan, "p_queued": math.nan, "queued_frac": math.nan,
           "carried_per_s": math.nan, "ops": 0}
    rate = _update_rate(scenario)
    if scenario is None or not scenario.rooms or not rate or math.isnan(rate):
        return nan
    paths = client_paths(scenario)
    if any(math.isnan(u) or math.isnan(d) for u, d in paths):
        return nan
    upd = scenario.workload.updates
    start = float(getattr(upd, "start", 0.0) or 0.0)
    stop = getattr(upd, "stop", None)
    end = float(scenario.duration) if stop is None else min(float(stop), float(scenario.duration))
    r = scenario.workload.retry
    return model_queue(tuple((round(u, 6), round(d, 6)) for u, d in paths), float(rate), max(0.0, end - start),
                       int(r.max_attempts), str(r.mode), float(r.backoff.base), float(r.backoff.factor),
                       float(r.backoff.cap), str(r.backoff.jitter), min_ops)


def per_room(trace: pd.DataFrame, op: str | None = "update") -> pd.DataFrame:
    """Per room (and ``room == "all"``): ``room, requested`` (asked for by
    the workload: offered load), ``operations`` (first attempts built:
    carried load), ``not_built`` (requested, still queued at the end),
    ``queued`` (built after waiting behind another operation), ``attempts,
    wrong_epoch, conflicted, p_conflict, p_low, p_high`` (Wilson, within
    the run), ``p_conflict_fresh``, ``p_conflict_queued``,
    ``retries_per_op``, ``accepted``, ``gave_up``, ``in_flight`` (built,
    neither accepted nor given up at the end), ``abandoned`` (gave_up +
    in_flight, kept for old tables), ``tta_mean_ms, tta_p95_ms`` (accepted
    operations only: ``accepted`` says how many), ``settle_mean_ms`` (to
    acceptance or give-up). ``op`` restricts to one kind of operation
    (default: workload Updates; None: all)."""
    ops = operations(trace)
    req = requests(trace, op or "update")
    if op is not None:
        ops = ops[ops["op"] == op]
    rows_ = []
    for room, g in [*ops.groupby("room", sort=True), ("all", ops)]:
        rq = req if room == "all" else req[req["room"] == room]
        p, lo, hi = wilson(int(g["conflicted"].sum()), len(g))
        tta = g["time_to_accept_ms"].dropna()
        settle = g["time_to_settle_ms"].dropna()
        fresh, queued = g[~g["queued"]], g[g["queued"]]
        requested = len(rq) if op == "update" else len(g)
        rows_.append({"room": room, "requested": requested, "operations": len(g),
                      "not_built": max(0, requested - len(g)), "queued": int(g["queued"].sum()),
                      "attempts": int(g["attempts"].sum()),
                      "wrong_epoch": int(g["wrong_epoch"].sum()), "conflicted": int(g["conflicted"].sum()),
                      "p_conflict": p, "p_low": lo, "p_high": hi,
                      "conflicted_fresh": int(fresh["conflicted"].sum()), "fresh": len(fresh),
                      "p_conflict_fresh": float(fresh["conflicted"].mean()) if len(fresh) else math.nan,
                      "conflicted_queued": int(queued["conflicted"].sum()),
                      "p_conflict_queued": float(queued["conflicted"].mean()) if len(queued) else math.nan,
                      "retries_per_op": float((g["attempts"] - 1).mean()) if len(g) else math.nan,
                      "accepted": int(g["accepted"].sum()), "gave_up": int(g["gave_up"].sum()),
                      "in_flight": int((g["outcome"] == "in_flight").sum()),
                      "abandoned": int((~g["accepted"]).sum()),
                      "tta_mean_ms": float(tta.mean()) if len(tta) else math.nan,
                      "tta_p95_ms": float(tta.quantile(0.95)) if len(tta) else math.nan,
                      "settle_mean_ms": float(settle.mean()) if len(settle) else math.nan})
    return pd.DataFrame(rows_)


def rows(trace: pd.DataFrame, scenario: Any = None) -> list[dict[str, Any]]:
    """The sweep row of one run: the ``all`` line of :func:`per_room`, the
    measured window, and the models: ``p_model`` (light-load, offered rate,
    W measured), ``p_model_scenario`` (the same with W from the scenario),
    ``p_model_carried`` (light-load on the carried rate of first attempts
    built), ``p_model_queue`` (the queue model, from the scenario alone:
    the one that holds beyond light load) with its ``p_model_queue_fresh``
    / ``_queued`` parts and ``queued_frac_model``."""
    r = per_room(trace).iloc[-1].to_dict()
    r.pop("room")
    r.update(vulnerable_window(trace))
    rate = _update_rate(scenario)
    r["rate_per_s"] = rate
    r["offered_lambda_w"] = rate * r["W_ms"] / 1000.0 if rate and not math.isnan(r["W_ms"]) else math.nan
    r["p_model"] = model_p_conflict(rate, r["W_ms"]) if rate and not math.isnan(r["W_ms"]) else math.nan
    w_scn = window_from_scenario(scenario) if scenario is not None and scenario.rooms else math.nan
    r["W_scenario_ms"] = w_scn
    r["p_model_scenario"] = model_p_conflict(rate, w_scn) if rate and not math.isnan(w_scn) else math.nan
    span = _update_span_s(trace, scenario)
    r["carried_per_s"] = r["operations"] / span if span > 0 else math.nan
    r["p_model_carried"] = (model_p_conflict(r["carried_per_s"], r["W_ms"])
                            if not math.isnan(r["carried_per_s"]) and not math.isnan(r["W_ms"]) else math.nan)
    q = model_queue_for(scenario)
    r["p_model_queue"], r["p_model_queue_fresh"] = q["p_conflict"], q["p_fresh"]
    r["p_model_queue_queued"], r["queued_frac_model"] = q["p_queued"], q["queued_frac"]
    r["carried_per_s_model"] = q["carried_per_s"]
    return [r]


def _update_span_s(trace: pd.DataFrame, scenario: Any) -> float:
    """Seconds during which workload Updates ran (start to the run's end)."""
    upd = getattr(getattr(scenario, "workload", None), "updates", None)
    start = float(getattr(upd, "start", 0.0) or 0.0) if upd is not None else 0.0
    end = float(trace["t_ms"].max()) if len(trace) else 0.0
    return max(0.0, end - start) / 1000.0


def _update_rate(scenario: Any) -> float:
    upd = getattr(getattr(scenario, "workload", None), "updates", None)
    return float(upd.rate) if upd is not None and getattr(upd, "per", "room") == "room" else math.nan


#: Grouping columns a study's rows add besides the sweep parameters.
GROUP_KEYS: list[str] = []
#: Proportions pooled over runs for :func:`mimisim.sweep.summarise` (successes, trials).
POOLED = {"p_conflict": ("conflicted", "operations"), "p_conflict_fresh": ("conflicted_fresh", "fresh"),
          "p_conflict_queued": ("conflicted_queued", "queued")}
#: The standard figures: (metric, y label with units, model column(s) or None).
FIGURES = [
    ("p_conflict", "P(conflict): first attempts refused wrongEpoch", ("p_model_queue", "p_model")),
    ("retries_per_op", "retries per Update (count)", None),
    ("tta_mean_ms", "time to accepted commit, mean (ms)", None),
    ("not_built", "Updates requested, never built (count per run)", None),
]
