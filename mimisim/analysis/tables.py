"""Derived tables of a run, computed from the trace alone.

Each function takes the trace as a DataFrame (the columns of
:data:`mimisim.sim.trace.COLUMNS`) and returns one documented DataFrame.
They never look at live simulator objects, so a ``trace.parquet`` from any
run (or any machine) gives the same tables.

Times are simulated milliseconds.
"""

from __future__ import annotations

import pandas as pd

#: Table name -> function; ``mimisim run`` writes each as ``<name>.parquet``.
TABLES: dict[str, str] = {
    "messages": "one row per application message submitted: sender, room, submit/accept times, "
                "receivers reached, delivery latency",
    "deliveries": "one row per application message shown to a user: receiver, latency from submit",
    "commits": "one row per commit a client built: outcome at the hub, wrongEpoch answers, time to accept",
    "exchanges": "one row per HTTP attempt between providers: endpoint, status, round-trip time",
    "faults": "one row per fault: whether it bit and how",
}


def _rows(trace: pd.DataFrame, kind: str) -> pd.DataFrame:
    return trace[trace["kind"] == kind]


def messages(trace: pd.DataFrame) -> pd.DataFrame:
    """Application messages: ``msg_id, room, sender, t_submit, epoch, t_accept,
    accepted, receivers, latency_mean_ms, latency_max_ms``. A retried message
    has a new MLS ciphertext, so each attempt is its own row."""
    sub = _rows(trace, "client.submit")[["msg_id", "room", "node", "t_ms", "epoch"]].rename(
        columns={"node": "sender", "t_ms": "t_submit"}
    ).drop_duplicates("msg_id")
    acc = _rows(trace, "hub.accept")
    acc = acc[acc["msg_id"].isin(sub["msg_id"])].groupby("msg_id", sort=False)["t_ms"].min().rename("t_accept")
    dl = deliveries(trace)
    agg = dl.groupby("msg_id", sort=False).agg(receivers=("receiver", "nunique"),
                                               latency_mean_ms=("latency_ms", "mean"),
                                               latency_max_ms=("latency_ms", "max"))
    out = sub.merge(acc, left_on="msg_id", right_index=True, how="left").merge(
        agg, left_on="msg_id", right_index=True, how="left")
    out["accepted"] = out["t_accept"].notna()
    out["receivers"] = out["receivers"].fillna(0).astype("int64")
    return out.reset_index(drop=True)[["msg_id", "room", "sender", "t_submit", "epoch", "t_accept", "accepted",
                                       "receivers", "latency_mean_ms", "latency_max_ms"]]


def deliveries(trace: pd.DataFrame) -> pd.DataFrame:
    """Messages shown to users: ``msg_id, room, receiver, t_ms, frank, latency_ms``
    (latency from the sender's submit; NaN when the submit is not in the trace)."""
    d = _rows(trace, "client.deliver")[["msg_id", "room", "node", "t_ms", "status"]].rename(
        columns={"node": "receiver", "status": "frank"})
    sub = _rows(trace, "client.submit").drop_duplicates("msg_id").set_index("msg_id")["t_ms"]
    d = d.assign(latency_ms=d["t_ms"].to_numpy() - d["msg_id"].map(sub).to_numpy())
    return d.reset_index(drop=True)


def commits(trace: pd.DataFrame) -> pd.DataFrame:
    """Commits built by clients: ``msg_id, room, client, epoch, t_commit,
    detail, accepted, t_accept, wrong_epoch, rejected, time_to_accept_ms``.
    Each retry is a new commit (new msg_id); ``detail`` names the operation
    and the attempt number."""
    c = _rows(trace, "client.commit")[["msg_id", "room", "node", "epoch", "t_ms", "detail"]].rename(
        columns={"node": "client", "t_ms": "t_commit"}).drop_duplicates("msg_id")
    acc = _rows(trace, "hub.accept")
    acc = acc[acc["msg_id"].isin(c["msg_id"])].groupby("msg_id", sort=False)["t_ms"].min().rename("t_accept")
    rej = _rows(trace, "hub.reject")
    rej = rej[rej["msg_id"].isin(c["msg_id"])]
    wrong = rej[rej["status"] == "wrongEpoch"].groupby("msg_id").size().rename("wrong_epoch")
    nrej = rej.groupby("msg_id").size().rename("rejected")
    out = c.merge(acc, left_on="msg_id", right_index=True, how="left")
    out = out.merge(wrong, left_on="msg_id", right_index=True, how="left").merge(
        nrej, left_on="msg_id", right_index=True, how="left")
    out["accepted"] = out["t_accept"].notna()
    out["wrong_epoch"] = out["wrong_epoch"].fillna(0).astype("int64")
    out["rejected"] = out["rejected"].fillna(0).astype("int64")
    out["time_to_accept_ms"] = out["t_accept"] - out["t_commit"]
    return out.reset_index(drop=True)


def exchanges(trace: pd.DataFrame) -> pd.DataFrame:
    """HTTP attempts between providers: ``req_id, src, dst, endpoint, t_request,
    retry, msg_id, status, t_response, rtt_ms`` (status empty and rtt NaN
    when no response came back: timeout, loss, crash)."""
    req = trace[trace["kind"].isin(["http.request", "http.retry"])]
    req = req[["req_id", "node", "peer", "method", "path", "t_ms", "kind", "msg_id"]].rename(
        columns={"node": "src", "peer": "dst", "t_ms": "t_request"})
    req = req.assign(endpoint=req["method"] + " " + req["path"],
                     retry=req["kind"] == "http.retry").drop(columns=["method", "path", "kind"])
    resp = _rows(trace, "http.response")[["req_id", "t_ms", "status"]].rename(columns={"t_ms": "t_response"})
    out = req.merge(resp.drop_duplicates("req_id"), on="req_id", how="left")
    out["status"] = out["status"].fillna("")
    out["rtt_ms"] = out["t_response"] - out["t_request"]
    return out[["req_id", "src", "dst", "endpoint", "t_request", "retry", "msg_id", "status", "t_response",
                "rtt_ms"]].reset_index(drop=True)


def faults(trace: pd.DataFrame) -> pd.DataFrame:
    """Faults: ``fault_id, kind, node, bit, detail`` from the ``fault.effect`` rows."""
    f = _rows(trace, "fault.effect")
    return pd.DataFrame({"fault_id": f["fault_id"].to_numpy(), "kind": f["fault_kind"].to_numpy(),
                         "node": f["node"].to_numpy(),
                         "bit": (f["status"] == "bit").to_numpy(), "detail": f["detail"].to_numpy()})


def all_tables(trace: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {"messages": messages(trace), "deliveries": deliveries(trace), "commits": commits(trace),
            "exchanges": exchanges(trace), "faults": faults(trace)}
