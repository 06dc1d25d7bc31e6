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
  commits after a stuck gap) are counted. A run where the hub never
  accepts again, or no message submitted after the fault is ever delivered
  to everyone, counts in ``never_serviced`` / ``never_recovered`` (its
  time is NaN and the sweep's mean says over how many runs it is);
- **refused**: application messages a client submitted that the hub never
  accepted (settled ones: submitted before the run's last 5 s), which
  ``undelivered`` (accepted ones) does not count.

Model of the lagging standby (:func:`expected_lost`): the standby replays
the hub's inputs in order, input j arriving ``L_j`` after it (i.i.d. from
the scenario's ``lag`` distribution) and only once every earlier one has;
an input accepted at ``t_i`` survives a failover at ``t_f`` iff every input
up to it has arrived, so ``E[accepted inputs lost] = sum_i (1 - prod_{j <=
i} F(t_f - t_j))`` over the accepted inputs i, with F the lag's CDF and the
inputs j every request or response the hub's node received
(``net.deliver`` at the hub's domain) before ``t_f``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
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


def lag_cdf(dist: Any, x: np.ndarray) -> np.ndarray:
    """P(lag <= x) for the lag distributions with a closed form (constant,
    exponential, uniform); NaN for others."""
    kind = getattr(dist, "kind", None)
    x = np.asarray(x, dtype=float)
    if kind == "constant":
        return (x >= float(dist.value)).astype(float)
    if kind == "exponential":
        return np.where(x > 0, 1.0 - np.exp(-np.maximum(x, 0) / float(dist.mean)), 0.0)
    if kind == "uniform":
        lo, hi = float(dist.low), float(dist.high)
        return np.clip((x - lo) / (hi - lo), 0.0, 1.0) if hi > lo else (x >= lo).astype(float)
    return np.full_like(x, math.nan)


def expected_lost(trace: pd.DataFrame, scenario: Any) -> float:
    """The model's expected number of accepted inputs a lagging standby loses
    (module docstring); 0 for ``sync``; NaN without a failover or a lag
    distribution it knows."""
    fo = trace[trace["kind"] == "fault.failover"]
    if scenario is None or fo.empty:
        return math.nan
    hub = str(fo["node"].iloc[0])
    spec = scenario.providers.get(hub) if hasattr(scenario.providers, "get") else None
    standby = getattr(spec, "standby", None)
    if standby is None:
        return math.nan
    if standby.replication == "sync":
        return 0.0
    t_f = float(fo["t_ms"].min())
    inputs = np.sort(trace.loc[(trace["kind"] == "net.deliver") & (trace["node"] == hub)
                               & (trace["t_ms"] <= t_f), "t_ms"].to_numpy(dtype=float))
    acc = trace[(trace["kind"] == "hub.accept") & (trace["node"] == hub) & (trace["t_ms"] <= t_f)]
    if len(inputs) == 0 or acc.empty:
        return 0.0
    with np.errstate(divide="ignore"):
        logf = np.log(lag_cdf(standby.lag, t_f - inputs))
    if np.isnan(logf).any():
        return math.nan
    cum = np.cumsum(logf)  # log P(every input up to j has arrived by t_f)
    idx = np.searchsorted(inputs, acc["t_ms"].to_numpy(dtype=float), side="right") - 1
    surv = np.where(idx >= 0, np.exp(cum[np.clip(idx, 0, None)]), 1.0)
    return float((1.0 - surv).sum())


def summary(trace: pd.DataFrame, scenario: Any = None) -> dict[str, Any]:
    """The run's numbers (the keys of the sweep row)."""
    f = faults(trace)
    m = message_fates(trace)
    t0 = float(f["t_ms"].min()) if len(f) else math.nan
    acc = trace[(trace["kind"] == "hub.accept") & (trace["t_ms"] > t0)]
    after = m[m["after_fault"] & (m["receivers"] >= m["expected"]) & m["accepted"]]
    d = dedup.summary(trace)
    gaps = trace[trace["kind"] == "client.gap"]
    end = float(trace["t_ms"].max()) if len(trace) else 0.0
    faulted = len(f) > 0
    service = float(acc["t_ms"].min() - t0) if len(acc) else math.nan
    recover = (float(after["t_submit"].min() + after["latency_max_ms"][after["t_submit"].idxmin()] - t0)
               if len(after) else math.nan)
    return {
        "faults": len(f),
        "accepted": int(m["accepted"].sum()),
        "hub_lost": int((trace["kind"] == "hub.lost").sum()),
        "hub_lost_model": expected_lost(trace, scenario),
        "undelivered": int(m["lost"].sum()),
        "refused": int((~m["accepted"] & (m["t_submit"] <= end - 5_000.0)).sum()),
        "delayed": int(m["delayed"].sum()),
        "dup_at_follower": d["dup_at_follower"],
        "dup_to_clients": d["dup_to_clients"],
        "resyncs": int((gaps["status"] == "resync").sum()),
        "service_ms": service,
        "recover_ms": recover,
        "never_serviced": int(faulted and math.isnan(service)),
        "never_recovered": int(faulted and math.isnan(recover)),
    }


def rows(trace: pd.DataFrame, scenario: Any = None) -> list[dict[str, Any]]:
    """The sweep row of one run (:func:`summary`)."""
    return [summary(trace, scenario)]


GROUP_KEYS: list[str] = []
POOLED: dict[str, tuple[str, str]] = {}
FIGURES = [
    ("undelivered", "accepted messages not delivered to every member (count per run)", None),
    ("hub_lost", "accepted inputs lost by the failover (count per run)", "hub_lost_model"),
    ("delayed", "messages delayed > 2x baseline p95 (count per run)", None),
    ("recover_ms", "time to recover: first complete delivery after the fault (ms)", None),
    ("never_recovered", "runs never recovered (0/1 per run)", None),
]
