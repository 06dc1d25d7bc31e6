"""The leave-latency study, from the trace.

A leaving client can only propose its own removal (``client.propose`` with
``operation`` leave); the hub caches the proposals and the next commit must
include them. A refused or lost proposal is proposed again. One row per
**user request** (``workload.action`` leave; a request with no workload
row, e.g. a hand-made trace, starts at its first proposal):

- ``t_request``: the workload's request (a request the workload skipped,
  "no user could leave", asked nothing of a client and is not a leave); ``t_propose``: the first
  ``client.propose`` after it; ``proposals``: how many the client sent for
  this request (``retries`` = proposals - 1: re-proposals belong to the
  same leave, never start a new one); ``repeats``: later requests by the
  same client while this leave was under way (the workload picked a
  member that was already leaving), counted here and not as leaves;
- the **removing commit**: the commit the leaver's client processes as
  ``removed`` (``client.epoch`` via removed), else the first commit the hub
  accepted after the request whose participant-list changes remove the
  leaving user (``role_changes`` to role 0); never "any removal";
- ``outcome``: ``completed`` (removed), ``gave_up`` (a ``client.fail`` of
  the leave came first: a failed leave, whatever happens later),
  ``in_progress`` (requested in the run's last ``tail_ms``) or
  ``never_completed``;
- ``latency_accept_ms``: first proposal -> the hub accepts the removing
  commit; ``latency_all_ms``: first proposal -> the last remaining member
  processes it; ``committer``: who committed it;
- ``received_after_leave``: application messages the hub accepted after the
  first proposal and before the removing commit that a client of the
  leaving user still read
  (:func:`mimisim.analysis.departure.received_after_leave`; what
  ``protocol.leave_delivery`` changes).

Model (docs/studies.md): ``E[latency_all] ~ h + E[wait] + c`` where ``h`` is
the path of the proposals from the leaver to **the member that commits
them**, ``wait`` the time until that member commits (the minimum of the next
workload commit, Poisson at rate lambda, and the room strategy's delay: none
for ``immediate_commit``, the minimum of k uniform draws in [min, max] for
``random_delay``), and ``c`` the path of that commit to the last member.
``h`` and ``c`` are measured on the run's own first-attempt commits,
between the providers of the leaver, the actual committer of each leave
and the remaining members (:func:`path_terms`): under ``immediate_commit``
the member on the hub's provider usually wins, and its commit travels one
inter-provider hop less than an average member's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from mimisim.analysis import leave_race
from mimisim.analysis.departure import received_after_leave

LEAVE_COLUMNS = ["room", "leaver", "user", "t_request", "t_propose", "proposals", "retries", "commit", "committer",
                 "t_accept", "t_all", "remaining", "latency_accept_ms", "latency_all_ms", "completed", "gave_up",
                 "outcome", "received_after_leave", "repeats"]


def _device_prefix(user_uri: str) -> str:
    # mimi://b.example/u/bob -> mimi://b.example/d/bob/
    return user_uri.replace("/u/", "/d/", 1) + "/"


def _user_of(client_uri: str) -> str:
    # mimi://b.example/d/bob/B1 -> mimi://b.example/u/bob
    return client_uri.rsplit("/", 1)[0].replace("/d/", "/u/", 1)


def _domain(uri: str) -> str:
    return uri.split("//", 1)[-1].split("/", 1)[0]


def _removes(changes: Any, user: str) -> bool:
    if changes is None or (isinstance(changes, float) and math.isnan(changes)):
        return False
    return any(c.get("user") == user and not c.get("new") for c in changes)


def leaves(trace: pd.DataFrame, tail_ms: float = 15_000.0) -> pd.DataFrame:
    """One row per leave request (see the module docstring for the columns);
    ``at_end``: not completed but requested in the run's last ``tail_ms``."""
    p = trace[(trace["kind"] == "client.propose") & (trace["operation"] == "leave")]
    w = trace[(trace["kind"] == "workload.action") & (trace["action"] == "leave")]
    w = w[(w["status"] != "skipped") & (w["node"] != "")]  # "no user could leave": nothing was asked of a client
    epochs = trace[trace["kind"] == "client.epoch"]
    acc = trace[(trace["kind"] == "hub.accept") & (trace["msg_id"] != "")]
    acc_t = acc.groupby("msg_id")["t_ms"].min()
    acc_by = acc.drop_duplicates("msg_id").set_index("msg_id")["committer"]
    removing = acc[acc["removed"].fillna(0).astype(int) > 0]
    fails = trace[(trace["kind"] == "client.fail") & (trace["operation"] == "leave")]
    end = float(trace["t_ms"].max()) if len(trace) else 0.0
    # The requests: the workload's, else (no workload row for that client) its first proposal.
    reqs = [(r.room, r.node, float(r.t_ms)) for r in w.itertuples(index=False)]
    have = {(room, node) for room, node, _ in reqs}
    for r in p.drop_duplicates(["room", "node"]).itertuples(index=False):
        if (r.room, r.node) not in have:
            reqs.append((r.room, r.node, float(r.t_ms)))
    reqs.sort(key=lambda x: x[2])
    # A request by a client whose earlier leave is still under way (no
    # removal of it and no give-up since) repeats that leave: it is counted
    # on the earlier row (``repeats``), never as a leave of its own.
    ends = epochs[epochs["status"] == "removed"][["room", "node", "t_ms"]]
    ends = pd.concat([ends, fails[["room", "node", "t_ms"]]])
    merged: list[tuple[str, str, float]] = []
    repeats: dict[int, int] = {}
    last: dict[tuple[str, str], tuple[int, float]] = {}
    for room, node, t_req in reqs:
        prev = last.get((room, node))
        if prev is not None:
            e = ends[(ends["room"] == room) & (ends["node"] == node) & (ends["t_ms"] >= prev[1])
                     & (ends["t_ms"] <= t_req)]
            if e.empty:
                repeats[prev[0]] = repeats.get(prev[0], 0) + 1
                continue
        last[(room, node)] = (len(merged), t_req)
        merged.append((room, node, t_req))
    reqs = merged
    out = []
    for idx, (room, node, t_req) in enumerate(reqs):
        nxt = min([t for rm, nd, t in reqs[idx + 1:] if rm == room and nd == node] or [math.inf])
        mine_p = p[(p["room"] == room) & (p["node"] == node) & (p["t_ms"] >= t_req) & (p["t_ms"] < nxt)]
        user = str(mine_p["peer"].iloc[0]) if len(mine_p) and mine_p["peer"].iloc[0] else _user_of(node)
        prefix = _device_prefix(user)
        t_prop = float(mine_p["t_ms"].iloc[0]) if len(mine_p) else math.nan
        mine = epochs[(epochs["room"] == room) & (epochs["t_ms"] >= t_req) & (epochs["t_ms"] < nxt)
                      & (epochs["status"] == "removed") & epochs["node"].str.startswith(prefix)]
        commit = str(mine["msg_id"].iloc[0]) if len(mine) else ""
        if not commit:
            cand = removing[(removing["room"] == room) & (removing["t_ms"] >= t_req) & (removing["t_ms"] < nxt)]
            cand = cand[[_removes(c, user) for c in cand["role_changes"]]] if "role_changes" in cand else cand.iloc[0:0]
            commit = str(cand["msg_id"].iloc[0]) if len(cand) else ""
        t_accept = float(acc_t.get(commit, math.nan)) if commit else math.nan
        f = fails[(fails["room"] == room) & (fails["node"] == node) & (fails["t_ms"] >= t_req) & (fails["t_ms"] < nxt)]
        gave_up = bool(len(f)) and (math.isnan(t_accept) or float(f["t_ms"].iloc[0]) < t_accept)
        if gave_up:
            commit, t_accept = "", math.nan
        others = epochs[(epochs["msg_id"] == commit) & (epochs["status"] != "removed")
                        & ~epochs["node"].str.startswith(prefix)] if commit else epochs.iloc[0:0]
        t_all = float(others["t_ms"].max()) if len(others) else math.nan
        done = not math.isnan(t_all)
        outcome = ("completed" if done else "gave_up" if gave_up
                   else "in_progress" if t_req > end - tail_ms else "never_completed")
        out.append({"room": room, "leaver": node, "user": user, "t_request": t_req, "t_propose": t_prop,
                    "proposals": len(mine_p), "retries": max(0, len(mine_p) - 1), "commit": commit,
                    "committer": str(acc_by.get(commit, "")) if commit else "", "t_accept": t_accept,
                    "t_all": t_all, "remaining": others["node"].nunique(),
                    "latency_accept_ms": t_accept - t_prop, "latency_all_ms": t_all - t_prop,
                    "completed": done, "gave_up": gave_up, "outcome": outcome, "repeats": repeats.get(idx, 0)})
    for row, n in zip(out, received_after_leave(trace, [(o["room"], o["user"], o["t_propose"], o["t_accept"]) for o in out]),
                      strict=True):
        row["received_after_leave"] = n
    df = pd.DataFrame(out, columns=LEAVE_COLUMNS)
    df["at_end"] = df["outcome"] == "in_progress"
    return df


def commit_delays(trace: pd.DataFrame) -> pd.DataFrame:
    """Per (accepted first-attempt commit, other member processing it):
    ``msg_id, creator, receiver, d`` (ms from creation to processing)."""
    c = trace[trace["kind"] == "client.commit"]
    c = c[(c["attempt"] == 1).fillna(False) & ~c["external"].fillna(False).astype(bool)][["msg_id", "node", "t_ms"]]
    e = trace[(trace["kind"] == "client.epoch") & trace["msg_id"].isin(c["msg_id"])
              & (trace["status"] != "removed")][["msg_id", "node", "t_ms"]]
    j = e.merge(c, on="msg_id", suffixes=("", "_c"))
    j = j[j["node"] != j["node_c"]]
    return pd.DataFrame({"msg_id": j["msg_id"].to_numpy(), "creator": j["node_c"].to_numpy(),
                         "receiver": j["node"].to_numpy(), "d": (j["t_ms"] - j["t_ms_c"]).to_numpy()})


def path_terms(trace: pd.DataFrame, lv: pd.DataFrame) -> tuple[float, float]:
    """The model's ``(h, c)`` for the completed leaves of ``lv``: ``h`` = the
    mean delay of a commit from the leaver's provider to the actual
    committer's provider, ``c`` = the mean over commits created on the
    committer's provider of the delay to their last receiver. Both by
    provider (latencies are set per provider pair), from the run's own
    commits, averaged over the leaves. NaN when the run has no such commit."""
    d = commit_delays(trace)
    done = lv[lv["completed"] & (lv["committer"] != "")]
    if d.empty or done.empty:
        return math.nan, math.nan
    d = d.assign(cp=d["creator"].map(_domain), rp=d["receiver"].map(_domain))
    pair = d.groupby(["cp", "rp"])["d"].mean()
    last = d.groupby("msg_id").agg(cp=("cp", "first"), dmax=("d", "max")).groupby("cp")["dmax"].mean()
    hs, cs = [], []
    for r in done.itertuples(index=False):
        lp, cp = _domain(r.leaver), _domain(r.committer)
        hs.append(0.0 if r.committer == r.leaver else float(pair.get((lp, cp), math.nan)))
        cs.append(float(last.get(cp, math.nan)))
    h, c = np.array(hs), np.array(cs)
    return (float(np.nanmean(h)) if np.isfinite(h).any() else math.nan,
            float(np.nanmean(c)) if np.isfinite(c).any() else math.nan)


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


def model_latency_ms(trace: pd.DataFrame, scenario: Any, committers: float | None = None,
                     lv: pd.DataFrame | None = None) -> dict[str, float]:
    """The models of the run's mean latency to the last member, over its
    completed leaves:

    - ``model_all_ms``, the race model (:mod:`mimisim.analysis.leave_race`):
      each completed leave's mechanism replayed from the scenario's paths,
      rates and strategy and the room's membership at that leave, with the
      other traffic as Poisson interferers; ``model_quiet_ms``: the same
      with no other traffic (the race and the ordered notify alone;
      the strategy's own delays remain);
    - ``model_paths_ms`` = ``h_ms + wait_ms + c_ms``, the earlier light-load
      sum (:func:`path_terms`, :func:`expected_wait_ms`), kept to show what
      the race and the ordered notify add."""
    lv = leaves(trace) if lv is None else lv
    strategy, lo, hi = pending_strategy(scenario)
    k = committers if committers is not None and not math.isnan(committers) else 1.0
    wait = expected_wait_ms(commit_rate(scenario), strategy, lo, hi, max(1, int(round(k))))
    h, c = path_terms(trace, lv)
    race, quiet = race_terms(trace, scenario, lv)
    return {"h_ms": h, "wait_ms": wait, "c_ms": c, "model_paths_ms": h + wait + c,
            "model_quiet_ms": quiet, "model_all_ms": race}


def race_terms(trace: pd.DataFrame, scenario: Any, lv: pd.DataFrame) -> tuple[float, float]:
    """The race model's mean over the completed leaves of ``lv`` (and its
    no-other-traffic value): each leave's setup is the leaver and the
    members that processed its removing commit. NaN without a scenario or
    a completed leave."""
    if scenario is None or not getattr(scenario, "rooms", None):
        return math.nan, math.nan
    done = lv[lv["completed"]]
    if done.empty:
        return math.nan, math.nan
    ep = trace[(trace["kind"] == "client.epoch") & (trace["status"] != "removed")]
    by_commit = ep.groupby("msg_id")["node"].agg(lambda s: sorted(set(s)))
    means, quiets = [], []
    for r in done.itertuples(index=False):
        setup = leave_race.setup_for(scenario, str(r.leaver), list(by_commit.get(r.commit, [])))
        if setup is None:
            continue
        m, q = leave_race.race_latency(setup)
        means.append(m)
        quiets.append(q)
    mv, qv = np.array(means, dtype=float), np.array(quiets, dtype=float)
    return (float(np.nanmean(mv)) if np.isfinite(mv).any() else math.nan,
            float(np.nanmean(qv)) if np.isfinite(qv).any() else math.nan)


def rows(trace: pd.DataFrame, scenario: Any = None) -> list[dict[str, Any]]:
    """The sweep row of one run: leave requests and their outcomes
    (``leaves`` = requests, ``completed``, ``gave_up``, ``in_progress``,
    ``never_completed``; ``proposals``, ``retries``), latency means and
    p95 over the completed leaves (``completed`` says over how many), the
    model."""
    lv = leaves(trace)
    done = lv[lv["completed"]]
    r: dict[str, Any] = {
        "leaves": len(lv), "completed": len(done), "gave_up": int(lv["gave_up"].sum()),
        "in_progress": int((lv["outcome"] == "in_progress").sum()),
        "never_completed": int((lv["outcome"] == "never_completed").sum()),
        "failed": int(lv["outcome"].isin(["gave_up", "never_completed"]).sum()),
        "proposals": int(lv["proposals"].sum()), "retries": int(lv["retries"].sum()),
        "repeats": int(lv["repeats"].sum()),
        # the latency means are over these (a completed leave with no proposal of its own has none)
        "latency_n": int(done["latency_all_ms"].notna().sum()),
        "latency_accept_mean_ms": float(done["latency_accept_ms"].mean()) if len(done) else math.nan,
        "latency_all_mean_ms": float(done["latency_all_ms"].mean()) if len(done) else math.nan,
        "latency_all_p95_ms": float(done["latency_all_ms"].quantile(0.95)) if len(done) else math.nan,
        "remaining_mean": float(done["remaining"].mean()) if len(done) else math.nan,
        # Application messages a leaver read that the hub accepted after its
        # first leave proposal (protocol.leave_delivery), over every leave.
        "received_after_leave": int(lv["received_after_leave"].sum()),
    }
    r["commit_rate_per_s"] = commit_rate(scenario)
    r.update(model_latency_ms(trace, scenario, r["remaining_mean"], lv))
    return [r]


GROUP_KEYS: list[str] = []
POOLED: dict[str, tuple[str, str]] = {}
FIGURES = [
    ("latency_all_mean_ms", "leave latency to the last remaining member, mean (ms)", "model_all_ms"),
    ("latency_accept_mean_ms", "leave latency to the hub's acceptance, mean (ms)", None),
    ("failed", "leaves gave up or never completed (count per run)", None),
]
