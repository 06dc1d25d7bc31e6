"""A run in a few dozen numbers: ``summary.csv`` and the table ``mimisim run`` prints.

One row per number, ``metric, value, unit``, the value always a number, so
``mimisim.load(folder).summary`` is a numeric table a notebook can compare
across runs (the first version wrote ``169.1 / 274.7 / 326.0 ms`` as text).

Wording matters here as much as the numbers: a newcomer reads every count
labelled "failed" or "of N" as an error. So expected events are named for
what they are:

- a workload action whose client had left the room by the time it ran
  (the workload drew it while the leave was still in flight) is a
  **skipped** action, not a failed operation; only other ``client.fail``
  rows count as failed operations;
- HTTP counts add up: *attempts* = first *requests* + *retries* =
  *answered* + *unanswered* (a timeout, a lost request or response, a
  crashed peer); *timeouts* are the part of the unanswered the sender
  noticed by its timer.

Computed from the derived tables and the trace's common columns (``kind``,
``status``, ``t_ms``) only.
"""

from __future__ import annotations

import pandas as pd

#: ``client.fail`` statuses that mean "the actor was no longer in the room":
#: a skipped workload action rather than a failure.
SKIPPED_STATUSES = frozenset({"removed", "notMember"})

COLUMNS = ("metric", "value", "unit")


def summary(trace: pd.DataFrame, tables: dict[str, pd.DataFrame], setup_end_ms: float | None = None) -> pd.DataFrame:
    """The run's numbers: ``metric, value, unit`` (value a float).

    ``setup_end_ms``: when the initial rooms were built (every joined client of
    every initial participant a member; ``World.setup_end_ms``), if known. Then
    the setup's cost is given apart from the rest of the run's: events,
    commits, HTTP requests and network bytes recorded up to that time, and
    after it. The trace alone cannot tell which clients were meant to join
    (the scenario can), so a summary recomputed from a trace has no such rows.
    """
    m, d, c, x, f = (tables[k] for k in ("messages", "deliveries", "commits", "exchanges", "faults"))
    k = trace["kind"].value_counts()

    def n(kind: str) -> int:
        return int(k.get(kind, 0))

    lat = d["latency_ms"].dropna()
    fails = trace.loc[trace["kind"] == "client.fail", "status"]
    skipped = int(fails.isin(SKIPPED_STATUSES).sum())
    answered = int((x["status"] != "").sum()) if len(x) else 0
    rows: list[tuple[str, float, str]] = [
        ("events", len(trace), "events"),
        ("simulated time", float(trace["t_ms"].max()) / 1000 if len(trace) else 0.0, "s"),
        ("messages submitted", len(m), "messages"),
        ("messages accepted by the hub", int(m["accepted"].sum()) if len(m) else 0, "messages"),
        ("deliveries to users", len(d), "deliveries"),
        ("delivery latency p50", float(lat.quantile(0.5)) if len(lat) else float("nan"), "ms"),
        ("delivery latency p95", float(lat.quantile(0.95)) if len(lat) else float("nan"), "ms"),
        ("delivery latency max", float(lat.max()) if len(lat) else float("nan"), "ms"),
        ("commits built", len(c), "commits"),
        ("commits accepted by the hub", int(c["accepted"].sum()) if len(c) else 0, "commits"),
        ("wrongEpoch answers to commits", int(c["wrong_epoch"].sum()) if len(c) else 0, "answers"),
        ("HTTP requests (first attempts)", n("http.request"), "attempts"),
        ("HTTP retries", n("http.retry"), "attempts"),
        ("HTTP attempts answered", answered, "attempts"),
        ("HTTP attempts unanswered (timeout, loss, crash)", len(x) - answered, "attempts"),
        ("HTTP timeouts", n("http.timeout"), "attempts"),
        ("notifies processed by followers", n("notify.accept"), "notifies"),
        ("duplicate notifies recognised", n("notify.dedup"), "notifies"),
        ("network messages dropped (loss, partition, offline, crash)", n("net.drop"), "network messages"),
        ("messages held until an earlier one arrived", n("client.gap"), "messages"),
        ("workload actions skipped (client had left the room)", skipped, "actions"),
        ("operations failed", len(fails) - skipped, "operations"),
        ("accepted messages lost by failover", n("hub.lost"), "messages"),
        ("faults injected", len(f), "faults"),
        ("faults that bit", int(f["bit"].sum()) if len(f) else 0, "faults"),
    ]
    if setup_end_ms is not None:
        rows += setup_rows(trace, setup_end_ms)
    asked = trace[(trace["kind"] == "workload.action") & (trace["action"] == "leave")
                  & (trace["status"] != "skipped")] if "action" in trace.columns else trace.iloc[:0]
    if len(asked):  # only in runs whose workload leaves rooms
        left = fails[trace.loc[trace["kind"] == "client.fail", "operation"] == "leave"]
        rows += [
            ("leaves asked", len(asked), "leaves"),
            # A leave is retried while the hub answers; one that fails could
            # not reach the hub, or was refused (notAllowed): the user stays.
            ("leaves failed (the user stays in the room)", int((~left.isin(SKIPPED_STATUSES)).sum()), "leaves"),
        ]
    if n("adversary.attempt"):  # only in runs with adversaries (mimisim.sim.adversary)
        rows += [
            ("attacks tried", n("adversary.attempt"), "attacks"),
            ("attacks rejected", n("adversary.rejected"), "attacks"),
            ("attacks unanswered", n("adversary.unanswered"), "attacks"),
            ("attacks accepted (must be 0)", n("adversary.accepted"), "attacks"),
        ]
        adv = trace[trace["kind"].str.startswith("adversary.")]
        for attack in sorted(set(adv["attack"].dropna())):
            a = adv.loc[adv["attack"] == attack, "kind"].value_counts()
            rows += [(f"attack {attack}: {what}", int(a.get(f"adversary.{kind}", 0)), "attacks")
                     for what, kind in (("tried", "attempt"), ("refused", "rejected"), ("accepted", "accepted"))]
    return pd.DataFrame({"metric": [r[0] for r in rows], "value": [float(r[1]) for r in rows],
                         "unit": [r[2] for r in rows]})


def setup_rows(trace: pd.DataFrame, setup_end_ms: float) -> list[tuple[str, float, str]]:
    """The setup's cost apart from the rest of the run (see :func:`summary`);
    rows at exactly ``setup_end_ms`` count as the setup's."""
    before = trace["t_ms"] <= setup_end_ms
    kind = trace["kind"]
    net = kind == "net.send"
    rows: list[tuple[str, float, str]] = [("initial rooms built after", setup_end_ms / 1000, "s")]
    for phase, sel in (("setup", before), ("after setup", ~before)):
        rows += [
            (f"{phase}: events", int(sel.sum()), "events"),
            (f"{phase}: commits built", int((sel & (kind == "client.commit")).sum()), "commits"),
            (f"{phase}: HTTP requests (first attempts)", int((sel & (kind == "http.request")).sum()), "attempts"),
            (f"{phase}: bytes sent on links", int(trace.loc[sel & net, "bytes"].fillna(0).sum()), "bytes"),
        ]
    return rows


def format_value(value: float, unit: str) -> str:
    """A summary value as the CLI prints it: counts as integers, times with
    one decimal, a missing value as ``-``."""
    if value != value:  # NaN: nothing to measure (no deliveries)
        return "-"
    if unit in ("ms", "s"):
        return f"{value:.1f} {unit}"
    return f"{int(value)}" if float(value).is_integer() else f"{value:g}"


def format_table(summary: pd.DataFrame) -> list[str]:
    """The numeric summary as aligned ``metric  value`` lines."""
    if not len(summary):
        return []
    width = max(len(m) for m in summary["metric"])
    return [f"  {m:<{width}}  {format_value(float(v), u)}"
            for m, v, u in zip(summary["metric"], summary["value"], summary["unit"], strict=True)]
