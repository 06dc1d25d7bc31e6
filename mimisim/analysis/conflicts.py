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

import math
from typing import Any

import numpy as np
import pandas as pd

from mimisim.analysis.stats import wilson

#: Columns of :func:`operations`.
OPERATION_COLUMNS = ["room", "client", "op", "t_first", "epoch", "attempts", "wrong_epoch", "conflicted",
                     "accepted", "t_accept", "time_to_accept_ms", "outcome"]


def operations(trace: pd.DataFrame) -> pd.DataFrame:
    """One row per commit operation: ``room, client, op, t_first, epoch,
    attempts, wrong_epoch, conflicted, accepted, t_accept, time_to_accept_ms,
    outcome`` (``accepted`` | ``abandoned`` when no attempt was accepted).
    External commits (joins, resyncs) are operations too (``op`` = join)."""
    c = trace[trace["kind"] == "client.commit"]
    acc = trace[(trace["kind"] == "hub.accept") & (trace["msg_id"] != "")].groupby("msg_id")["t_ms"].min()
    rej = trace[(trace["kind"] == "hub.reject") & (trace["status"] == "wrongEpoch")].groupby("msg_id").size()
    ops: list[dict[str, Any]] = []
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for row in c[["room", "node", "t_ms", "epoch", "msg_id", "operation", "attempt"]].itertuples(index=False):
        kind, attempt = str(row.operation), 1 if row.attempt is pd.NA else int(row.attempt)
        key = (row.room, row.node)
        op = last.get(key)
        if attempt == 1 or op is None or op["op"] != kind:
            op = {"room": row.room, "client": row.node, "op": kind, "t_first": row.t_ms, "epoch": row.epoch,
                  "attempts": 0, "wrong_epoch": 0, "conflicted": False, "t_accept": math.nan}
            ops.append(op)
            last[key] = op
        op["attempts"] += 1
        n_wrong = int(rej.get(row.msg_id, 0))
        if op["attempts"] == 1 and n_wrong:
            op["conflicted"] = True
        op["wrong_epoch"] += n_wrong
        if row.msg_id in acc.index and math.isnan(op["t_accept"]):
            op["t_accept"] = float(acc[row.msg_id])
    out = pd.DataFrame(ops, columns=[k for k in OPERATION_COLUMNS if k not in
                                     ("accepted", "time_to_accept_ms", "outcome")])
    out["accepted"] = out["t_accept"].notna()
    out["time_to_accept_ms"] = out["t_accept"] - out["t_first"]
    out["outcome"] = np.where(out["accepted"], "accepted", "abandoned")
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


def model_p_conflict(rate_per_s: float, window_ms: float) -> float:
    """The reference model: ``1 - exp(-lambda W)``."""
    return 1.0 - math.exp(-rate_per_s * window_ms / 1000.0)


def per_room(trace: pd.DataFrame, op: str | None = "update") -> pd.DataFrame:
    """Per room (and ``room == "all"``): ``room, operations, attempts,
    wrong_epoch, conflicted, p_conflict, p_low, p_high, retries_per_op,
    abandoned, tta_mean_ms, tta_p95_ms``. ``op`` restricts to one kind of
    operation (default: workload Updates; None: all)."""
    ops = operations(trace)
    if op is not None:
        ops = ops[ops["op"] == op]
    rows = []
    for room, g in [*ops.groupby("room", sort=True), ("all", ops)]:
        p, lo, hi = wilson(int(g["conflicted"].sum()), len(g))
        tta = g["time_to_accept_ms"].dropna()
        rows.append({"room": room, "operations": len(g), "attempts": int(g["attempts"].sum()),
                     "wrong_epoch": int(g["wrong_epoch"].sum()), "conflicted": int(g["conflicted"].sum()),
                     "p_conflict": p, "p_low": lo, "p_high": hi,
                     "retries_per_op": float((g["attempts"] - 1).mean()) if len(g) else math.nan,
                     "abandoned": int((~g["accepted"]).sum()),
                     "tta_mean_ms": float(tta.mean()) if len(tta) else math.nan,
                     "tta_p95_ms": float(tta.quantile(0.95)) if len(tta) else math.nan})
    return pd.DataFrame(rows)


def rows(trace: pd.DataFrame, scenario: Any = None) -> list[dict[str, Any]]:
    """The sweep row of one run: the ``all`` line of :func:`per_room` plus
    the measured window and, when the scenario has Poisson Updates, the
    model's prediction ``p_model`` for it."""
    r = per_room(trace).iloc[-1].to_dict()
    r.pop("room")
    r.update(vulnerable_window(trace))
    rate = _update_rate(scenario)
    r["rate_per_s"] = rate
    r["p_model"] = model_p_conflict(rate, r["W_ms"]) if rate and not math.isnan(r["W_ms"]) else math.nan
    w_scn = window_from_scenario(scenario) if scenario is not None and scenario.rooms else math.nan
    r["W_scenario_ms"] = w_scn
    r["p_model_scenario"] = model_p_conflict(rate, w_scn) if rate and not math.isnan(w_scn) else math.nan
    return [r]


def _update_rate(scenario: Any) -> float:
    upd = getattr(getattr(scenario, "workload", None), "updates", None)
    return float(upd.rate) if upd is not None and getattr(upd, "per", "room") == "room" else math.nan


#: Grouping columns a study's rows add besides the sweep parameters.
GROUP_KEYS: list[str] = []
#: Proportions pooled over runs for :func:`mimisim.sweep.summarise` (successes, trials).
POOLED = {"p_conflict": ("conflicted", "operations")}
#: The standard figures: (metric, y label with units, model column or None).
FIGURES = [
    ("p_conflict", "conflict probability (first attempts answered wrongEpoch)", "p_model"),
    ("retries_per_op", "retries per Update (count)", None),
    ("tta_mean_ms", "time to accepted commit, mean (ms)", None),
]
