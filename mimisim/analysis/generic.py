"""The generic study: what any scenario's sweep measures when it names no study.

The five named studies answer one question each and need the scenario
built for it (``epoch-conflicts``, ``notify-dedup`` ...). A sweep of any
other scenario used to fall back to the conflict metrics, which for a
scenario without concurrent commits are all NaN. This study instead reports
what every run has, from the trace's common columns only (``kind, node,
room, epoch, msg_id, req_id, status, t_ms, seq``; never ``detail``):

- **delivery latency** of application messages to users: p50, p95, p99,
  max (ms from the sender's submit to the receiver's user);
- **messages lost**: messages the hub accepted that did not reach every
  expected receiver by the end of the run (``deliveries_missing`` counts
  the missing (message, receiver) pairs). The expected receivers of a
  message of epoch *e* are the clients that reached epoch *e* of the room
  (a ``client.epoch`` row), other than the sender, unless they were removed
  before the hub accepted the message. Unlike the ``no_loss`` invariant
  nothing is exempt: a message still in flight at the end, or lost to a
  volatile crash, counts (``hub_lost`` says how many the hub lost in a
  failover);
- **duplicates**: deliveries of a message to a client that already had it
  (must be 0), and duplicates recognised and suppressed on the way
  (``notify.dedup`` at followers, ``client.drop`` with status
  ``duplicate`` at clients);
- **retries**: HTTP re-sends between providers and client retries after
  ``wrongEpoch``;
- **commits** built, accepted and refused by the hub (``wrongEpoch`` among
  them);
- **HTTP exchanges**: attempts (first requests plus retries), answered,
  timeouts, given up.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

COLUMNS = ["messages", "messages_accepted", "deliveries", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
           "latency_max_ms", "deliveries_expected", "deliveries_made", "deliveries_missing", "messages_lost",
           "hub_lost", "duplicate_deliveries", "duplicates_suppressed", "http_retries", "client_retries",
           "retries", "commits", "commits_accepted", "commits_refused", "wrong_epoch", "http_attempts",
           "http_answered", "http_timeouts", "http_giveups"]


def _kind(trace: pd.DataFrame, kind: str) -> pd.DataFrame:
    return trace[trace["kind"] == kind]


def _pct(values: pd.Series, q: float) -> float:
    return float(values.quantile(q)) if len(values) else math.nan


def summary(trace: pd.DataFrame) -> dict[str, Any]:
    """The run's generic metrics (see the module docstring), one dict."""
    submit = _kind(trace, "client.submit").drop_duplicates("msg_id")
    sender = dict(zip(submit["msg_id"], submit["node"], strict=True))
    t_submit = dict(zip(submit["msg_id"], submit["t_ms"], strict=True))
    acc = _kind(trace, "hub.accept")
    acc_msgs = acc[acc["msg_id"].isin(sender.keys())].drop_duplicates("msg_id")

    deliver = _kind(trace, "client.deliver")
    lat = (deliver["t_ms"].astype("float64") - deliver["msg_id"].map(t_submit).astype("float64")).dropna()
    pairs = deliver[["msg_id", "node"]].drop_duplicates()
    got = set(zip(pairs["msg_id"], pairs["node"], strict=True))

    # Who reached which epoch of which room, and when a client was removed.
    ep = _kind(trace, "client.epoch")
    reached: dict[tuple[str, int], set[str]] = {}
    removed: dict[tuple[str, str], int] = {}  # (client, room) -> seq of its first removal row
    for node, room, epoch, status, seq in zip(ep["node"], ep["room"], ep["epoch"], ep["status"], ep["seq"],
                                              strict=True):
        if status == "removed":
            removed.setdefault((node, room), int(seq))
        elif epoch is not None and not (isinstance(epoch, float) and math.isnan(epoch)) and int(epoch) >= 0:
            reached.setdefault((room, int(epoch)), set()).add(node)
    expected = made = 0
    lost_msgs = 0
    for msg, room, epoch, seq in zip(acc_msgs["msg_id"], acc_msgs["room"], acc_msgs["epoch"], acc_msgs["seq"],
                                     strict=True):
        if epoch is None or (isinstance(epoch, float) and math.isnan(epoch)):
            continue
        missing = 0
        for client in reached.get((room, int(epoch)), ()):
            if client == sender[msg] or removed.get((client, room), math.inf) < int(seq):
                continue
            expected += 1
            if (msg, client) in got:
                made += 1
            else:
                missing += 1
        lost_msgs += missing > 0

    drops = _kind(trace, "client.drop")
    commits = _kind(trace, "client.commit").drop_duplicates("msg_id")
    cids = set(commits["msg_id"])
    rej = _kind(trace, "hub.reject")
    rej = rej[rej["msg_id"].isin(cids)]
    attempts = trace[trace["kind"].isin(["http.request", "http.retry"])]
    resp = _kind(trace, "http.response")
    http_retries = int((trace["kind"] == "http.retry").sum())
    client_retries = int((trace["kind"] == "client.retry").sum())
    return {
        "messages": len(submit),
        "messages_accepted": len(acc_msgs),
        "deliveries": len(deliver),
        "latency_p50_ms": _pct(lat, 0.5),
        "latency_p95_ms": _pct(lat, 0.95),
        "latency_p99_ms": _pct(lat, 0.99),
        "latency_max_ms": float(lat.max()) if len(lat) else math.nan,
        "deliveries_expected": expected,
        "deliveries_made": made,
        "deliveries_missing": expected - made,
        "messages_lost": lost_msgs,
        "hub_lost": int(_kind(trace, "hub.lost")["msg_id"].isin(sender.keys()).sum()),
        "duplicate_deliveries": len(deliver) - len(pairs),
        "duplicates_suppressed": int((trace["kind"] == "notify.dedup").sum())
                                 + int((drops["status"] == "duplicate").sum()),
        "http_retries": http_retries,
        "client_retries": client_retries,
        "retries": http_retries + client_retries,
        "commits": len(commits),
        "commits_accepted": int(acc.loc[acc["msg_id"].isin(cids), "msg_id"].nunique()),
        "commits_refused": int(rej["msg_id"].nunique()),
        "wrong_epoch": int((rej["status"] == "wrongEpoch").sum()),
        "http_attempts": len(attempts),
        "http_answered": int(attempts["req_id"].isin(set(resp["req_id"])).sum()),
        "http_timeouts": int((trace["kind"] == "http.timeout").sum()),
        "http_giveups": int((trace["kind"] == "http.giveup").sum()),
    }


def rows(trace: pd.DataFrame, scenario: Any = None) -> list[dict[str, Any]]:
    """The sweep row of one run (:func:`summary`)."""
    return [summary(trace)]


GROUP_KEYS: list[str] = []
POOLED: dict[str, tuple[str, str]] = {
    "delivery_ratio": ("deliveries_made", "deliveries_expected"),
}
FIGURES = [
    ("latency_p50_ms", "delivery latency p50 (ms)", None),
    ("latency_p95_ms", "delivery latency p95 (ms)", None),
    ("messages_lost", "accepted messages not delivered to every member (count per run)", None),
    ("delivery_ratio", "deliveries made / expected (pooled)", None),
    ("retries", "HTTP and wrongEpoch retries (count per run)", None),
    ("commits_refused", "commits refused by the hub (count per run)", None),
    ("http_attempts", "HTTP attempts between providers (count per run)", None),
]
