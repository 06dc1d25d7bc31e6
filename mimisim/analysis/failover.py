"""The failover study: what the hub said ``success`` to, and what became of it.

Around each ``fault.failover`` (a standby takes over the hub's domain) and
each ``fault.crash``, per run:

- **lost after success**: ``hub.lost`` rows (accepted, then lost by a
  failover to a lagging standby), and accepted application messages that
  never reached every expected receiver (``undelivered``; the expected
  number is the most receivers any message of the room reached: the
  study's rooms have static membership; messages submitted in the run's
  last 5 s are still in flight and not counted);
- **duplicated**: ``/notify`` requests a follower saw again
  (``dup_at_follower``) and messages a client received twice
  (``client.drop`` duplicate);
- **delayed**: accepted application messages, all delivered, whose last
  delivery took more than ``delay_factor`` x the p95 latency of the
  messages submitted before the first fault;
- **time to recover**: from the fault until the hub accepts again
  (``service_ms``), and until the first message submitted after the fault
  reaches every expected receiver (``recover_ms``); resyncs (external
  commits after a stuck gap) are counted.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from mimisim.analysis import dedup
from mimisim.analysis.tables import messages as messages_table

FAULT_KINDS = ("fault.failover", "fault.crash")


def faults(trace: pd.DataFrame) -> pd.DataFrame:
    """The crashes and failovers: ``t_ms, kind, node, status, detail``."""
    f = trace[trace["kind"].isin(FAULT_KINDS)]
    return f[["t_ms", "kind", "node", "status", "detail"]].reset_index(drop=True)


def message_fates(trace: pd.DataFrame, delay_factor: float = 2.0, tail_ms: float = 5_000.0) -> pd.DataFrame:
    """Application messages with their fate: the :func:`~mimisim.analysis.tables.messages`
    columns plus ``expected, lost, delayed, after_fault``."""
    m = messages_table(trace)
    f = faults(trace)
    t0 = float(f["t_ms"].min()) if len(f) else math.inf
    expected = m.groupby("room")["receivers"].transform("max")
    lost_ids = set(trace.loc[trace["kind"] == "hub.lost", "msg_id"])
    m = m.assign(expected=expected)
    # Messages submitted in the run's last ``tail_ms`` may still be in flight at the end: not lost.
    end = float(trace["t_ms"].max()) if len(trace) else 0.0
    settled = m["t_submit"] <= end - tail_ms
    m["lost"] = m["accepted"] & ((settled & (m["receivers"] < m["expected"])) | m["msg_id"].isin(lost_ids))
    base = m[(m["t_submit"] < t0) & m["accepted"]]["latency_max_ms"].dropna()
    limit = delay_factor * float(base.quantile(0.95)) if len(base) else math.inf
    m["delayed"] = m["accepted"] & ~m["lost"] & (m["latency_max_ms"] > limit)
    m["after_fault"] = m["t_submit"] >= t0
    return m


def summary(trace: pd.DataFrame) -> dict[str, Any]:
    """The run's numbers (the keys of the sweep row)."""
    f = faults(trace)
    m = message_fates(trace)
    t0 = float(f["t_ms"].min()) if len(f) else math.nan
    acc = trace[(trace["kind"] == "hub.accept") & (trace["t_ms"] > t0)]
    after = m[m["after_fault"] & (m["receivers"] >= m["expected"]) & m["accepted"]]
    d = dedup.summary(trace)
    gaps = trace[trace["kind"] == "client.gap"]
    return {
        "faults": len(f),
        "accepted": int(m["accepted"].sum()),
        "hub_lost": int((trace["kind"] == "hub.lost").sum()),
        "undelivered": int(m["lost"].sum()),
        "delayed": int(m["delayed"].sum()),
        "dup_at_follower": d["dup_at_follower"],
        "dup_to_clients": d["dup_to_clients"],
        "resyncs": int((gaps["status"] == "resync").sum()),
        "service_ms": float(acc["t_ms"].min() - t0) if len(acc) else math.nan,
        "recover_ms": float(after["t_submit"].min() + after["latency_max_ms"][after["t_submit"].idxmin()] - t0)
        if len(after) else math.nan,
    }


def rows(trace: pd.DataFrame, scenario: Any = None) -> list[dict[str, Any]]:
    """The sweep row of one run (:func:`summary`)."""
    return [summary(trace)]


GROUP_KEYS: list[str] = []
POOLED: dict[str, tuple[str, str]] = {}
FIGURES = [
    ("undelivered", "accepted messages not delivered to every member (count per run)", None),
    ("hub_lost", "accepted messages lost by the failover (count per run)", None),
    ("delayed", "messages delayed > 2x baseline p95 (count per run)", None),
    ("recover_ms", "time to recover: first complete delivery after the fault (ms)", None),
]
