"""The notify-deduplication study, from the trace.

The hub retries a ``/notify`` until it sees 201 (a lost 201, a timeout
shorter than the round trip, a follower crash); the follower must answer 201
to a duplicate and process it once. Each ``notify.accept``/``notify.dedup``
row carries the hub's logical notify id (``txn=``, the same on every retry,
whatever the follower's strategy) and the follower's window after the
request (``window=<entries> entries <bytes> B``), so the study can tell:

- **retried notifies**: ``http.retry`` of a ``/notify`` at the hub;
- **duplicates reaching the follower**: arrivals of a txn already seen by
  that follower (accepted or deduplicated);
- **duplicates processed**: a txn the follower processed (``notify.accept``)
  a second time: the strategy failed (``none``, a window too small or too
  short, a volatile restart);
- **duplicates reaching clients**: ``client.drop`` with status ``duplicate``
  (the client recognised the same message id again) plus repeated
  ``client.deliver`` of one message to one client;
- **retried submits**: a follower's ``/submitMessage`` retried after its
  response was lost; the hub answers it as a duplicate (``hub.accept``
  with ``duplicate``) and does not fan it out again (``submit_retried``);
- **messages the hub accepted twice** with a second fanout
  (``hub_accepted_twice``): should stay 0 now that ``/submitMessage`` is
  idempotent; a non-zero count is a regression;
- **legitimate repeats wrongly dropped**: a ``notify.dedup`` of a txn the
  follower never processed (a distinct notify whose body collided);
- **window memory**: entries and bytes held, per follower over time.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

NOTIFY_COLUMNS = ["t_ms", "follower", "hub", "room", "txn", "outcome", "window_entries", "window_bytes",
                  "arrival", "duplicate", "reprocessed", "wrongly_dropped"]


def notifies(trace: pd.DataFrame) -> pd.DataFrame:
    """One row per ``/notify`` a follower handled: ``t_ms, follower, hub, room,
    txn, outcome`` (accept | dedup), ``window_entries, window_bytes``,
    ``arrival`` (1 for the first arrival of the txn at that follower),
    ``duplicate`` (a later arrival), ``reprocessed`` (an accept of a txn
    already accepted), ``wrongly_dropped`` (a dedup of a txn never accepted)."""
    n = trace[trace["kind"].isin(["notify.accept", "notify.dedup"])]
    df = pd.DataFrame({
        "t_ms": n["t_ms"].to_numpy(), "follower": n["node"].to_numpy(), "hub": n["peer"].to_numpy(),
        # "-": the hub sent no transaction id (as the trace's detail writes it)
        "room": n["room"].to_numpy(), "txn": n["txn_id"].fillna("-").astype(str).to_numpy(),
        "outcome": n["kind"].str.removeprefix("notify.").to_numpy(),
        "window_entries": n["window_entries"].fillna(-1).astype("int64").to_numpy(),
        "window_bytes": n["window_bytes"].fillna(-1).astype("int64").to_numpy(),
    })
    key = df["follower"] + "|" + df["txn"]
    df["arrival"] = ~key.duplicated()
    df["duplicate"] = ~df["arrival"]
    acc = df["outcome"] == "accept"
    df["reprocessed"] = acc & (acc.groupby(key).cumsum() > 1)
    accepted_before = acc.groupby(key).cumsum() > 0
    df["wrongly_dropped"] = (df["outcome"] == "dedup") & ~accepted_before
    return df[NOTIFY_COLUMNS]


def window(trace: pd.DataFrame) -> pd.DataFrame:
    """The dedup window over time: ``t_ms, follower, entries, bytes`` (after each request)."""
    df = notifies(trace)
    return df[["t_ms", "follower", "window_entries", "window_bytes"]].rename(
        columns={"window_entries": "entries", "window_bytes": "bytes"}).reset_index(drop=True)


def summary(trace: pd.DataFrame) -> dict[str, Any]:
    """The run's numbers (the keys of the sweep row)."""
    is_notify = is_notify_request(trace)
    notify_req = trace[(trace["kind"] == "http.request") & is_notify]  # one per logical notify
    retries = trace[(trace["kind"] == "http.retry") & is_notify]  # each attempt has its own req_id
    timeouts = trace[(trace["kind"] == "http.timeout") & is_notify]
    df = notifies(trace)
    drops = trace[(trace["kind"] == "client.drop") & (trace["status"] == "duplicate")]
    dl = trace[trace["kind"] == "client.deliver"]
    repeat_delivers = int(dl.duplicated(["node", "msg_id"]).sum())
    return {
        "notifies": len(notify_req),
        "notify_retries": len(retries),
        "notify_timeouts": len(timeouts),
        "arrivals": len(df),
        "dup_at_follower": int(df["duplicate"].sum()),
        "dup_deduplicated": int((df["duplicate"] & (df["outcome"] == "dedup")).sum()),
        "dup_processed": int(df["reprocessed"].sum()),
        "dup_to_clients": len(drops) + repeat_delivers,
        "wrongly_dropped": int(df["wrongly_dropped"].sum()),
        "hub_accepted_twice": hub_accepted_twice(trace),
        "submit_retried": submit_retried(trace),
        "window_entries_max": int(df["window_entries"].max()) if len(df) else 0,
        "window_bytes_max": int(df["window_bytes"].max()) if len(df) else 0,
        "window_bytes_mean": float(df["window_bytes"].mean()) if len(df) else math.nan,
    }


def is_notify_request(trace: pd.DataFrame) -> pd.Series:
    """Rows of a ``/notify`` exchange (``http.*``): method POST, path under /notify/."""
    return ((trace["method"] == "POST") & trace["path"].str.startswith("/notify/")).fillna(False).astype(bool)


def hub_accepted_twice(trace: pd.DataFrame) -> int:
    """Application messages the hub accepted **and fanned out** more than
    once (acceptances not marked ``duplicate``). ``/submitMessage`` is
    idempotent: a retried submit is answered as a duplicate without a new
    fanout (:func:`submit_retried`), so this is 0 unless that regresses."""
    sub = set(trace.loc[trace["kind"] == "client.submit", "msg_id"])
    acc = trace[(trace["kind"] == "hub.accept") & trace["msg_id"].isin(sub)]
    if "duplicate" in acc.columns:
        acc = acc[~acc["duplicate"].fillna(False).astype(bool)]
    return int(acc["msg_id"].duplicated().sum())


def submit_retried(trace: pd.DataFrame) -> int:
    """Retried submits the hub recognised and acknowledged again without a
    second fanout (``hub.accept`` with ``duplicate``)."""
    acc = trace[trace["kind"] == "hub.accept"]
    if "duplicate" not in acc.columns:
        return 0
    return int(acc["duplicate"].fillna(False).astype(bool).sum())


def rows(trace: pd.DataFrame, scenario: Any = None) -> list[dict[str, Any]]:
    """The sweep row of one run (:func:`summary`)."""
    return [summary(trace)]


GROUP_KEYS: list[str] = []
POOLED: dict[str, tuple[str, str]] = {}
FIGURES = [
    ("dup_at_follower", "duplicate /notify arrivals at followers (count per run)", None),
    ("dup_processed", "duplicates processed again by followers (count per run)", None),
    ("dup_to_clients", "duplicates reaching clients (count per run)", None),
    ("window_bytes_max", "dedup window, peak memory per follower (bytes)", None),
]
