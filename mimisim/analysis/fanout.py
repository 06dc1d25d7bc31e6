"""The fanout study: what one message costs the hub, by room size and provider count.

- per application message: the ``/notify`` requests the hub sent for it
  (``http.request`` and ``http.retry`` whose ``msg_id`` is the message's:
  one per follower provider and attempt) and their bytes, in all and per
  follower provider (the room's providers other than the hub's);
- per room: members (distinct clients that hold an epoch of the room at the
  end, minus the removed) and providers (their domains, the hub's included);
- per commit: the sizes the client recorded (``client.commit`` typed columns
  ``commit_bytes, welcome_bytes, groupinfo_bytes, partial_groupinfo_bytes,
  bundle_bytes``), with
  the group size after the commit.

Model (exact, no fitted slope): the hub sends one ``/notify`` per follower
provider with members in the room and per message, so ``requests_per_msg =
providers - 1``, and each body is the message plus a fixed framing,
``bytes_per_msg = (providers - 1) x (size + F)``. ``F`` =
:data:`NOTIFY_FRAMING_BYTES`, measured once (200 B messages, the
fanout scenario at 45 s: 602 B per /notify); the sweep's other sizes are the
check.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from mimisim.analysis.dedup import is_notify_request


def _domain(uri: str) -> str:
    return uri.split("//", 1)[-1].split("/", 1)[0]


def rooms(trace: pd.DataFrame) -> pd.DataFrame:
    """Per room: ``room, hub, members, providers``."""
    e = trace[trace["kind"] == "client.epoch"]
    out = []
    for room, g in e.groupby("room", sort=True):
        last = g.drop_duplicates("node", keep="last")
        members = last[last["status"] != "removed"]["node"]
        out.append({"room": room, "hub": _domain(room), "members": members.nunique(),
                    "providers": members.map(_domain).nunique()})
    return pd.DataFrame(out, columns=["room", "hub", "members", "providers"])


def messages(trace: pd.DataFrame) -> pd.DataFrame:
    """Per application message the hub accepted: ``msg_id, room, members, providers, requests,
    bytes, followers, requests_per_follower, bytes_per_follower, bytes_per_member``."""
    accepted = set(trace.loc[trace["kind"] == "hub.accept", "msg_id"])
    sub = trace[trace["kind"] == "client.submit"].drop_duplicates("msg_id")[["msg_id", "room"]]
    sub = sub[sub["msg_id"].isin(accepted)]  # a refused attempt (epochTooOld) is never fanned out
    req = trace[trace["kind"].isin(["http.request", "http.retry"]) & is_notify_request(trace)]
    req = req[req["msg_id"].isin(sub["msg_id"])]
    g = req.groupby("msg_id").agg(requests=("req_id", "size"), bytes=("bytes", "sum"), followers=("peer", "nunique"))
    m = sub.merge(g, left_on="msg_id", right_index=True, how="left").merge(rooms(trace), on="room", how="left")
    m[["requests", "bytes", "followers"]] = m[["requests", "bytes", "followers"]].fillna(0).astype("int64")
    followers = (m["providers"] - 1).where(m["providers"] > 1)  # the hub's own clients need no /notify
    m["requests_per_follower"] = m["requests"] / followers
    m["bytes_per_follower"] = m["bytes"] / followers
    m["bytes_per_member"] = m["bytes"] / m["members"]
    return m.reset_index(drop=True)


def commit_sizes(trace: pd.DataFrame) -> pd.DataFrame:
    """Per commit a client built: ``room, msg_id, op, added, removed, accepted,
    members_after, commit, welcome, groupinfo, partial_groupinfo, bundle`` (bytes).
    ``members_after`` follows the accepted commits' +adds -removes from the
    creator alone."""
    c = trace[trace["kind"] == "client.commit"]
    acc = set(trace.loc[trace["kind"] == "hub.accept", "msg_id"])
    df = pd.DataFrame({"room": c["room"].to_numpy(), "msg_id": c["msg_id"].to_numpy(),
                       "op": c["operation"].to_numpy(),
                       "added": c["added"].fillna(0).astype(int).to_numpy(),
                       "removed": c["removed"].fillna(0).astype(int).to_numpy()})
    df["accepted"] = df["msg_id"].isin(acc)
    # External commits record no sizes (null): they are dropped below. A
    # commit that adds nobody has no Welcome (null in the trace, 0 here).
    sized = c["commit_bytes"].notna().to_numpy()
    for name in ["commit", "welcome", "groupinfo", "partial_groupinfo", "bundle"]:
        col = c[f"{name}_bytes"].astype("Float64")
        if name == "welcome":
            col = col.fillna(0).where(sized, pd.NA)
        df[name] = col.astype("float64").to_numpy()
    delta = (df["added"] - df["removed"]).where(df["accepted"], 0)
    df["members_after"] = 1 + delta.groupby(df["room"]).cumsum()
    return df.dropna(subset=["commit"]).reset_index(drop=True)


#: Bytes a /notify body adds to the application message's plaintext size
#: (MLS PrivateMessage framing and AEAD tag, the MIMI content envelope, the
#: notify body's own fields): 602 B for a 200 B message, measured.
NOTIFY_FRAMING_BYTES = 402


def message_size(scenario: Any) -> float:
    """The workload's application message size (bytes), NaN if none is set."""
    msgs = getattr(getattr(scenario, "workload", None), "messages", None)
    size = getattr(msgs, "size", None)
    try:
        return float(size) if size is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def rows(trace: pd.DataFrame, scenario: Any = None) -> list[dict[str, Any]]:
    """One sweep row per room: ``room, members, providers, messages,
    requests_per_msg, bytes_per_msg, requests_per_follower, bytes_per_follower,
    bytes_per_member, welcome_bytes, groupinfo_bytes, commit_bytes`` (the
    last add's Welcome, the last commit's GroupInfo and commit)."""
    m = messages(trace)
    cs = commit_sizes(trace)
    out = []
    size = message_size(scenario)
    for r in rooms(trace).itertuples(index=False):
        g = m[m["room"] == r.room]
        c = cs[(cs["room"] == r.room) & cs["accepted"]]
        adds = c[c["welcome"] > 0]
        out.append({
            "room": r.room, "members": r.members, "providers": r.providers, "messages": len(g),
            "requests_per_msg": float(g["requests"].mean()) if len(g) else math.nan,
            "bytes_per_msg": float(g["bytes"].mean()) if len(g) else math.nan,
            "requests_per_follower": float(g["requests_per_follower"].mean()) if len(g) else math.nan,
            "bytes_per_follower": float(g["bytes_per_follower"].mean()) if len(g) else math.nan,
            "bytes_per_member": float(g["bytes_per_member"].mean()) if len(g) else math.nan,
            "welcome_bytes": float(adds["welcome"].iloc[-1]) if len(adds) else math.nan,
            "groupinfo_bytes": float(c["groupinfo"].iloc[-1]) if len(c) else math.nan,
            "commit_bytes": float(c["commit"].iloc[-1]) if len(c) else math.nan,
            "requests_per_msg_model": float(max(0, r.providers - 1)),
            "bytes_per_msg_model": float(max(0, r.providers - 1)) * (size + NOTIFY_FRAMING_BYTES),
        })
    return out


GROUP_KEYS = ["members", "providers"]
POOLED: dict[str, tuple[str, str]] = {}
FIGURES = [
    ("bytes_per_msg", "/notify bytes per message (bytes)", "bytes_per_msg_model"),
    ("requests_per_msg", "/notify requests per message (count)", "requests_per_msg_model"),
    ("welcome_bytes", "Welcome size for the last add (bytes)", None),
    ("groupinfo_bytes", "GroupInfo size (bytes)", None),
]
