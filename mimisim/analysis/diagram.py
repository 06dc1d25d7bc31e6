"""Message sequence charts drawn from a trace (``mimisim diagram``).

The draft explains MIMI with sequence figures: one lane per client and per
provider, an arrow per message, wavy arrows for a provider talking to its own
clients and straight ones for the MIMI protocol between providers. This
module draws the same kind of figure from what a run actually did, so a
reader can put a simulated flow beside the draft's figure and compare, and
see what faults (drops, duplicates, retries, crashes, partitions, failover)
did to it.

Why one module of ~1,400 lines: the layout model (lanes, arrows paired from
send to receipt, notes, shaded periods) and its three renderers (SVG, text,
HTML) share one set of small helpers and label rules; the explorer page
(:mod:`mimisim.explore`) is apart.

Two steps, kept apart so every renderer draws the same thing:

1. :func:`build` turns the trace into a :class:`Diagram`, a layout model of
   lanes, arrows, notes and shaded periods with their simulated times (no
   coordinates);
2. :func:`layout` gives every time a vertical position (``scaled``:
   proportional to simulated time, long idle gaps cut and marked;
   ``compressed``: one row per event in trace order, the way the draft's
   figures read), and the renderers draw it: :func:`to_svg` (for papers),
   :func:`to_text` (close to the draft's ASCII figures, for terminals and
   docs); the HTML page is :mod:`mimisim.explore`'s, one layer up.

The SVG is written directly, as text, rather than through matplotlib: the
output is then byte-identical for the same trace (matplotlib's SVG embeds a
date and random ids unless told otherwise), small, its text stays text, and
every arrow is an SVG group carrying the event's fields as data attributes,
which the explorer page uses for its filters, zoom and click-to-inspect.

**Reading the trace.** Arrows are pairs of ``net.send`` and ``net.deliver``
rows. Between providers ``req_id`` numbers each HTTP attempt, so a request and
its response pair exactly (a duplicated request is served twice: its
responses pair one by one). The client links (reliable streams) carry no link
id, so a send is paired with the first unpaired receipt of the same
(sender, receiver, item, msg_id) in order, and a provider's ``reply`` to a
client with that client's oldest unanswered request. What a message *is*
(``Commit(+bob)``, ``Welcome``, ``Proposals(Remove*, AppSync)``,
``PrivateMessage``) comes from the ``client.commit``, ``client.propose``,
``client.submit``, ``hub.accept`` and ``hub.fanout`` rows of the same
``msg_id``, read from the typed columns of :mod:`mimisim.events` (method,
path, stream_item, response, reason, operation, added, removed, message,
role_changes, proposal_types, committer, attempt), and the scripted steps
from ``workload.action``'s ``step``. ``detail`` is only ever shown, never
parsed; a trace written before the typed columns existed is refused with a
one-line :class:`DiagramError` (re-run the scenario).
"""

from __future__ import annotations

import html
import json
import math
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

LaneMode = Literal["clients", "providers", "both"]
TimeMode = Literal["scaled", "compressed"]

# Notes shown unless --kinds says otherwise: the hub's decisions and what
# faults did; client.epoch and notify.accept are available but noisy.
DEFAULT_NOTE_KINDS = (
    "hub.accept", "hub.reject", "hub.lost", "notify.dedup", "http.timeout", "http.giveup",
    "client.retry", "client.fail", "client.gap", "client.error", "client.drop",
    "provider.reject",
)
QUIET_DROPS = ("ownEcho", "stale")  # client.drop statuses that are routine, not worth a note


class DiagramError(ValueError):
    """Bad input to the diagram (no trace, unknown room, empty window)."""


# ====================================================================== model


@dataclass(frozen=True)
class Lane:
    key: str          # the trace's node name: a domain or a client URI
    label: str        # ClientA1, a.example
    provider: str     # the domain the lane belongs to
    is_client: bool
    hub: bool = False  # hosts (one of) the rooms shown


@dataclass
class Arrow:
    src: str
    dst: str
    t_send: float
    t_recv: float | None      # None: never arrived (dropped or lost)
    label: str
    kind: str                 # net.deliver | net.drop | net.duplicate (the trace kind it stands for)
    mimi: bool                # between providers (the MIMI protocol) or inside a provider
    seq: int                  # the send row's seq (orders arrows like the trace)
    room: str = ""
    epoch: int = -1
    msg_id: str = ""
    req_id: int = -1
    retry: int = 0            # attempt number when > 1
    retransmitted: bool = False  # a stream message that was lost and sent again
    drop_reason: str = ""
    summary: str = ""         # decoded body summary (what the message carries)
    fields: dict[str, Any] = field(default_factory=dict)  # the trace rows it comes from


@dataclass
class Note:
    lane: str
    t: float
    text: str
    kind: str
    seq: int
    room: str = ""
    epoch: int = -1
    msg_id: str = ""
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class Period:
    kind: str                 # crash | partition | offline | degrade
    t0: float
    t1: float
    lanes: tuple[str, ...]    # empty: the whole width
    label: str
    seq: int = 0


@dataclass
class LaneChange:
    """A failover: from ``t`` on, the lane is served by the standby."""

    lane: str
    t: float
    label: str
    seq: int = 0


@dataclass
class Diagram:
    lanes: list[Lane]
    arrows: list[Arrow]
    notes: list[Note]
    periods: list[Period]
    changes: list[LaneChange]
    t0: float
    t1: float
    title: str = ""

    def lane_index(self) -> dict[str, int]:
        return {ln.key: i for i, ln in enumerate(self.lanes)}

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title, "t0": self.t0, "t1": self.t1,
            "lanes": [asdict(x) for x in self.lanes], "arrows": [asdict(x) for x in self.arrows],
            "notes": [asdict(x) for x in self.notes], "periods": [asdict(x) for x in self.periods],
            "changes": [asdict(x) for x in self.changes],
        }


# ====================================================================== reading the trace


def load_trace(path: str | Path) -> tuple[pd.DataFrame, Path | None]:
    """A trace from a results folder (``trace.parquet`` inside) or a trace file
    (Parquet or CSV); returns it and the results folder, if there is one."""
    p = Path(path)
    if p.is_dir():
        f = p / "trace.parquet"
        if not f.is_file():
            seeds = sorted(d.name for d in p.glob("seed-*") if (d / "trace.parquet").is_file())
            if len(seeds) == 1:  # a one-seed run: its only trace is what the user means
                return pd.read_parquet(p / seeds[0] / "trace.parquet"), p / seeds[0]
            if seeds:
                raise DiagramError(f"{p}: no trace.parquet here; this folder holds runs, pick one: "
                                   + ", ".join(str(p / s) for s in seeds[:5]) + (" ..." if len(seeds) > 5 else ""))
            raise DiagramError(f"{p}: no trace.parquet in this folder (a results folder from `mimisim run`)")
        return pd.read_parquet(f), p
    if not p.is_file():
        raise DiagramError(f"{p}: no such file or folder")
    if p.suffix == ".csv":
        return pd.read_csv(p, keep_default_na=False), None
    try:
        return pd.read_parquet(p), (p.parent if (p.parent / "manifest.json").is_file() else None)
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise DiagramError(f"{p}: not a trace (Parquet or CSV): {e}") from None


def _is_client(node: str) -> bool:
    return node.startswith("mimi://")


def _domain(node: str) -> str:
    if _is_client(node):
        return node[len("mimi://"):].split("/", 1)[0]
    return node


def _short(uri: str) -> str:
    """mimi://b.example/d/bob/ClientB1 -> ClientB1; mimi://b.example/u/bob -> bob."""
    return uri.rstrip("/").rsplit("/", 1)[-1] if uri else uri


_PROPOSAL_NAMES = {"app_data_update": "AppSync", "remove": "Remove", "add": "Add", "update": "Update",
                   "self_remove": "SelfRemove", "external_init": "ExternalInit", "psk": "PSK"}


_UNTYPED = ("this trace has no typed columns (it was written before mimisim.events): "
            "re-run the scenario to draw it")


def _typed(r: Any, name: str) -> Any:
    """A typed column's value in a row, None when the trace has no such column or a null there."""
    v = getattr(r, name, None)
    if v is None:
        return None
    if hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, list | tuple | dict):
        return v
    return None if pd.isna(v) else v


def _fields(kind: str, r: Any) -> dict[str, Any]:
    """The facts an element's label needs, from the typed columns of
    :mod:`mimisim.events` (never from ``detail``)."""
    out: dict[str, Any] = {}
    method, path = _typed(r, "method"), _typed(r, "path")
    if method and path:
        out["method"], out["endpoint"] = method, "/" + str(path).strip("/").split("/", 1)[0]
    attempt = _typed(r, "attempt")
    if attempt is not None:
        out["attempt"] = int(attempt)
    if kind == "client.commit":
        op = _typed(r, "operation")
        if op:
            out["operation"] = "join" if _typed(r, "external") and op != "resync" else op
        for c in ("added", "removed"):
            if _typed(r, c) is not None:
                out[c] = int(_typed(r, c))
    elif kind == "hub.accept":
        what = _typed(r, "message")
        if what:
            out["what"] = {"proposal": "proposals", "hub_remove": "proposals", "group_info": "groupInfo"}.get(
                what, what)
        for c in ("epoch_from", "epoch_to"):
            if _typed(r, c) is not None:
                out[c] = int(_typed(r, c))
        if _typed(r, "external") is not None:
            out["external"] = bool(_typed(r, "external"))
        ch = _typed(r, "role_changes")
        if ch is not None:
            out["changes"] = [(c["user"], int(c["old"]), int(c["new"])) if isinstance(c, dict) else
                              (str(c[0]), int(c[1]), int(c[2])) for c in ch]
        for c in ("committer", "role"):
            if _typed(r, c) is not None:
                out[c] = _typed(r, c)
        pt = _typed(r, "proposal_types")
        if pt is not None:
            out["proposals"] = [str(x) for x in pt]
    elif kind == "client.retry" and _typed(r, "max_attempts") is not None:
        out["max_attempts"] = int(_typed(r, "max_attempts"))
    return out


def _item(r: Any) -> str:
    """What a client-link row carries (update, submit_message, reply, deliver, ...)."""
    v = _typed(r, "stream_item")
    if v is None:
        v = _typed(r, "request")  # client.send
    return str(v) if v is not None else str(r.detail)


def _is_response(r: Any) -> bool:
    v = _typed(r, "response")
    return bool(v)


def _request_line(r: Any) -> str:
    """``POST /notify/a.example/r/clubhouse``: the request an HTTP row belongs to."""
    method, path = _typed(r, "method"), _typed(r, "path")
    return f"{method} {path}" if method and path else ""


def _drop_reason(r: Any) -> str:
    v = _typed(r, "reason")
    return str(v) if v else (str(r.detail) or "loss")


def _row_fields(r: Any) -> dict[str, Any]:
    """One trace row as plain JSON-able values (what a click in the explorer shows)."""
    out: dict[str, Any] = {}
    for k, v in r._asdict().items():
        if k == "Index":
            continue
        if hasattr(v, "tolist"):  # numpy scalars and arrays (list columns)
            v = v.tolist()
        if isinstance(v, list | tuple | dict):
            if not v:
                continue
        elif v is None or pd.isna(v) or v == "" or (isinstance(v, int) and v == -1 and k != "seq"):
            continue
        out[k] = v
    return out


@dataclass
class _Msg:
    """What one msg_id is, gathered from every row that names it."""

    what: str = ""            # commit | welcome | application | proposals
    op: str = ""              # the commit's operation (add_user, commit_pending, join, ...)
    user: str = ""            # the user added / removed by name (client.commit peer)
    added: int = 0
    removed: int = 0
    changes: list[tuple[str, int, int]] = field(default_factory=list)
    proposals: list[str] = field(default_factory=list)
    origin: str = ""          # the client that made it
    t_origin: float = math.nan
    room: str = ""
    epoch: int = -1
    commit_of_welcome: str = ""

    def label(self) -> str:
        if self.what == "welcome":
            return "Welcome"
        if self.what == "application":
            return "PrivateMessage"
        if self.what == "proposals":
            names = [_PROPOSAL_NAMES.get(p, p) for p in self.proposals]
            parts: list[str] = []
            for n in names:
                if n not in parts:
                    parts.append(n)
            return "Proposals(" + ", ".join(p + ("*" if names.count(p) > 1 else "") for p in parts) + ")" \
                if parts else "Proposals"
        if self.what == "commit":
            if self.op == "join":
                return "External Commit"
            plus = [_short(u) for u, a, b in self.changes if a == 0 and b > 0]
            minus = [_short(u) for u, a, b in self.changes if a > 0 and b == 0]
            if not self.changes and self.user:
                if self.op == "add_user":
                    plus = [_short(self.user)]
                elif self.op == "remove_user":
                    minus = [_short(self.user)]
            inside = [f"+{u}" for u in plus] + [f"-{u}" for u in minus]
            if self.op == "commit_pending":
                inside = ["Props", *inside]
            elif self.op == "update" or (not inside and not self.added and not self.removed):
                inside = inside or ["Update"]
            elif not inside:
                inside = [f"+{self.added}" if self.added else "", f"-{self.removed}" if self.removed else ""]
                inside = [x for x in inside if x]
            return "Commit(" + ", ".join(inside) + ")"
        return ""


def _messages(rows: pd.DataFrame) -> dict[str, _Msg]:
    msgs: dict[str, _Msg] = defaultdict(_Msg)
    fanout_at: dict[tuple[str, float], list[str]] = defaultdict(list)
    for r in rows.itertuples(index=False):
        mid = r.msg_id
        if not mid:
            continue
        m = msgs[mid]
        if r.room and not m.room:
            m.room = r.room
        if r.kind == "client.commit":
            f = _fields(r.kind, r)
            m.what, m.op = "commit", f.get("operation", "")
            m.added, m.removed = f.get("added", 0), f.get("removed", 0)
            m.user = r.peer if r.peer and "/u/" in r.peer else ""
            m.origin, m.t_origin, m.epoch = r.node, r.t_ms, int(r.epoch)
        elif r.kind == "client.propose":
            m.what = "proposals"
            m.origin, m.t_origin, m.epoch = r.node, r.t_ms, int(r.epoch)
        elif r.kind == "client.submit":
            m.what = "application"
            if not m.origin:
                m.origin, m.t_origin, m.epoch = r.node, r.t_ms, int(r.epoch)
        elif r.kind == "hub.accept":
            f = _fields(r.kind, r)
            what = f.get("what", "")
            if what in ("commit", "application", "proposals"):
                m.what = what
            if what == "commit":
                m.changes = f.get("changes", [])
                if f.get("external"):
                    m.op = "join"
            if what == "proposals":
                m.proposals = f.get("proposals", [])
            if m.epoch < 0:
                m.epoch = int(r.epoch)
        elif r.kind == "hub.fanout":
            fanout_at[(r.node, r.t_ms)].append(mid)
    # A msg_id the hub fans out that is neither a commit nor an application
    # message nor proposals is the Welcome of the commit fanned out with it.
    for (_node, _t), mids in fanout_at.items():
        commits = [x for x in mids if msgs[x].what == "commit"]
        for x in mids:
            if not msgs[x].what:
                msgs[x].what = "welcome"
                if commits:
                    c = msgs[commits[0]]
                    msgs[x].commit_of_welcome = commits[0]
                    msgs[x].origin, msgs[x].t_origin = c.origin, c.t_origin
                    msgs[x].room, msgs[x].epoch = msgs[x].room or c.room, c.epoch
    return msgs


_CLIENT_OPS = {
    "upload_key_packages": "Store KPs", "create_room": "Create room", "fetch_key_material": "Request KPs",
    "fetch_group_info": "Fetch GroupInfo", "left_room": "Left room", "submit_message": "PrivateMessage",
}
_REPLIES = {
    "upload_key_packages": "stored", "create_room": "created", "fetch_key_material": "KPs",
    "fetch_group_info": "GroupInfo + tree", "left_room": "ok", "submit_message": "Accepted",
    "update": "Accepted",
}


# a client request its provider relays to the hub as this endpoint
_RELAYED = {"update": "/update", "submit_message": "/submitMessage", "fetch_key_material": "/keyMaterial",
            "fetch_group_info": "/groupInfo"}


def _status_label(status: str) -> str:
    return {"Created": "201 Created", "OK": "200 OK"}.get(status, status)


# ====================================================================== building


def parse_time(text: str | float | None) -> float | None:
    """``--from`` / ``--to``: milliseconds, or a duration with a unit (``2s``)."""
    if text is None or text == "":
        return None
    if isinstance(text, int | float):
        return float(text)
    from mimisim.sim.units import UnitError, parse_duration

    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_duration(text)
    except UnitError as e:
        raise DiagramError(f"bad time {text!r}: {e}") from None


def _room_matches(room: str, want: str) -> bool:
    return room == want or (bool(room) and _short(room) == want)


def build(
    trace: pd.DataFrame,
    *,
    room: str | None = None,
    t_from: float | None = None,
    t_to: float | None = None,
    kinds: Sequence[str] | None = None,
    lanes: LaneMode = "both",
    nodes: Sequence[str] | None = None,
    title: str = "",
    collapse: bool = False,
) -> Diagram:
    """The layout model of a trace, or of the part of it selected.

    ``room``: a room URI or its last path segment (``clubhouse``); elements
    that belong to no room (KeyPackage uploads, key material fetches) are
    kept. ``kinds``: trace kinds or prefixes to show (``net`` for every
    arrow, ``net.drop`` for drops only, ``hub.accept`` ...); default: every
    arrow and the notes in :data:`DEFAULT_NOTE_KINDS`. ``lanes``: ``both``
    (clients and providers), ``providers`` (the MIMI protocol only) or
    ``clients`` (end to end: one arrow from the client that made a message to
    each client that processed it). ``collapse``: one lane per user's
    clients (``ClientB*``, as the draft's figures draw them), identical
    arrows to several of them drawn once."""
    need = {"t_ms", "seq", "kind", "node", "peer", "room", "epoch", "msg_id", "req_id", "status", "detail"}
    missing = need - set(trace.columns)
    if missing:
        raise DiagramError(f"not a mimisim trace: missing columns {sorted(missing)}")
    if "method" not in trace.columns:
        raise DiagramError(_UNTYPED)
    if lanes not in ("clients", "providers", "both"):
        raise DiagramError(f"--lanes must be clients, providers or both, not {lanes!r}")
    if kinds is not None:
        from mimisim.sim.trace import KINDS

        unknown = [x for x in kinds if not any(k == x or k.startswith(x.rstrip(".") + ".") for k in KINDS)]
        if unknown:
            families = sorted({k.split(".")[0] for k in KINDS})
            raise DiagramError(f"--kinds: no trace kind is or starts with {', '.join(map(repr, unknown))} "
                               f"(families: {', '.join(families)}; every kind: docs/trace.md)")
    tr = trace.sort_values("seq", kind="stable").reset_index(drop=True)
    tr = tr.assign(**{c: tr[c].astype(object).where(tr[c].notna(), "").astype(str)
                      for c in ("room", "msg_id", "detail", "status", "peer", "node")},
                   **{c: tr[c].astype("Float64").fillna(-1).astype("int64")
                      for c in ("epoch", "req_id", "bytes") if c in tr.columns})
    if room is not None:
        rooms = sorted({r for r in tr.room.unique() if r})
        if not any(_room_matches(r, room) for r in rooms):
            raise DiagramError(f"no room {room!r} in this trace (rooms: {', '.join(rooms) or 'none'})")
    msgs = _messages(tr)
    arrows, notes, periods, changes = _elements(tr, msgs)
    if lanes == "clients":
        arrows = _end_to_end(tr, msgs)
        notes = [n for n in notes if _is_client(n.lane)]
    if collapse:
        arrows, notes = _collapse(arrows, notes)

    def keep_kind(k: str, default: bool) -> bool:
        if kinds is None:
            return default
        return any(k.startswith(x) for x in kinds)

    lo = -math.inf if t_from is None else t_from
    hi = math.inf if t_to is None else t_to

    def in_window(t0: float, t1: float | None) -> bool:
        return t0 <= hi and (t1 if t1 is not None else t0) >= lo

    def in_room(r: str) -> bool:
        return room is None or not r or _room_matches(r, room)

    node_set = set(nodes) if nodes else None

    def keep_lane(k: str) -> bool:
        return lanes == "both" or (lanes == "clients") == _is_client(k)

    arrows = [a for a in arrows if keep_kind(a.kind, True) and in_window(a.t_send, a.t_recv) and in_room(a.room)
              and keep_lane(a.src) and keep_lane(a.dst)
              and (node_set is None or a.src in node_set or a.dst in node_set)]
    notes = [n for n in notes if keep_kind(n.kind, n.kind in DEFAULT_NOTE_KINDS) and lo <= n.t <= hi
             and in_room(n.room) and keep_lane(n.lane) and (node_set is None or n.lane in node_set)]
    if not arrows and not notes:
        raise DiagramError("nothing to draw: no message or note matches the room, time window and kinds given")
    periods = [p for p in periods if keep_kind("fault", True) and p.t0 <= hi and p.t1 >= lo]
    changes = [c for c in changes if lo <= c.t <= hi]
    used: set[str] = set()
    for a in arrows:
        used |= {a.src, a.dst}
    used |= {n.lane for n in notes}
    if lanes != "clients":
        used |= {c.lane for c in changes} | {x for p in periods for x in p.lanes if not _is_client(x)}
    used = {u for u in used if keep_lane(u)}
    hubs = {_domain(r) for r in tr.room.unique() if r and in_room(r)}
    lane_list = _order_lanes(used, arrows, notes, hubs,
                             clients={n for n in tr.node.unique() if _is_client(n)} if collapse else ())
    periods = [Period(p.kind, p.t0, p.t1, tuple(x for x in p.lanes if x in used), p.label, p.seq)
               for p in periods if not p.lanes or any(x in used for x in p.lanes)]
    times = [a.t_send for a in arrows] + [a.t_recv for a in arrows if a.t_recv is not None] + [n.t for n in notes]
    t0 = max(lo, min(times)) if times else 0.0
    t1 = min(hi, max(times)) if times else 0.0
    return Diagram(lane_list, arrows, notes, periods, [c for c in changes if c.lane in used], t0, t1, title)


def _collapse(arrows: list[Arrow], notes: list[Note]) -> tuple[list[Arrow], list[Note]]:
    """Every client of a user on one lane (``mimi://b.example/d/bob/*``); arrows
    and notes that become identical are kept once."""
    def key(n: str) -> str:
        if not _is_client(n):
            return n
        parts = n.split("/")
        return "/".join(parts[:-1] + ["*"]) if len(parts) >= 6 else n

    out: list[Arrow] = []
    seen: set[tuple[Any, ...]] = set()
    for a in arrows:
        a.src, a.dst = key(a.src), key(a.dst)
        k = (a.src, a.dst, a.label, a.kind, a.t_send, a.t_recv)
        if k not in seen:
            seen.add(k)
            out.append(a)
    kept: list[Note] = []
    seen_n: set[tuple[Any, ...]] = set()
    for nt in notes:
        nt.lane = key(nt.lane)
        kn = (nt.lane, nt.text, nt.t)
        if kn not in seen_n:
            seen_n.add(kn)
            kept.append(nt)
    return out, kept


def _lane_label(key: str, tr_clients: Iterable[str]) -> str:
    """ClientB1 for a client; for a collapsed lane the common prefix of its clients' names and ``*``."""
    if not key.endswith("/*"):
        return _short(key)
    names = sorted(_short(c) for c in tr_clients if c.startswith(key[:-1]))
    prefix = names[0] if names else ""
    for n in names[1:]:
        while not n.startswith(prefix):
            prefix = prefix[:-1]
    return (prefix.rstrip("0123456789") or _short(key[:-2])) + "*"


def _order_lanes(used: set[str], arrows: list[Arrow], notes: list[Note], hubs: set[str],
                 clients: Iterable[str] = ()) -> list[Lane]:
    """Lanes grouped by provider as the draft's figures are: the provider
    whose client acts first comes first, with its clients on its left; every
    other provider follows in order of appearance, its clients on its right."""
    all_clients = sorted(set(clients))
    first: dict[str, int] = {}
    client_first: dict[str, int] = {}
    order = 0
    for a in sorted(arrows, key=lambda a: (a.t_send, a.seq)):
        for n in (a.src, a.dst):
            order += 1
            first.setdefault(_domain(n), order)
            if _is_client(n):
                client_first.setdefault(n, order)
    for nt in sorted(notes, key=lambda n: n.seq):
        order += 1
        first.setdefault(_domain(nt.lane), order)
    provs = sorted({_domain(u) for u in used}, key=lambda d: (first.get(d, 10**9), d))
    out: list[Lane] = []
    for i, d in enumerate(provs):
        clients = sorted((u for u in used if _is_client(u) and _domain(u) == d),
                         key=lambda c: (client_first.get(c, 10**9), c))
        cl = [Lane(c, _lane_label(c, all_clients), d, True) for c in clients]
        server = [Lane(d, d, d, False, d in hubs)] if d in used else []
        out += (cl + server) if i == 0 else (server + cl)
    return out


def _elements(tr: pd.DataFrame, msgs: dict[str, _Msg]) -> tuple[list[Arrow], list[Note], list[Period], list[LaneChange]]:
    arrows: list[Arrow] = []
    notes: list[Note] = []
    periods: list[Period] = []
    changes: list[LaneChange] = []
    http: dict[tuple[int, str], Arrow] = {}          # (req_id, req|resp) -> arrow
    stream: dict[tuple[str, str, str, str], deque[Arrow]] = defaultdict(deque)   # in flight
    last_stream: dict[tuple[str, str], Arrow] = {}   # the last stream message sent on a link
    in_flight: dict[tuple[str, str], list[Arrow]] = defaultdict(list)  # every stream message per link
    relay: dict[tuple[str, str], deque[str]] = defaultdict(deque)  # (provider, endpoint) -> client msg ids
    responses: dict[int, list[Arrow]] = defaultdict(list)  # every response sent to one request
    notify_content: dict[tuple[str, str, str], list[str]] = {}  # (hub, follower, first msg id) -> msg ids
    relayed: dict[tuple[str, str, str], str] = {}  # (provider, peer, request) -> msg id, for its retries
    pending_content: dict[str, str] = {}             # client -> msg_id of its last commit/proposals/submit
    client_req: dict[tuple[str, float, str], tuple[int, str]] = {}  # client.send: (node, t, op) -> (req_id, room)
    outstanding: dict[str, deque[tuple[str, str, str]]] = defaultdict(deque)  # client -> (op, room, msg_id)
    retry_of: dict[int, int] = {}                    # req_id -> attempt
    notify_msgs: dict[tuple[str, str, float], list[str]] = defaultdict(list)  # (node, peer, t) -> fanout msg ids
    delivered_at: dict[tuple[str, str, float], Arrow] = {}  # http request arrows by (src, dst, t_recv)
    open_crash: dict[str, tuple[float, int, str]] = {}
    open_window: dict[tuple[str, str], tuple[float, int, str, tuple[str, ...]]] = {}
    t_end = float(tr.t_ms.max()) if len(tr) else 0.0

    def msg_label(mid: str) -> str:
        m = msgs.get(mid)
        return m.label() if m is not None else ""

    for pos, r in enumerate(tr.itertuples(index=False)):
        k = r.kind
        if k == "client.send":
            client_req[(r.node, r.t_ms, _item(r))] = (int(r.req_id), r.room)
        elif k in ("client.commit", "client.propose", "client.submit"):
            pending_content[r.node] = r.msg_id
        elif k == "http.retry":
            retry_of[int(r.req_id)] = _fields(k, r).get("attempt", 2)
        elif k == "hub.fanout":
            notify_msgs[(r.node, r.peer, r.t_ms)].append(r.msg_id)
        if k == "net.send":
            rid = int(r.req_id)
            if rid >= 0 and not _is_client(r.node) and not _is_client(r.peer):
                resp = _is_response(r)
                f = _fields(k, r)
                if resp:
                    req = http.get((rid, "req"))
                    label = _status_label(r.status) or "response"
                    a = Arrow(r.node, r.peer, r.t_ms, None, label, "net.drop", True, int(r.seq),
                              room=req.room if req else "", msg_id=r.msg_id, req_id=rid,
                              retry=req.retry if req else 0, summary=f"response to {req.label if req else '?'}",
                              fields={"send": _row_fields(r)})
                    http[(rid, "resp")] = a
                    responses[rid].append(a)
                else:
                    ep = f.get("endpoint", _request_line(r))
                    mids = notify_msgs.get((r.node, r.peer, r.t_ms), [])
                    if r.msg_id in mids:
                        notify_content[(r.node, r.peer, r.msg_id)] = mids
                    else:  # a retry carries what the first attempt carried
                        mids = notify_content.get((r.node, r.peer, r.msg_id), [r.msg_id] if r.msg_id else [])
                    if not mids:
                        # a provider relaying its client's request: the content is what the client sent
                        again = relayed.get((r.node, r.peer, _request_line(r)))
                        if rid in retry_of and again is not None:
                            mids = [again]
                        elif relay[(r.node, ep)]:
                            mids = [relay[(r.node, ep)].popleft()]
                            relayed[(r.node, r.peer, _request_line(r))] = mids[0]
                        mids = [m for m in mids if m]
                    content = ", ".join(x for x in (msg_label(m) for m in mids) if x)
                    rm = next((msgs[m].room for m in mids if m in msgs and msgs[m].room), "")
                    if not rm:
                        path = _request_line(r).split(" ", 1)[-1]
                        parts = path.strip("/").split("/")
                        if len(parts) >= 4 and parts[2] == "r":
                            rm = f"mimi://{parts[1]}/r/{parts[3]}"
                    a = Arrow(r.node, r.peer, r.t_ms, None, ep + (f" {content}" if content else ""), "net.drop",
                              True, int(r.seq), room=rm, msg_id=r.msg_id, req_id=rid, retry=retry_of.get(rid, 0),
                              epoch=msgs[r.msg_id].epoch if r.msg_id in msgs else -1,
                              summary=_request_line(r) + (f" carrying {content}" if content else ""),
                              fields={"send": _row_fields(r)})
                    http[(rid, "req")] = a
                arrows.append(a)
            else:
                a = _stream_arrow(r, msgs, pending_content, client_req, outstanding)
                arrows.append(a)
                stream[(r.node, r.peer, _item(r), r.msg_id)].append(a)
                in_flight[(r.node, r.peer)].append(a)
                last_stream[(r.node, r.peer)] = a
        elif k in ("net.deliver", "net.duplicate"):
            rid = int(r.req_id)
            if rid >= 0 and not _is_client(r.node) and not _is_client(r.peer):
                key = (rid, "resp" if _is_response(r) else "req")
                a0 = http.get(key)
                if key[1] == "resp":
                    # a duplicated request is served twice: one response per copy, in order
                    waiting = [x for x in responses[rid] if x.t_recv is None and not x.drop_reason]
                    if k == "net.deliver" and waiting:
                        a0 = waiting[0]
                    elif k == "net.duplicate":
                        a0 = next((x for x in reversed(responses[rid]) if x.t_recv is not None), a0)
                if a0 is None:
                    continue
                if k == "net.deliver" and a0.t_recv is None:
                    a0.t_recv, a0.kind = r.t_ms, "net.deliver"
                    a0.fields["receive"] = _row_fields(r)
                    if key[1] == "req":
                        delivered_at[(a0.src, a0.dst, r.t_ms)] = a0
                else:
                    dup = Arrow(a0.src, a0.dst, a0.t_send, r.t_ms, a0.label + " (dup)", "net.duplicate", True,
                                a0.seq, room=a0.room, epoch=a0.epoch, msg_id=a0.msg_id, req_id=rid,
                                retry=a0.retry, summary="a second copy made by the link: " + a0.summary,
                                fields={"send": a0.fields.get("send", {}), "receive": _row_fields(r)})
                    arrows.append(dup)
            else:
                q = stream.get((r.peer, r.node, _item(r), r.msg_id))
                if q:
                    a0 = q.popleft()
                    in_flight[(a0.src, a0.dst)].remove(a0)
                    a0.t_recv, a0.kind = r.t_ms, "net.deliver"
                    a0.fields["receive"] = _row_fields(r)
                    ep = _RELAYED.get(_item(r))
                    if ep and _is_client(r.peer):
                        relay[(r.node, ep)].append(a0.msg_id)
                    if _item(r) == "reply" and _is_client(r.node):
                        _reply_outcome(a0, tr, pos)
        elif k == "net.drop":
            rid = int(r.req_id)
            reason = _drop_reason(r)
            if rid >= 0 and not _is_client(r.node) and not _is_client(r.peer):
                resp_a = http.get((rid, "resp"))
                a0 = resp_a if resp_a is not None and resp_a.src == r.node else http.get((rid, "req"))
                if a0 is not None:
                    a0.drop_reason = reason
                    a0.fields["drop"] = _row_fields(r)
            elif not _is_client(r.node) and not _is_client(r.peer) and reason == "crashed":
                # a request that reached a crashed provider: it was never served
                a0 = delivered_at.get((r.node, r.peer, r.t_ms))
                if a0 is not None:
                    a0.kind, a0.drop_reason = "net.drop", "crashed"
                    a0.fields["drop"] = _row_fields(r)
            else:
                # a client link lost one transmission of a stream message; it is sent again
                size = int(r.bytes) if hasattr(r, "bytes") else -1
                target = next((x for x in in_flight[(r.node, r.peer)]
                               if x.t_recv is None and x.fields["send"].get("msg_id", "") == r.msg_id
                               and x.fields["send"].get("bytes", -1) == size), last_stream.get((r.node, r.peer)))
                if target is not None:
                    target.retransmitted = True
                stub = Arrow(r.node, r.peer, r.t_ms, None, "(lost)", "net.drop", False, int(r.seq),
                             room=target.room if target else "", msg_id=r.msg_id, drop_reason=reason,
                             summary=f"one transmission of {target.label if target else 'a message'} lost ({reason}); "
                                     "the connection sends it again",
                             fields={"drop": _row_fields(r)})
                arrows.append(stub)
        elif k in ("hub.accept", "hub.reject", "hub.lost", "notify.dedup", "notify.accept", "http.timeout",
                   "http.giveup", "provider.reject") or (k.startswith("client.") and k not in (
                       "client.send", "client.submit", "client.commit", "client.propose")):
            if k == "client.drop" and r.status in QUIET_DROPS:
                continue
            text = _note_text(r, msgs)
            if text:
                notes.append(Note(r.node, r.t_ms, text, k, int(r.seq), room=r.room or (
                    msgs[r.msg_id].room if r.msg_id in msgs else ""), epoch=int(r.epoch), msg_id=r.msg_id,
                    fields=_row_fields(r)))
        elif k == "fault.crash":
            open_crash[r.node] = (r.t_ms, int(r.seq), f"{r.node} down ({r.status or 'crash'})")
        elif k == "fault.restart":
            s = open_crash.pop(r.node, None)
            if s is not None:
                periods.append(Period("crash", s[0], r.t_ms, (r.node,), s[2], s[1]))
        elif k == "fault.failover":
            changes.append(LaneChange(r.node, r.t_ms, f"standby takes over {r.node}", int(r.seq)))
        elif k in ("fault.partition", "fault.offline", "fault.degrade"):
            kind = k.split(".")[1]
            # shown, not parsed: the fault's description without its id and kind, which the period's style shows
            desc = str(r.detail).removeprefix(f"{_typed(r, 'fault_id')} {_typed(r, 'fault_kind')} ") or kind
            key2 = (kind, str(_typed(r, "fault_id") or r.detail))
            if r.status == "start":
                lanes_: tuple[str, ...] = (r.node,) if r.node and kind == "offline" else ()
                open_window[key2] = (r.t_ms, int(r.seq), desc, lanes_)
            elif r.status == "end" and key2 in open_window:
                t0, s0, d0, l0 = open_window.pop(key2)
                periods.append(Period(kind, t0, r.t_ms, l0, d0, s0))
    for node, (t0, s0, lab) in open_crash.items():
        periods.append(Period("crash", t0, t_end, (node,), lab, s0))
    for (kind, _d), (t0, s0, d0, l0) in open_window.items():
        periods.append(Period(kind, t0, t_end, l0, d0, s0))
    for a in arrows:
        if a.t_recv is None and not a.drop_reason and a.kind == "net.drop":
            a.drop_reason = "never arrived"
        if a.retry > 1:
            a.label = f"{a.label} (retry {a.retry})"
        if a.retransmitted and a.t_recv is not None:
            a.label = f"{a.label} (resent)"
    periods.sort(key=lambda p: (p.t0, p.seq))
    return arrows, notes, periods, changes


def _stream_arrow(r: Any, msgs: dict[str, _Msg], pending: dict[str, str],
                  client_req: dict[tuple[str, float, str], tuple[int, str]],
                  outstanding: dict[str, deque[tuple[str, str, str]]]) -> Arrow:
    """An arrow between a client and its provider (draft: [[ double brackets ]])."""
    src, dst, op = r.node, r.peer, _item(r)
    room, mid, summary = "", r.msg_id, ""
    if _is_client(src):
        rid, room = client_req.get((src, r.t_ms, op), (-1, ""))
        content = ""
        if op in ("update", "submit_message"):
            cm = pending.get(src, "")
            if cm in msgs and msgs[cm].t_origin == r.t_ms:
                mid = cm
                content = msgs[cm].label()
                room = room or msgs[cm].room
        label = content or _CLIENT_OPS.get(op, op)
        outstanding[src].append((op, room, mid))
        summary = f"{op} request" + (f": {content}" if content else "")
        epoch = msgs[mid].epoch if mid in msgs else -1
        return Arrow(src, dst, r.t_ms, None, label, "net.drop", False, int(r.seq), room=room, epoch=epoch,
                     msg_id=mid, req_id=rid, summary=summary, fields={"send": _row_fields(r)})
    if op == "deliver":
        m = msgs.get(mid)
        label = m.label() if m is not None and m.label() else "message"
        return Arrow(src, dst, r.t_ms, None, label, "net.drop", False, int(r.seq),
                     room=m.room if m else "", epoch=m.epoch if m else -1, msg_id=mid,
                     summary=f"the provider delivers {label}", fields={"send": _row_fields(r)})
    # a reply: to the client's oldest unanswered request
    q = outstanding.get(dst)
    what, room, rmid = q.popleft() if q else ("", "", "")
    label = _REPLIES.get(what, "reply")
    return Arrow(src, dst, r.t_ms, None, label, "net.drop", False, int(r.seq), room=room, msg_id=rmid,
                 summary=f"reply to {what or 'a request'}", fields={"send": _row_fields(r)})


def _reply_outcome(a: Arrow, tr: pd.DataFrame, pos: int) -> None:
    """What the client did when a reply arrived names the reply's outcome
    (the reply row itself carries no status)."""
    r = tr.iloc[pos]
    for x in tr.iloc[pos + 1: pos + 6].itertuples(index=False):
        if x.node != r.node or x.t_ms != r.t_ms or x.kind.startswith("net."):
            break
        if x.kind == "client.retry":
            a.label = x.status or "wrongEpoch"
            return
        if x.kind == "client.fail":
            a.label = f"refused ({x.status})" if x.status else "refused"
            return


def _note_text(r: Any, msgs: dict[str, _Msg]) -> str:
    k, st = r.kind, r.status
    m = msgs.get(r.msg_id)
    what = m.label() if m is not None else ""
    if k == "hub.accept":
        f = _fields(k, r)
        w = f.get("what", "")
        if w == "commit":
            ep = f"epoch {f['epoch_from']}\u2192{f['epoch_to']}" if "epoch_from" in f else ""
            return f"accepted {what} {ep}".strip()
        if w == "proposals":
            return f"cached {what}"
        if w == "application":
            return f"accepted {what}, franked"
        if w == "groupInfo":
            return "GroupInfo served"
        return f"accepted {st}".strip()
    if k == "hub.reject":
        return f"{st or 'rejected'}: {what or 'message'} of epoch {r.epoch}"
    if k == "hub.lost":
        return f"lost by failover: {what or r.msg_id}"
    if k == "notify.dedup":
        return "duplicate /notify: 201, not processed again"
    if k == "notify.accept":
        return "/notify processed"
    if k == "http.timeout":
        ep = _fields("http.request", r).get("endpoint", "request")
        return f"{ep} timed out"
    if k == "http.giveup":
        return f"gave up: {r.detail}"
    if k == "provider.reject":
        return f"refused: {st}"
    if k == "client.retry":
        f = _fields(k, r)
        n = f.get("attempt")
        return f"retry {n} after {st}" if n else f"retry after {st}"
    if k == "client.epoch":
        return f"epoch {r.epoch}" + (f" ({st})" if st else "")
    if k == "client.drop":
        return f"dropped {what or 'message'}: {st}"
    if k == "client.deliver":
        return "shown to the user"
    if k == "client.join":
        return "joined"
    return f"{k.split('.', 1)[1]}: {st or r.detail[:40]}"


def _end_to_end(tr: pd.DataFrame, msgs: dict[str, _Msg]) -> list[Arrow]:
    """``--lanes clients``: one arrow from the client that made a message to
    each client that processed it (whatever the path through providers)."""
    out: list[Arrow] = []
    for r in tr.itertuples(index=False):
        if r.kind not in ("client.epoch", "client.deliver", "client.drop") or not r.msg_id:
            continue
        m = msgs.get(r.msg_id)
        if m is None or not m.origin or m.origin == r.node:
            continue
        if r.kind == "client.drop" and r.status == "ownEcho":
            continue
        out.append(Arrow(m.origin, r.node, m.t_origin, r.t_ms, m.label() + (
            f" ({r.status})" if r.kind == "client.drop" else ""), "net.deliver", False, int(r.seq),
            room=m.room or r.room, epoch=m.epoch, msg_id=r.msg_id,
            summary=f"{m.label()} from {_short(m.origin)} processed by {_short(r.node)} "
                    f"after {r.t_ms - m.t_origin:g} ms ({r.kind} {r.status})".strip(),
            fields={"receive": _row_fields(r)}))
    return out


# ====================================================================== flows


@dataclass(frozen=True)
class Flow:
    """One scripted step of a scenario: what the workload asked, from when to when."""

    index: int
    action: str
    actor: str
    detail: str
    t0: float
    t1: float


def flows(trace: pd.DataFrame) -> list[Flow]:
    """The scripted steps (``workload.action`` rows with a ``step``), each
    up to the next one or the end of the run."""
    if "step" not in trace.columns:
        raise DiagramError(_UNTYPED)
    rows = trace[(trace.kind == "workload.action") & trace["step"].notna()]
    end = float(trace.t_ms.max())
    out: list[Flow] = []
    items = list(rows.itertuples(index=False))
    for i, r in enumerate(items):
        t1 = float(items[i + 1].t_ms) if i + 1 < len(items) else end
        user = _typed(r, "target_user")
        out.append(Flow(i, str(r.action), str(r.node), _short(str(user)) if user else "", float(r.t_ms), t1 - 1e-6))
    return out


ROLE_NAMES = {-1: "creator, role not seen yet", 0: "no_role", 1: "banned", 2: "ordinary_user", 3: "group_admin", 4: "super_admin"}


def _user_of(client: str) -> str:
    """mimi://a.example/d/alice/ClientA1 -> mimi://a.example/u/alice (the simulator's client URIs)."""
    parts = client[len("mimi://"):].split("/")
    return f"mimi://{parts[0]}/u/{parts[2]}" if len(parts) >= 4 and parts[1] == "d" else client


@dataclass
class RoomState:
    """A room as the trace shows it at one time: the hub's epoch, each member
    client's epoch, and the participant list (user -> role index of
    draft-ietf-mimi-room-policy's default roles, :data:`ROLE_NAMES`)."""

    room: str
    t: float
    epoch: int
    members: dict[str, int]
    participants: dict[str, int]

    def table(self) -> pd.DataFrame:
        rows = [{"user": _short(u), "role": f"{r} ({ROLE_NAMES.get(r, '?')})",
                 "clients (epoch)": ", ".join(f"{_short(c)} ({e})" for c, e in sorted(self.members.items())
                                              if _user_of(c) == u)}
                for u, r in sorted(self.participants.items())]
        return pd.DataFrame(rows, columns=["user", "role", "clients (epoch)"])


def room_state(trace: pd.DataFrame, room: str | None = None, t: float | None = None) -> RoomState:
    """The room's state after time ``t`` (default: the end), from the trace:
    ``client.epoch`` rows give each client's epoch (a ``removed`` row ends
    its membership), the hub's accepted commits give the epoch and the
    participant-list changes (the room's creator is its first committer's
    user, with the role the hub saw)."""
    tr = trace.sort_values("seq", kind="stable")
    if t is not None:
        tr = tr[tr.t_ms <= t]
    rooms = sorted({r for r in trace.room.dropna().unique() if r})
    if room is None:
        if len(rooms) != 1:
            raise DiagramError(f"say which room: {', '.join(rooms) or 'none'}")
        room = rooms[0]
    match = [r for r in rooms if _room_matches(r, room)]
    if not match:
        raise DiagramError(f"no room {room!r} in this trace (rooms: {', '.join(rooms) or 'none'})")
    uri = match[0]
    tr = tr[tr.room == uri]
    members: dict[str, int] = {}
    participants: dict[str, int] = {}
    epoch = -1
    for r in tr.itertuples(index=False):
        if r.kind == "client.epoch":
            if r.status == "removed":
                members.pop(r.node, None)
            else:
                members[r.node] = int(r.epoch)
                if r.status == "created":  # the creator: its role shows in its first commit
                    epoch = max(epoch, int(r.epoch))
                    participants.setdefault(_user_of(r.node), -1)
        elif r.kind == "hub.accept":
            f = _fields(r.kind, r)
            if f.get("what") != "commit":
                continue
            epoch = max(epoch, f.get("epoch_to", int(r.epoch) + 1))
            who = f.get("committer")
            if who and "role" in f and participants.get(_user_of(who), -1) == -1 and not f.get("external"):
                participants[_user_of(who)] = int(f["role"])
            for u, _old, new in f.get("changes", []):
                if new == 0:
                    participants.pop(u, None)
                else:
                    participants[u] = new
    return RoomState(uri, float(tr.t_ms.max()) if t is None and len(tr) else (t or 0.0), epoch, members,
                     participants)


# ====================================================================== layout


@dataclass
class Layout:
    """Vertical positions: ``y(t, seq)`` for every element, plus the cut gaps."""

    mode: TimeMode
    ys: dict[tuple[float, int], float]
    height: float
    breaks: list[tuple[float, float, float]]  # (y, t_before, t_after) of a cut idle gap
    ticks: list[tuple[float, float]]          # (y, t) labelled on the time axis

    def y(self, t: float, seq: int = -1) -> float:
        if (t, seq) in self.ys:
            return self.ys[(t, seq)]
        # the nearest known point at or before (t, seq)
        best = 0.0
        for (tt, ss), yy in self.ys.items():
            if (tt, ss) <= (t, seq) and yy > best:
                best = yy
        return best


def _points(d: Diagram) -> list[tuple[float, int]]:
    pts: set[tuple[float, int]] = set()
    for a in d.arrows:
        pts.add((a.t_send, a.seq))
        if a.t_recv is not None:
            pts.add((a.t_recv, _recv_seq(a)))
    for n in d.notes:
        pts.add((n.t, n.seq))
    for p in d.periods:
        pts.add((max(p.t0, d.t0), -1))
        pts.add((min(p.t1, d.t1 + 1e-9) if p.t1 > d.t1 else p.t1, 10**12))
    for c in d.changes:
        pts.add((c.t, c.seq))
    return sorted(pts)


def _recv_seq(a: Arrow) -> int:
    rec = a.fields.get("receive") or {}
    return int(rec.get("seq", a.seq))


def layout(d: Diagram, mode: TimeMode = "compressed", *, row: float = 20.0, gap_ms: float = 400.0,
           px_per_ms: float | None = None) -> Layout:
    """``compressed``: every event (a send, a receipt, a note) gets its own
    row, in trace order, like the draft's figures; ``scaled``: the distance
    is proportional to simulated time, except that idle gaps longer than
    ``gap_ms`` are cut to one row and marked."""
    if mode not in ("scaled", "compressed"):
        raise DiagramError(f"--time must be scaled or compressed, not {mode!r}")
    pts = _points(d)
    ys: dict[tuple[float, int], float] = {}
    breaks: list[tuple[float, float, float]] = []
    ticks: list[tuple[float, float]] = []
    y = row
    if mode == "compressed":
        last_t = None
        for p in pts:
            if last_t is not None and p[0] - last_t > gap_ms:
                breaks.append((y + row * 0.25, last_t, p[0]))
                y += row * 0.8
            ys[p] = y
            if last_t is None or p[0] != last_t:
                ticks.append((y, p[0]))
            last_t = p[0]
            y += row
    else:
        diffs = sorted(b[0] - a[0] for a, b in zip(pts, pts[1:], strict=False) if 0 < b[0] - a[0] <= gap_ms)
        med = diffs[len(diffs) // 2] if diffs else 10.0
        scale = px_per_ms if px_per_ms is not None else min(10.0, max(0.05, row / med))
        last: tuple[float, int] | None = None
        for p in pts:
            if last is not None:
                dt = p[0] - last[0]
                if dt > gap_ms:
                    breaks.append((y + row * 0.5, last[0], p[0]))
                    y += row * 1.6
                else:
                    y += dt * scale
            ys[p] = y
            if not ticks or y - ticks[-1][0] >= row * 1.5:
                ticks.append((y, p[0]))
            last = p
    return Layout(mode, ys, y + row, breaks, ticks)


# ====================================================================== text


def to_text(d: Diagram, *, width: int = 16, times: bool = True) -> str:
    """The diagram as text, in the draft's ASCII style: one arrow per row in
    the order the messages were sent, its label on the row above; ``~`` for
    a provider talking to its own clients, ``-`` for the MIMI protocol
    between providers; ``X`` where a message was lost; notes in brackets
    beside their lane; ``=`` rows for crashes, partitions and failovers."""
    idx = d.lane_index()
    n = len(d.lanes)
    col = [width // 2 + i * width for i in range(n)]
    total = col[-1] + width + 40 if n else 40
    gutter = 9 if times else 0
    down: dict[str, float] = {}

    def blank() -> list[str]:
        line = [" "] * total
        for i, ln in enumerate(d.lanes):
            line[col[i]] = ":" if ln.key in down else "|"
        return line

    def emit(line: list[str], t: float | None) -> str:
        s = "".join(line).rstrip()
        if not times:
            return s
        stamp = f"{t:>7.0f}  " if t is not None else " " * gutter
        return stamp + s

    out: list[str] = []
    head1 = [" "] * total
    for i, ln in enumerate(d.lanes):
        lab = ln.label + (" (hub)" if ln.hub else "")
        start = max(0, col[i] - len(lab) // 2)
        for j, ch in enumerate(lab[: width - 1]):
            if start + j < total:
                head1[start + j] = ch
    out.append(("  t (ms) " if times else "") + "".join(head1).rstrip())
    out.append(emit(blank(), None))

    events: list[tuple[float, int, int, Any]] = []
    for a in d.arrows:
        events.append((a.t_send, a.seq, 1, a))
    for nt in d.notes:
        events.append((nt.t, nt.seq, 2, nt))
    for p in d.periods:
        events.append((p.t0, p.seq, 0, ("start", p)))
        events.append((p.t1, 10**12, 0, ("end", p)))
    for c in d.changes:
        events.append((c.t, c.seq, 0, ("change", c)))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    for t, _s, typ, obj in events:
        if typ == 0:
            out.append(emit(_text_band(obj, t, down, total), t))
        elif typ == 2 and obj.lane in idx:
            line = blank()
            c0 = col[idx[obj.lane]]
            for j, ch in enumerate(f"[{obj.text}]"):
                if c0 + 2 + j < total:
                    line[c0 + 2 + j] = ch
            out.append(emit(line, t))
        elif typ == 1 and obj.src in idx and obj.dst in idx:
            label_line, arrow_line = _text_arrow(obj, col[idx[obj.src]], col[idx[obj.dst]], blank(), blank(), total)
            out.append(emit(label_line, None))
            out.append(emit(arrow_line, t))
    out.append(emit(blank(), None))
    return "\n".join(out) + "\n"


def _text_band(obj: tuple[str, Period | LaneChange], t: float, down: dict[str, float], total: int) -> list[str]:
    """A full-width ``=`` row: a fault period starts or ends, or a failover."""
    what, p = obj
    if isinstance(p, LaneChange):
        msg = f" {p.label} "
        down.pop(p.lane, None)
    elif what == "start":
        msg = f" {p.kind}: {p.label} "
        for x in p.lanes:
            down[x] = t
    else:
        msg = f" end of {p.kind}: {p.label} "
        for x in p.lanes:
            down.pop(x, None)
    return list(("=" * 6 + msg).ljust(total, "="))


def _text_arrow(a: Arrow, s: int, e: int, lab: list[str], ln: list[str], total: int) -> tuple[list[str], list[str]]:
    """The label row and the arrow row of one message, from column ``s`` to ``e``."""
    fill = "-" if a.mimi else "~"
    if e > s:
        for j, ch in enumerate(" " + a.label):
            if s + 1 + j < total:
                lab[s + 1 + j] = ch
    else:
        start = max(0, s - 1 - len(a.label))
        for j, ch in enumerate(a.label):
            lab[start + j] = ch
    lost = a.kind == "net.drop"
    half = a.t_recv is None
    if e > s:
        end = s + (e - s) // 2 if half else e - 1
        ln[s] = "+"
        for x in range(s + 1, end):
            ln[x] = fill
        ln[end] = "X" if lost else ">"
    else:
        end = s - (s - e) // 2 if half else e + 1
        ln[s] = "+"
        for x in range(end + 1, s):
            ln[x] = fill
        ln[end] = "X" if lost else "<"
    if lost and a.drop_reason:
        reason = f" {a.drop_reason}"
        pos = end + 1 if e > s else max(0, end - len(reason) - 1)
        for j, ch in enumerate(reason):
            if pos + j < total:
                ln[pos + j] = ch
    return lab, ln


# ====================================================================== SVG

_COLORS = {
    "mimi": "#1f4e9c", "local": "#6b6b6b", "drop": "#c0392b", "dup": "#d35400", "retry": "#7d3c98",
    "note": "#fff7d6", "note_line": "#b7950b", "crash": "#f5b7b1", "partition": "#d6eaf8",
    "offline": "#e5e7e9", "degrade": "#fdebd0", "lane": "#444", "client_lane": "#999",
}


def _esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def _attrs(el: Arrow | Note, i: int, nodes: Iterable[str]) -> str:
    return (f' data-i="{i}" data-room="{_esc(el.room)}" data-nodes="{_esc(" ".join(nodes))}"'
            f' data-kind="{_esc(el.kind)}" data-epoch="{el.epoch}" data-msg="{_esc(el.msg_id)}"')


def to_svg(d: Diagram, lay: Layout | None = None, *, lane_w: float = 150.0, interactive: bool = False) -> str:
    """The diagram as an SVG document (see the module docstring for why it is
    written directly). ``interactive`` adds what the explorer's script uses
    (element indices and base y positions); it draws the same."""
    lay = lay or layout(d)
    left, top = 70.0, 70.0
    x = {ln.key: left + lane_w * (i + 0.5) for i, ln in enumerate(d.lanes)}
    width = left + lane_w * max(1, len(d.lanes)) + 20
    height = top + lay.height + 20

    def Y(t: float, seq: int) -> float:
        return top + lay.y(t, seq)

    def zy(**base: float) -> str:
        if not interactive:
            return ""
        rel = {k: round(v if k == "height" else v - top, 2) for k, v in base.items()}
        return " data-z='" + json.dumps(rel) + "'"

    o: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="Helvetica, Arial, sans-serif" font-size="11" '
        f'id="msc">',
        f"<title>{_esc(d.title or 'message sequence chart')}</title>",
        "<defs>",
    ]
    for name, color in (("mimi", _COLORS["mimi"]), ("local", _COLORS["local"]), ("dup", _COLORS["dup"]),
                        ("retry", _COLORS["retry"])):
        o.append(f'<marker id="head-{name}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
                 f'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{color}"/>'
                 "</marker>")
    o.append("</defs>")
    o.append(f'<rect x="0" y="0" width="{width:.0f}" height="{height:.0f}" fill="white"/>')
    if d.title:
        o.append(f'<text x="10" y="18" font-size="13" font-weight="bold">{_esc(d.title)}</text>')
    # provider groups
    groups: dict[str, list[int]] = defaultdict(list)
    for i, ln in enumerate(d.lanes):
        groups[ln.provider].append(i)
    for prov, ids in groups.items():
        x0 = left + lane_w * min(ids) + 4
        x1 = left + lane_w * (max(ids) + 1) - 4
        o.append(f'<rect x="{x0:.1f}" y="26" width="{x1 - x0:.1f}" height="{height - 32:.1f}" rx="6" '
                 f'fill="#f7f9fc" stroke="#dde3ea"/>')
        o.append(f'<text x="{(x0 + x1) / 2:.1f}" y="38" text-anchor="middle" fill="#667" font-size="10">'
                 f"{_esc(prov)}</text>")
    # periods (under everything else)
    o.append('<g id="periods">')
    for p in d.periods:
        y0, y1 = Y(max(p.t0, d.t0), -1), Y(min(p.t1, d.t1 + 1e-9) if p.t1 > d.t1 else p.t1, 10**12)
        if p.lanes:
            xs = [x[k] for k in p.lanes if k in x]
            if not xs:
                continue
            x0, x1 = min(xs) - lane_w * 0.45, max(xs) + lane_w * 0.45
        else:
            x0, x1 = left, width - 20
        color = _COLORS.get(p.kind, "#eee")
        o.append(f'<g class="period" data-kind="fault.{_esc(p.kind)}"><rect x="{x0:.1f}" y="{y0:.1f}" '
                 f'width="{x1 - x0:.1f}" height="{max(2.0, y1 - y0):.1f}" fill="{color}" opacity="0.55"'
                 f'{zy(y=y0, height=max(2.0, y1 - y0))}/>'
                 f'<text x="{x0 + 4:.1f}" y="{y0 + 11:.1f}" fill="#7b241c" font-size="10"{zy(y=y0 + 11)}>'
                 f"{_esc(p.kind)}: {_esc(p.label)}</text></g>")
    o.append("</g>")
    # lanes
    o.append('<g id="lanes">')
    for ln in d.lanes:
        xx = x[ln.key]
        color = _COLORS["client_lane"] if ln.is_client else _COLORS["lane"]
        w = 1.0 if ln.is_client else 2.0
        cut = next((c.t for c in d.changes if c.lane == ln.key), None)
        y_end = top + lay.height
        y_cut = Y(cut, next(c.seq for c in d.changes if c.lane == ln.key)) if cut is not None else y_end
        o.append(f'<line x1="{xx:.1f}" y1="{top - 8:.1f}" x2="{xx:.1f}" y2="{y_cut:.1f}" stroke="{color}" '
                 f'stroke-width="{w}"{zy(y2=y_cut)}/>')
        if cut is not None:
            o.append(f'<line x1="{xx + 3:.1f}" y1="{y_cut:.1f}" x2="{xx + 3:.1f}" y2="{y_end:.1f}" '
                     f'stroke="#117a65" stroke-width="2" stroke-dasharray="6 3"{zy(y1=y_cut, y2=y_end)}/>')
        lab = ln.label + (" (hub)" if ln.hub else "")
        o.append(f'<text x="{xx:.1f}" y="{top - 14:.1f}" text-anchor="middle" font-weight="'
                 f'{"normal" if ln.is_client else "bold"}">{_esc(lab)}</text>')
    o.append("</g>")
    # time axis and cut gaps
    o.append('<g id="axis" fill="#888" font-size="9">')
    for yy, t in lay.ticks:
        o.append(f'<text x="{left - 6:.1f}" y="{top + yy + 3:.1f}" text-anchor="end"{zy(y=top + yy + 3)}>'
                 f"{t:.0f} ms</text>")
    for yy, ta, tb in lay.breaks:
        o.append(f'<g class="break"><line x1="{left:.1f}" y1="{top + yy:.1f}" x2="{width - 20:.1f}" '
                 f'y2="{top + yy:.1f}" stroke="#bbb" stroke-dasharray="2 4"{zy(y1=top + yy, y2=top + yy)}/>'
                 f'<text x="{width - 22:.1f}" y="{top + yy - 2:.1f}" text-anchor="end"{zy(y=top + yy - 2)}>'
                 f"{(tb - ta) / 1000:.2f} s later</text></g>")
    for c in d.changes:
        if c.lane in x:
            yy = Y(c.t, c.seq)
            o.append(f'<g class="failover"><text x="{x[c.lane] + 6:.1f}" y="{yy - 3:.1f}" fill="#117a65" '
                     f'font-weight="bold"{zy(y=yy - 3)}>{_esc(c.label)}</text></g>')
    o.append("</g>")
    # arrows
    o.append('<g id="arrows">')
    for i, a in enumerate(d.arrows):
        if a.src not in x or a.dst not in x:
            continue
        x1, x2 = x[a.src], x[a.dst]
        y1 = Y(a.t_send, a.seq)
        lost = a.kind == "net.drop"
        if a.t_recv is None:  # lost on the way: the arrow stops halfway
            x2 = x1 + (x2 - x1) * 0.45
            y2 = y1 + 8
        else:  # arrived at a crashed node (cross at its lane) or delivered
            y2 = Y(a.t_recv, _recv_seq(a))
        style = "dup" if a.kind == "net.duplicate" else ("retry" if a.retry > 1 else ("mimi" if a.mimi else "local"))
        color = _COLORS["drop"] if lost else _COLORS[style]
        dash = "" if a.mimi or lost else ' stroke-dasharray="5 3"'
        if a.kind == "net.duplicate":
            dash = ' stroke-dasharray="2 2"'
        head = "" if lost else f' marker-end="url(#head-{style})"'
        o.append(f'<g class="el arrow"{_attrs(a, i, (a.src, a.dst))}>')
        o.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}" '
                 f'stroke-width="1.4"{dash}{head}{zy(y1=y1, y2=y2)}/>')
        # a wide transparent line makes the arrow easy to click
        o.append(f'<line class="hit" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="transparent" '
                 f'stroke-width="9"{zy(y1=y1, y2=y2)}/>')
        if lost:
            o.append(f'<g transform="translate({x2:.1f},{y2:.1f})"{zy(ty=y2)}><path d="M-5,-5 L5,5 M-5,5 L5,-5" '
                     f'stroke="{_COLORS["drop"]}" stroke-width="2.2"/></g>')
        tx = x1 + (8 if x2 > x1 else -8)
        anchor = "start" if x2 > x1 else "end"
        label = a.label + (f" \u2717 {a.drop_reason}" if lost and a.drop_reason else "")
        o.append(f'<text x="{tx:.1f}" y="{y1 - 3:.1f}" text-anchor="{anchor}" fill="{color}" '
                 f'stroke="white" stroke-width="3" paint-order="stroke"{zy(y=y1 - 3)}>{_esc(label)}</text>')
        o.append("</g>")
    o.append("</g>")
    # notes
    o.append('<g id="notes">')
    for i, n in enumerate(d.notes):
        if n.lane not in x:
            continue
        yy = Y(n.t, n.seq)
        xx = x[n.lane] + 5
        w = 6.2 * len(n.text) + 8
        o.append(f'<g class="el note"{_attrs(n, len(d.arrows) + i, (n.lane,))}>'
                 f'<rect x="{xx:.1f}" y="{yy - 8:.1f}" width="{w:.1f}" height="13" rx="3" fill="{_COLORS["note"]}" '
                 f'stroke="{_COLORS["note_line"]}" stroke-width="0.6"{zy(y=yy - 8)}/>'
                 f'<text x="{xx + 4:.1f}" y="{yy + 2:.1f}" font-size="10"{zy(y=yy + 2)}>{_esc(n.text)}</text></g>')
    o.append("</g>")
    o.append("</svg>")
    return "\n".join(o) + "\n"


# ====================================================================== files


def write(d: Diagram, out: str | Path, *, time: TimeMode = "compressed") -> Path:
    """Write the diagram as .svg or .txt (``mimisim.explore.write_diagram``
    adds .html, which needs the explorer page from the layer above)."""
    p = Path(out)
    lay = layout(d, time)
    if p.suffix == ".svg":
        p.write_text(to_svg(d, lay))
    elif p.suffix == ".txt":
        p.write_text(to_text(d))
    else:
        raise DiagramError(f"{p}: the output's suffix must be .svg, .txt or .html")
    return p
