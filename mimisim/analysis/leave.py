"""The leave-latency study, from the trace.

A leaving client can only propose its own removal (``client.propose`` with
``operation`` leave); the hub caches the proposals and the next
commit must include them. Per leave:

- ``t_request``: the ``client.propose`` row;
- the **removing commit**: the commit the leaving user's clients process
  with status ``removed`` (``client.epoch``), or, when none of them saw it,
  the first commit accepted in the room after the request that removes
  someone;
- ``latency_accept_ms``: request -> the hub accepts that commit;
- ``latency_all_ms``: request -> the last remaining member processes it;
- a leave whose commit never came is **never completed** (NaN latencies),
  unless it was requested in the run's last 15 s (``at_end``).

Model (docs/studies.md): ``E[latency_all] ~ h + E[wait] + c`` where ``h`` is
the path of the proposals to the member that commits them, ``wait`` the
time until a member commits them (the minimum of the next workload commit,
Poisson at rate lambda, and the room strategy's delay: none for
``immediate_commit``, the minimum of k uniform draws in [min, max] for
``random_delay``), and ``c`` the path of that commit to the last member.
``h`` and ``c`` are measured on the run's own Update commits
(:func:`mimisim.analysis.conflicts.vulnerable_window`): ``h`` = the mean
member-to-member delay (``d_min`` for ``immediate_commit``, where the
first member to hear commits), ``c`` = the mean delay to the last member.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from mimisim.analysis.conflicts import vulnerable_window

LEAVE_COLUMNS = ["room", "leaver", "user", "t_request", "commit", "t_accept", "t_all", "remaining",
                 "latency_accept_ms", "latency_all_ms", "completed"]


def _device_prefix(user_uri: str) -> str:
    # mimi://b.example/u/bob -> mimi://b.example/d/bob/
    return user_uri.replace("/u/", "/d/", 1) + "/"


def leaves(trace: pd.DataFrame, tail_ms: float = 15_000.0) -> pd.DataFrame:
    """One row per leave request (see the module docstring for the columns);
    ``at_end``: not completed but requested in the run's last ``tail_ms``
    (still in progress when the run stopped, so not counted as never completed)."""
    p = trace[(trace["kind"] == "client.propose") & (trace["operation"] == "leave")]
    epochs = trace[trace["kind"] == "client.epoch"]
    acc = trace[(trace["kind"] == "hub.accept") & (trace["msg_id"] != "")]
    acc_t = acc.groupby("msg_id")["t_ms"].min()
    removing = acc[acc["removed"].fillna(0).astype(int) > 0]
    out = []
    for row in p.itertuples(index=False):
        prefix = _device_prefix(row.peer) if row.peer else row.node.rsplit("/", 1)[0] + "/"
        mine = epochs[(epochs["room"] == row.room) & (epochs["t_ms"] >= row.t_ms)
                      & (epochs["status"] == "removed") & epochs["node"].str.startswith(prefix)]
        commit = mine["msg_id"].iloc[0] if len(mine) else ""
        if not commit:
            cand = removing[(removing["room"] == row.room) & (removing["t_ms"] >= row.t_ms)]
            commit = cand["msg_id"].iloc[0] if len(cand) else ""
        t_accept = float(acc_t.get(commit, math.nan)) if commit else math.nan
        others = epochs[(epochs["msg_id"] == commit) & (epochs["status"] != "removed")
                        & ~epochs["node"].str.startswith(prefix)] if commit else epochs.iloc[0:0]
        t_all = float(others["t_ms"].max()) if len(others) else math.nan
        out.append({"room": row.room, "leaver": row.node, "user": row.peer, "t_request": row.t_ms,
                    "commit": commit, "t_accept": t_accept, "t_all": t_all, "remaining": others["node"].nunique(),
                    "latency_accept_ms": t_accept - row.t_ms, "latency_all_ms": t_all - row.t_ms,
                    "completed": not math.isnan(t_all)})
    df = pd.DataFrame(out, columns=LEAVE_COLUMNS)
    end = float(trace["t_ms"].max()) if len(trace) else 0.0
    df["at_end"] = ~df["completed"] & (df["t_request"] > end - tail_ms)
    return df


def expected_wait_ms(rate_per_s: float, strategy: str, min_delay_ms: float = 0.0, max_delay_ms: float = 0.0,
                     committers: int = 1) -> float:
    """``E[min(T, D)]``: T ~ Exp(rate) (the next workload commit; rate 0: never),
    D the strategy's delay (0 for ``immediate_commit``; the minimum of
    ``committers`` uniform draws in [min, max] for ``random_delay``)."""
    if strategy == "immediate_commit":
        return 0.0
    lam = rate_per_s / 1000.0  # per ms
    a, b, k = float(min_delay_ms), float(max_delay_ms), max(1, int(committers))
    # E[min(T, D)] = int_0^inf P(T > s) P(D > s) ds: exact on [0, a] (D > s surely), numeric on [a, b].
    head = a if lam == 0 else (1.0 - math.exp(-lam * a)) / lam
    if b <= a:
        return head
    s = np.linspace(a, b, 4001)
    integrand = np.exp(-lam * s) * ((b - s) / (b - a)) ** k
    return head + float(np.sum((integrand[1:] + integrand[:-1]) / 2 * np.diff(s)))


def commit_rate(scenario: Any) -> float:
    """Workload commits per second per room that would carry pending proposals
    (Updates, adds, removes)."""
    w = getattr(scenario, "workload", None)
    total = 0.0
    for act in (getattr(w, "updates", None), getattr(w, "adds", None), getattr(w, "removes", None)):
        if act is not None and getattr(act, "per", "room") == "room":
            total += float(act.rate)
    return total


def pending_strategy(scenario: Any) -> tuple[str, float, float]:
    """The first room's pending-proposal strategy (room policy, else the protocol default)."""
    if scenario is None:
        return "immediate_commit", 0.0, 0.0
    pp = scenario.protocol.pending_proposals
    for room in scenario.rooms.values():
        if room.policy.pending_proposals is not None:
            pp = room.policy.pending_proposals
        break
    return pp.strategy, float(pp.min_delay), float(pp.max_delay)


def model_latency_ms(trace: pd.DataFrame, scenario: Any, committers: float | None = None) -> dict[str, float]:
    """The model's ``h``, ``wait``, ``c`` and their sum ``model_all_ms``."""
    w = vulnerable_window(trace)
    strategy, lo, hi = pending_strategy(scenario)
    k = committers if committers is not None else max(1.0, (w["members"] or 2) - 1)
    k = 1.0 if math.isnan(k) else k
    wait = expected_wait_ms(commit_rate(scenario), strategy, lo, hi, int(round(k)))
    h = w["d_min_ms"] if strategy == "immediate_commit" else w["d_mean_ms"]
    return {"h_ms": h, "wait_ms": wait, "c_ms": w["d_max_ms"], "model_all_ms": h + wait + w["d_max_ms"]}


def rows(trace: pd.DataFrame, scenario: Any = None) -> list[dict[str, Any]]:
    """The sweep row of one run: counts, latency means and p95, the model."""
    lv = leaves(trace)
    done = lv[lv["completed"]]
    r: dict[str, Any] = {
        "leaves": len(lv), "completed": len(done), "never_completed": int((~lv["completed"] & ~lv["at_end"]).sum()),
        "latency_accept_mean_ms": float(done["latency_accept_ms"].mean()) if len(done) else math.nan,
        "latency_all_mean_ms": float(done["latency_all_ms"].mean()) if len(done) else math.nan,
        "latency_all_p95_ms": float(done["latency_all_ms"].quantile(0.95)) if len(done) else math.nan,
        "remaining_mean": float(done["remaining"].mean()) if len(done) else math.nan,
    }
    r["commit_rate_per_s"] = commit_rate(scenario)
    r.update(model_latency_ms(trace, scenario, r["remaining_mean"]))
    return [r]


GROUP_KEYS: list[str] = []
POOLED: dict[str, tuple[str, str]] = {}
FIGURES = [
    ("latency_all_mean_ms", "leave latency to the last remaining member, mean (ms)", "model_all_ms"),
    ("latency_accept_mean_ms", "leave latency to the hub's acceptance, mean (ms)", None),
    ("never_completed", "leaves never completed (count per run)", None),
]
