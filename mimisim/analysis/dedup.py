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
import zlib
from typing import Any

import numpy as np
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
    """The sweep row of one run (:func:`summary`) with the model
    (:func:`stream_model`) and the attempts measured (``notify_attempts``:
    first attempts and retries of /notify)."""
    row = summary(trace)
    row["notify_attempts"] = row["notifies"] + row["notify_retries"]
    row.update(stream_model(trace, scenario))
    return [row]


GROUP_KEYS: list[str] = []
POOLED: dict[str, tuple[str, str]] = {}
FIGURES = [
    ("dup_at_follower", "duplicate /notify arrivals at followers (count per run)", "dup_at_follower_model"),
    ("dup_processed", "duplicates processed again by followers (count per run)", "dup_processed_model"),
    ("dup_to_clients", "duplicates reaching clients (count per run)", None),
    ("window_bytes_max", "dedup window, peak memory per follower (bytes)", "window_bytes_max_model"),
]


# ---------------------------------------------------------------- the model

def _planned(trace: pd.DataFrame) -> pd.DataFrame:
    """The hub's notify exchanges in plan order: ``t_ms, room, follower``
    (``hub.fanout`` rows, one per message; the items of one exchange share
    its time, room and follower)."""
    f = trace[(trace["kind"] == "hub.fanout") & is_notify_request(trace)]
    f = f[["t_ms", "room", "peer", "seq"]].drop_duplicates(["t_ms", "room", "peer"])
    return f.rename(columns={"peer": "follower"}).sort_values(["t_ms", "seq"])[["t_ms", "room", "follower"]]


def _stream_once(rng: np.random.Generator, plans: dict[tuple[str, str], list[float]], hub: str, p: dict[str, Any],
                 end_ms: float) -> dict[str, float]:
    """One replication of every follower's notify streams: the attempts
    (latency + uniform jitter each way, Bernoulli loss each way, the
    follower's processing, the timeout, the backoff), the arrivals, and the
    follower's window deciding which duplicate arrivals are processed."""
    arrivals: dict[str, list[tuple[float, str]]] = {}
    attempts = 0
    for (room, follower), times in sorted(plans.items()):
        lat = p["lat"][follower]
        prev_end = -math.inf
        for k, t_plan in enumerate(times):
            txn = f"{room}>{follower}#{k}"
            t = t_plan if p["pipelining"] else max(t_plan, prev_end)
            a = 0
            done = math.inf
            while t <= end_ms:
                a += 1
                attempts += 1
                d1 = max(0.0, lat[0] + p["jitter"][follower][0] * (2 * rng.random() - 1))
                d2 = max(0.0, lat[1] + p["jitter"][follower][1] * (2 * rng.random() - 1))
                req_ok = rng.random() >= p["loss"]
                resp_ok = rng.random() >= p["loss"]
                if req_ok and t + d1 <= end_ms:
                    arrivals.setdefault(follower, []).append((t + d1, txn))
                rt = d1 + p["proc"][follower] + d2
                if req_ok and resp_ok and rt <= p["timeout"]:
                    done = t + rt
                    break
                if p["max_attempts"] is not None and a >= p["max_attempts"]:
                    done = t + p["timeout"]
                    break
                w = min(p["cap"], p["base"] * p["factor"] ** (a - 1))
                w = float(rng.uniform(0.0, w)) if p["jitter_kind"] == "full" else (
                    w / 2 + float(rng.uniform(0.0, w / 2)) if p["jitter_kind"] == "equal" else w)
                t = t + p["timeout"] + w
            prev_end = done
    dup = processed = 0
    peak_entries = peak_bytes = 0
    for follower in sorted(arrivals):
        seen: set[str] = set()
        window: dict[str, float] = {}  # insertion-ordered: the oldest first
        nbytes = 0
        for t, txn in sorted(arrivals[follower]):
            for old in [k for k, t0 in window.items() if t0 < t - p["age"]]:
                del window[old]
                nbytes -= p["entry"](old)
            again = txn in seen
            dup += again
            if p["strategy"] != "none" and txn in window:
                continue  # deduplicated
            processed += again
            seen.add(txn)
            if p["strategy"] == "none":
                continue
            window[txn] = t
            nbytes += p["entry"](txn)
            while len(window) > p["entries"]:
                old = next(iter(window))
                del window[old]
                nbytes -= p["entry"](old)
            peak_entries = max(peak_entries, len(window))
            peak_bytes = max(peak_bytes, nbytes)
    return {"attempts": attempts, "dup": dup, "processed": processed, "entries": peak_entries, "bytes": peak_bytes}


def stream_model(trace: pd.DataFrame, scenario: Any, reps: int = 20) -> dict[str, float]:
    """The model of the dedup study's numbers, by a Monte Carlo of the hub's
    notify streams (``reps`` replications, seeded from the run's plan).

    What it keeps: the hub's planned notifies (``hub.fanout``: the offered
    stream, as the failover model keeps the input times), the ordered stream
    per room and follower (one exchange at a time unless
    ``notify_pipelining``), each attempt's latency (mean + uniform jitter
    each way), Bernoulli loss each way, the follower's ``per_request``
    processing, the timeout (a late 201 is a failed attempt), the backoff
    and ``max_attempts``, the run's end; at the follower the strategy's
    window (entries, age; 40 B per body hash, 10 + origin + id bytes per
    transaction id). It drops the hub's and follower's CPU queues, bursty
    loss, crashes and bandwidth. Returns ``dup_at_follower_model``,
    ``dup_processed_model``, ``notify_attempts_model``,
    ``window_entries_max_model``, ``window_bytes_max_model`` (peak over
    followers, as the run's ``_max``)."""
    nan = {k: math.nan for k in ("dup_at_follower_model", "dup_processed_model", "notify_attempts_model",
                                 "window_entries_max_model", "window_bytes_max_model")}
    if scenario is None or not getattr(scenario, "rooms", None):
        return nan
    from mimisim.analysis.conflicts import mean_latency_ms

    plan = _planned(trace)
    if plan.empty:
        return nan
    hub = next(iter(scenario.rooms.values())).hub
    followers = sorted(set(plan["follower"]))
    lat, jit, proc = {}, {}, {}
    for f in followers:
        fwd, back = scenario.link(hub, f), scenario.link(f, hub)
        lat[f] = (mean_latency_ms(fwd.latency), mean_latency_ms(back.latency))
        jit[f] = (float(fwd.jitter or 0.0), float(back.jitter or 0.0))
        cost = getattr(scenario.providers.get(f), "cost", None)
        proc[f] = float(getattr(cost, "per_request", 0.0) or 0.0)
    loss = scenario.network.default.loss
    if getattr(loss, "kind", "none") not in ("none", "bernoulli") or scenario.network.links:
        return nan  # bursty loss or per-link overrides: not covered
    pol = scenario.protocol.notify
    dd = scenario.protocol.dedup
    origin = len(hub.encode())
    params = {
        "lat": lat, "jitter": jit, "proc": proc, "loss": float(getattr(loss, "p", 0.0)),
        "timeout": float(pol.timeout), "max_attempts": pol.retry.max_attempts, "base": float(pol.retry.backoff.base),
        "factor": float(pol.retry.backoff.factor), "cap": float(pol.retry.backoff.cap),
        "jitter_kind": str(pol.retry.backoff.jitter), "pipelining": bool(scenario.protocol.notify_pipelining),
        "strategy": str(dd.strategy), "entries": int(dd.window_entries), "age": float(dd.window_age),
        "entry": (lambda txn: 32 + 8) if dd.strategy == "body_hash"
        else (lambda txn: 2 + origin + len(txn.encode()) + 8),
    }
    plans: dict[tuple[str, str], list[float]] = {}
    for r in plan.itertuples(index=False):
        plans.setdefault((str(r.room), str(r.follower)), []).append(float(r.t_ms))
    end = float(trace["t_ms"].max())
    rng = np.random.default_rng(zlib.crc32(f"{len(plan)} {end} {sorted(params['lat'].items())}".encode()))
    tot = {"attempts": 0.0, "dup": 0.0, "processed": 0.0, "entries": 0.0, "bytes": 0.0}
    for _ in range(reps):
        for k, v in _stream_once(rng, plans, hub, params, end).items():
            tot[k] += v
    return {"dup_at_follower_model": tot["dup"] / reps, "dup_processed_model": tot["processed"] / reps,
            "notify_attempts_model": tot["attempts"] / reps, "window_entries_max_model": tot["entries"] / reps,
            "window_bytes_max_model": tot["bytes"] / reps}
