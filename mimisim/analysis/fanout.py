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

Model (no fitted slope): the hub sends one ``/notify`` per message to each
follower provider with a member **other than the sender** (since the
ordered fanout of issue 13, a message is never sent back to a provider
whose only member sent it), so per message ``followers(sender) = providers -
1 - [the sender's provider is a follower with the sender as its only
member]``; ``requests_per_msg_model`` is its mean over the run's messages
(their actual senders) times the expected attempts per request under
independent link loss ``p`` each way with a timeout above the round trip,
``1 / (1 - p)^2``; each body is the message plus a fixed framing,
``bytes_per_msg_model = requests_per_msg_model x (size + F)``. ``F`` =
:data:`NOTIFY_FRAMING_BYTES`, measured once (200 B messages, the
fanout scenario at 45 s: 602 B per /notify). Where it stops: ``F`` grows by
a few bytes with the room (605 B at 16-32 members) and with the size's
length prefix; a timeout below the round trip or a notify stream that
cannot keep up (rate x round trip > 1 per room and follower) breaks the
attempt count (docs/studies.md, held-out check).
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
    bytes, followers, planned`` (follower notifies the hub queued, sent or not), ``requests_per_follower,
    bytes_per_follower, bytes_per_member``."""
    accepted = set(trace.loc[trace["kind"] == "hub.accept", "msg_id"])
    sub = trace[trace["kind"] == "client.submit"].drop_duplicates("msg_id")[["msg_id", "room"]]
    sub = sub[sub["msg_id"].isin(accepted)]  # a refused attempt (epochTooOld) is never fanned out
    req = trace[trace["kind"].isin(["http.request", "http.retry"]) & is_notify_request(trace)]
    req = req[req["msg_id"].isin(sub["msg_id"])]
    g = req.groupby("msg_id").agg(requests=("req_id", "size"), bytes=("bytes", "sum"), followers=("peer", "nunique"))
    # planned: the hub's fanout plan (hub.fanout, one per follower when the
    # /notify is queued), which an ordered stream may not have sent by the end
    plan = trace[(trace["kind"] == "hub.fanout") & trace["msg_id"].isin(sub["msg_id"])]
    planned = plan.groupby("msg_id").size().rename("planned")
    m = sub.merge(g, left_on="msg_id", right_index=True, how="left").merge(rooms(trace), on="room", how="left")
    m = m.merge(planned, left_on="msg_id", right_index=True, how="left")
    m[["requests", "bytes", "followers", "planned"]] = m[["requests", "bytes", "followers", "planned"]].fillna(0).astype(
        "int64")
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


def follower_targets(trace: pd.DataFrame) -> pd.DataFrame:
    """Per accepted application message: ``msg_id, room, sender, targets``,
    the follower providers the model says it goes to (providers with a
    member of the room other than the sender, the hub's excluded; members
    as :func:`rooms` counts them, at the end of the run)."""
    e = trace[trace["kind"] == "client.epoch"]
    members: dict[str, dict[str, int]] = {}
    for room, g in e.groupby("room", sort=True):
        last = g.drop_duplicates("node", keep="last")
        doms = last[last["status"] != "removed"]["node"].map(_domain)
        members[str(room)] = doms.value_counts().to_dict()
    accepted = set(trace.loc[trace["kind"] == "hub.accept", "msg_id"])
    sub = trace[(trace["kind"] == "client.submit") & trace["msg_id"].isin(accepted)].drop_duplicates("msg_id")
    out = []
    for r in sub.itertuples(index=False):
        room, sender = str(r.room), str(r.node)
        counts = members.get(room, {})
        hub, mine = _domain(room), _domain(sender)
        n = sum(1 for d, k in counts.items() if d != hub and (d != mine or k > 1))
        out.append({"msg_id": r.msg_id, "room": room, "sender": sender, "targets": n})
    return pd.DataFrame(out, columns=["msg_id", "room", "sender", "targets"])


def attempts_per_request(scenario: Any) -> float:
    """Expected attempts per /notify under the default link's independent
    loss ``p`` each way: ``1 / (1 - p)^2`` (1 without loss or scenario; NaN
    for a bursty loss model, which this does not cover)."""
    loss = getattr(getattr(getattr(scenario, "network", None), "default", None), "loss", None)
    kind = getattr(loss, "kind", "none")
    if kind == "none":
        return 1.0
    if kind == "bernoulli":
        return 1.0 / (1.0 - float(getattr(loss, "p", 0.0))) ** 2
    return math.nan


def stream_load(scenario: Any, room: str) -> float:
    """``rho`` = message rate per room x the slowest follower's round trip
    (both link directions, mean latencies): each room's /notify stream to a
    follower sends one request at a time (ordered fanout), so above 1 the
    hub cannot send the notifies as fast as messages come and a backlog
    grows (saturation); NaN without a scenario or message rate."""
    from mimisim.analysis.conflicts import mean_latency_ms

    msgs = getattr(getattr(scenario, "workload", None), "messages", None)
    if msgs is None or getattr(scenario.protocol, "notify_pipelining", False):
        return math.nan
    name = room.rsplit("/", 1)[-1]
    spec = scenario.rooms.get(name)
    if spec is None:
        return math.nan
    provs = {scenario.users[u].provider for u in spec.participants} - {spec.hub}
    if not provs:
        return 0.0
    rtt = max(mean_latency_ms(scenario.link(spec.hub, p).latency) + mean_latency_ms(scenario.link(p, spec.hub).latency)
              for p in provs)
    rate = float(msgs.rate) * (len(spec.participants) if getattr(msgs, "per", "room") == "client" else 1.0)
    return rate * rtt / 1000.0


def rows(trace: pd.DataFrame, scenario: Any = None) -> list[dict[str, Any]]:
    """One sweep row per room: ``room, members, providers, messages,
    requests_per_msg, bytes_per_msg, requests_per_follower, bytes_per_follower,
    bytes_per_member, welcome_bytes, groupinfo_bytes, commit_bytes`` (the
    last add's Welcome, the last commit's GroupInfo and commit)."""
    m = messages(trace)
    cs = commit_sizes(trace)
    tg = follower_targets(trace)
    att = attempts_per_request(scenario)
    out = []
    size = message_size(scenario)
    for r in rooms(trace).itertuples(index=False):
        g = m[m["room"] == r.room]
        c = cs[(cs["room"] == r.room) & cs["accepted"]]
        adds = c[c["welcome"] > 0]
        t = tg[tg["room"] == r.room]["targets"]
        req_model = float(t.mean()) * att if len(t) else math.nan
        out.append({
            "room": r.room, "members": r.members, "providers": r.providers, "messages": len(g),
            "requests_per_msg": float(g["requests"].mean()) if len(g) else math.nan,
            "planned_per_msg": float(g["planned"].mean()) if len(g) else math.nan,
            # measured framing: bytes per /notify sent beyond the message's plaintext
            "framing_bytes": float(g["bytes"].sum() / g["requests"].sum() - size) if len(g) and g["requests"].sum()
            else math.nan,
            "unsent_at_end": int((g["planned"] - g["followers"]).clip(lower=0).sum()) if len(g) else 0,
            "bytes_per_msg": float(g["bytes"].mean()) if len(g) else math.nan,
            "requests_per_follower": float(g["requests_per_follower"].mean()) if len(g) else math.nan,
            "bytes_per_follower": float(g["bytes_per_follower"].mean()) if len(g) else math.nan,
            "bytes_per_member": float(g["bytes_per_member"].mean()) if len(g) else math.nan,
            "welcome_bytes": float(adds["welcome"].iloc[-1]) if len(adds) else math.nan,
            "groupinfo_bytes": float(c["groupinfo"].iloc[-1]) if len(c) else math.nan,
            "commit_bytes": float(c["commit"].iloc[-1]) if len(c) else math.nan,
            "requests_per_msg_model": req_model,
            "bytes_per_msg_model": req_model * (size + NOTIFY_FRAMING_BYTES),
            "requests_per_msg_all_providers": float(max(0, r.providers - 1)),
            "planned_per_msg_model": float(t.mean()) if len(t) else math.nan,
            "stream_load": stream_load(scenario, r.room),
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
