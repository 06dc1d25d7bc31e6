"""The protocol's ordering, agreement, delivery and policy invariants,
checked over a run's trace alone.

Each invariant is a function ``(trace, context) -> list[Violation]``; a
:class:`Violation` names the invariant, says in one sentence what went wrong,
and lists the ``seq`` numbers of the rows that show it (its *event window*),
so a failing seed's story can be read straight out of ``trace.parquet``.
Nothing here looks at live simulator objects: a trace written on any machine
gives the same verdicts (shared/DESIGN.md, "The trace").

Where an invariant needs a bound (how long a message may take to arrive,
how long a leave may stay uncommitted), :class:`Bounds` derives it from the
scenario plus a documented slack; ``docs/invariants.md`` has the exact
definitions. Rows the checkers read:

- ``hub.accept`` (typed columns ``message``, ``duplicate``; for a commit
  ``committer, epoch_from, epoch_to, external, tree_fp, plist_fp, role``
  (the committer's) and ``role_changes``; for an application message
  ``sender``; for the hub's own remove proposals ``target_user``),
  ``hub.lost``;
- ``client.epoch`` (status ``""``/``joined``/``created``/``removed``;
  ``tree_fp, plist_fp, auth_fp``), ``client.gap``, ``client.submit``,
  ``client.deliver`` (status ``frank:<status>``), ``client.propose``
  (``operation``);
- ``fault.*`` rows (``fault_id``) for the windows in which a bound does not apply.

Only typed columns are read (``docs/trace.md``), never ``detail``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd


def _null(v: Any) -> bool:
    """A null of a nullable column (``None``, ``pandas.NA``, NaN)."""
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _int(v: Any, default: int = -1) -> int:
    return default if _null(v) else int(v)


def _str(v: Any) -> str | None:
    return None if _null(v) else str(v)


def _true(v: Any) -> bool:
    """A nullable flag's value (null: False)."""
    return not _null(v) and bool(v)


def _flag(s: pd.Series) -> pd.Series:
    """A nullable boolean column as plain booleans (null: False)."""
    return s.fillna(False).astype(bool)

#: The client core's default gap timeout (``ClientCore.gap_timeout_ms``).
GAP_TIMEOUT_MS = 10_000.0


@dataclass(frozen=True)
class Violation:
    """One broken invariant: its name, a one-line message and the event window."""

    invariant: str
    message: str
    rows: tuple[int, ...] = ()  # seq numbers of the rows that show it

    def window(self, trace: pd.DataFrame, context: int = 0) -> pd.DataFrame:
        """The trace rows of the event window (``context`` more rows around each)."""
        if not self.rows:
            return trace.iloc[0:0]
        keep: set[int] = set()
        for s in self.rows:
            keep.update(range(s - context, s + context + 1))
        return trace[trace["seq"].isin(sorted(keep))]

    def to_json(self) -> dict[str, Any]:
        return {"invariant": self.invariant, "message": self.message, "rows": list(self.rows)}


@dataclass(frozen=True)
class Bounds:
    """Time bounds, in simulated ms, derived from the scenario (docs/invariants.md).

    ``settle_ms``: how long after a message is accepted (or after the world
    is quiet again, :meth:`Digest.quiet_after`) every online member must
    have it: two notify timeouts plus the notify backoff after four
    consecutive losses (``min(cap, base x factor^4)``) and 2 s of slack for
    access retransmissions and queueing. ``backoff_cap_ms``: a notify retried
    through a fault window may have backed off to the cap, so the world is
    quiet only ``min(cap, window length)`` after the window ends.
    ``leave_base_ms`` per room: the pending-proposal strategy's own delay
    (``max_delay`` for ``random_delay`` and ``designated``, 0 for ``immediate_commit``) plus the
    client's gap timeout (the member that must commit may first have to
    notice it is behind and resync: chaos-membership seed 31); the leave
    bound is that plus ``settle_ms``, counted from when the world is quiet
    after the leave (:meth:`Digest.quiet_after`).
    """

    settle_ms: float = 6_000.0
    leave_base_ms: dict[str, float] = field(default_factory=dict)
    end_ms: float = 0.0
    backoff_cap_ms: float = 2_000.0

    @classmethod
    def from_scenario(cls, scn: Any) -> Bounds:
        notify = scn.protocol.notify
        b = notify.retry.backoff
        cap = float(b.cap)
        settle = 2 * float(notify.timeout) + min(cap, float(b.base) * float(b.factor) ** 4) + 2_000.0
        leave: dict[str, float] = {}
        for name, room in scn.rooms.items():
            pp = room.policy.pending_proposals or scn.protocol.pending_proposals
            # designated: the named committer may be the one being removed or
            # offline; the others' fallback delay bounds the wait.
            delay = float(pp.max_delay) if pp.strategy in ("random_delay", "designated") else 0.0
            leave[scn.room_uri(name)] = delay + GAP_TIMEOUT_MS
        return cls(settle_ms=settle, leave_base_ms=leave, end_ms=float(scn.duration), backoff_cap_ms=cap)


@dataclass
class Context:
    """What the checkers need beyond the trace: bounds and each room's policy
    (``mimisim.mimi.policy.RoomPolicy`` by room URI; a room without one is
    not policy-checked)."""

    bounds: Bounds = field(default_factory=Bounds)
    policies: dict[str, Any] = field(default_factory=dict)
    #: user URI -> the URIs of its clients that exist from the start (``joined``
    #: devices): who an add of that user must bring in (liveness.joins_complete).
    clients_of_user: dict[str, list[str]] = field(default_factory=dict)
    #: Whether every hop promises a room's order (the hub's notifies to a
    #: follower one at a time: ``protocol.notify_pipelining`` false);
    #: userview.display_order is judged only then.
    ordered_fanout: bool = True
    #: ``protocol.leave_delivery``: with ``"proposal"``, a client whose user's
    #: leave the hub accepted is not owed later messages (``no_loss``).
    leave_delivery: str = "commit"
    #: ``protocol.consent.mode == "explicit"``: privacy.consent_respected is judged only then.
    explicit_consent: bool = False

    @classmethod
    def from_scenario(cls, scn: Any) -> Context:
        from mimisim.sim.world import room_policy

        users: dict[str, list[str]] = {}
        for info in scn.clients():
            if info.spec.joined:
                users.setdefault(_user(info.uri), []).append(info.uri)
        return cls(Bounds.from_scenario(scn), {scn.room_uri(n): room_policy(r.policy) for n, r in scn.rooms.items()},
                   users, not scn.protocol.notify_pipelining, scn.protocol.leave_delivery,
                   explicit_consent=scn.protocol.consent.mode == "explicit")


# ====================================================================== the trace, digested


@dataclass
class HubCommit:
    seq: int
    t_ms: float
    room: str
    msg_id: str
    committer: str
    old: int
    new: int
    external: bool
    tree: str
    plist: str
    role: int | None
    changes: list[tuple[str, int, int]]
    lost: bool = False


@dataclass
class Digest:
    """The rows every checker reads, parsed once."""

    trace: pd.DataFrame
    end_ms: float
    commits: list[HubCommit]
    by_transition: dict[tuple[str, int], list[HubCommit]]  # (room, new epoch) -> commits
    by_msg: dict[str, HubCommit]
    lost_msgs: set[str]
    fault_windows: list[tuple[float, float, str, int]]  # start, end, node, seq of the start row
    backoff_cap_ms: float = 2_000.0

    @classmethod
    def of(cls, trace: pd.DataFrame, bounds: Bounds | None = None) -> Digest:
        if not len(trace):
            return cls(trace, 0.0, [], {}, {}, set(), [], bounds.backoff_cap_ms if bounds else 2_000.0)
        end = float(trace["t_ms"].max())
        run_end = trace[trace["kind"] == "run.end"]
        if len(run_end):
            end = float(run_end["t_ms"].iloc[0])
        lost = set(trace.loc[trace["kind"] == "hub.lost", "msg_id"])
        acc = trace[(trace["kind"] == "hub.accept") & (trace["message"] == "commit") & ~_flag(trace["duplicate"])]
        commits: list[HubCommit] = []
        for r in acc.itertuples(index=False):
            changes = [(c["user"], int(c["old"]), int(c["new"])) for c in
                       (r.role_changes if r.role_changes is not None else ())]
            commits.append(HubCommit(
                int(r.seq), float(r.t_ms), r.room, r.msg_id, str(r.committer), int(r.epoch_from), int(r.epoch_to),
                _true(r.external), _str(r.tree_fp) or "", _str(r.plist_fp) or "",
                None if _null(r.role) else int(r.role), changes, r.msg_id in lost,
            ))
        # The hub's order: per transition the first commit the hub accepted
        # and did not lose, plus any it lost in a lagging failover (members
        # may have processed those before the room forked). A second commit
        # accepted for one epoch is no part of it (hub_total_order says so).
        by_transition: dict[tuple[str, int], list[HubCommit]] = {}
        for c in commits:
            same = by_transition.setdefault((c.room, c.new), [])
            if c.lost or not any(not x.lost for x in same):
                same.append(c)
        windows: list[tuple[float, float, str, int]] = []
        open_: dict[tuple[str, str], tuple[float, int]] = {}
        faults = trace[trace["kind"].str.startswith("fault.") & (trace["kind"] != "fault.effect")]
        for r in faults.itertuples(index=False):
            fid = _str(r.fault_id) or ""
            if r.kind == "fault.crash":
                open_[(r.node, "crash")] = (float(r.t_ms), int(r.seq))
            elif r.kind == "fault.restart":
                start, s = open_.pop((r.node, "crash"), (float(r.t_ms), int(r.seq)))
                windows.append((start, float(r.t_ms), r.node, s))
            elif r.status == "start":
                open_[(r.node, fid)] = (float(r.t_ms), int(r.seq))
            elif r.status == "end":
                start, s = open_.pop((r.node, fid), (float(r.t_ms), int(r.seq)))
                windows.append((start, float(r.t_ms), r.node, s))
        for (node, _), (start, s) in open_.items():
            windows.append((start, end, node, s))
        cap = bounds.backoff_cap_ms if bounds is not None else 2_000.0
        return cls(trace, end, commits, by_transition, {c.msg_id: c for c in commits}, lost, windows, cap)

    def quiet_after(self, t: float) -> float:
        """When the world is quiet again after ``t``: the end of the last fault
        window open at ``t`` or starting after it, plus the notify backoff it
        may have built up (``min(cap, window length)``), or ``t`` itself."""
        last = t
        for start, stop, _, _ in self.fault_windows:
            if stop >= t:
                last = max(last, stop + min(self.backoff_cap_ms, stop - start))
        return last

    def rows(self, kind: str) -> pd.DataFrame:
        return self.trace[self.trace["kind"] == kind]


def _user(client: str) -> str:
    """``mimi://a.example/d/alice/A1`` -> ``mimi://a.example/u/alice``."""
    head, _, rest = client.partition("/d/")
    return f"{head}/u/{rest.split('/', 1)[0]}" if rest else client


# ====================================================================== the invariants


def hub_total_order(d: Digest, ctx: Context) -> list[Violation]:
    """The hub accepts one commit per epoch per room, and its commits form one
    chain 0->1->2... (commits a lagging failover lost, ``hub.lost``, drop out
    of the chain: the standby goes on from the last one it replicated)."""
    out: list[Violation] = []
    chain: dict[str, list[HubCommit]] = {}
    lost_rows = d.rows("hub.lost")
    events: list[tuple[int, str, Any]] = [(c.seq, "c", c) for c in d.commits]
    events += [(int(r.seq), "l", r.msg_id) for r in lost_rows.itertuples(index=False)]
    for _, what, x in sorted(events, key=lambda e: e[0]):
        if what == "l":
            for room, cs in chain.items():
                chain[room] = [c for c in cs if c.msg_id != x]
            continue
        c: HubCommit = x
        cs = chain.setdefault(c.room, [])
        if c.new != c.old + 1:
            out.append(Violation("hub_total_order", f"{c.room}: commit {c.msg_id} moves epoch {c.old}->{c.new}",
                                 (c.seq,)))
        if cs:
            prev = cs[-1]
            if c.old == prev.old:
                out.append(Violation(
                    "hub_total_order", f"{c.room}: two commits accepted for epoch {c.old} "
                    f"({prev.msg_id} and {c.msg_id})", (prev.seq, c.seq)))
            elif c.old != prev.new:
                out.append(Violation(
                    "hub_total_order", f"{c.room}: commit {c.msg_id} from epoch {c.old} follows "
                    f"{prev.msg_id} which ended at epoch {prev.new}", (prev.seq, c.seq)))
        cs.append(c)
    return out


def member_order(d: Digest, ctx: Context) -> list[Violation]:
    """Every member processes commits in the hub's order with no gap: each
    ``client.epoch`` step of a member is +1 by a commit the hub accepted for
    exactly that transition, its epochs only grow (but for a fork: a member
    whose merged commit the hub lost and replaced by another goes back to
    that epoch, ``client.gap`` status ``fork``, and merges the hub's), and a
    jump (a join while already a member) comes only after a detected gap's
    resync (``client.gap`` status ``resync``)."""
    out: list[Violation] = []
    rows = d.trace[d.trace["kind"].isin(("client.epoch", "client.gap"))]
    last: dict[tuple[str, str], tuple[int, str, int]] = {}  # (client, room) -> epoch, status, seq
    resynced: set[tuple[str, str]] = set()
    forked: dict[tuple[str, str], int] = {}  # a fork back to this epoch (client.gap status fork)
    for r in rows.itertuples(index=False):
        key = (r.node, r.room)
        if r.kind == "client.gap":
            if r.status == "resync":
                resynced.add(key)
            elif r.status == "fork":
                forked[key] = _int(r.epoch)
            continue
        prev = last.get(key)
        e, st, seq = _int(r.epoch), r.status, int(r.seq)
        base = forked.pop(key, None)
        if base is not None and prev is not None and base < prev[0]:
            prev = (base, prev[1], prev[2])  # the hub's commit for a past epoch: next step from there
        if prev is not None and prev[1] != "removed":
            pe, _, pseq = prev
            if e <= pe:
                out.append(Violation("member_order", f"{r.node} in {r.room}: epoch went from {pe} to {e}",
                                     (pseq, seq)))
            elif st in ("", "removed") and e != pe + 1:
                out.append(Violation("member_order", f"{r.node} in {r.room}: skipped from epoch {pe} to {e} "
                                     f"by commit {r.msg_id} without a resync", (pseq, seq)))
            elif st == "joined" and key not in resynced:
                out.append(Violation("member_order", f"{r.node} in {r.room}: re-joined at epoch {e} from "
                                     f"{pe} without a detected gap and resync", (pseq, seq)))
        if st == "" and r.msg_id:
            hub = d.by_transition.get((r.room, e), [])
            if not any(c.msg_id == r.msg_id for c in hub):
                rows_ = (seq,) + tuple(c.seq for c in hub)
                out.append(Violation(
                    "member_order", f"{r.node} in {r.room}: processed commit {r.msg_id} into epoch {e}, which "
                    f"is not the hub's commit for {e - 1}->{e}", rows_))
        if st == "joined":
            resynced.discard(key)
        last[key] = (e, st, seq)
    return out


def agreement(d: Digest, ctx: Context) -> list[Violation]:
    """Every member in an epoch has the hub's tree hash and participant list
    (those of the commit it processed, or for a join of the hub's commit
    into that epoch) and the same epoch authenticator as every other member
    on that branch (the hub is no member and cannot know it)."""
    out: list[Violation] = []
    auths: dict[tuple[str, int, str], tuple[str, int]] = {}
    for r in d.rows("client.epoch").itertuples(index=False):
        if r.status not in ("", "joined"):
            continue
        tree, plist, auth = _str(r.tree_fp), _str(r.plist_fp), _str(r.auth_fp)
        if tree is None or plist is None:
            continue
        hub = d.by_transition.get((r.room, _int(r.epoch)), [])
        if r.status == "" or r.msg_id in d.by_msg:
            hub = [c for c in hub if c.msg_id == r.msg_id] or hub
        if hub and not any(c.tree == tree and c.plist == plist for c in hub):
            c = hub[-1]
            what = "tree hash" if c.tree != tree else "participant list"
            out.append(Violation("agreement", f"{r.node} in {r.room} epoch {r.epoch}: {what} {tree}/{plist} "
                                 f"differs from the hub's {c.tree}/{c.plist}", (c.seq, int(r.seq))))
        if auth:
            k = (r.room, _int(r.epoch), tree)
            seen = auths.setdefault(k, (auth, int(r.seq)))
            if seen[0] != auth:
                out.append(Violation("agreement", f"{r.node} in {r.room} epoch {r.epoch}: epoch authenticator "
                                     f"{auth} differs from another member's {seen[0]}", (seen[1], int(r.seq))))
    return out


def _membership(d: Digest) -> dict[tuple[str, str], list[tuple[int, str, int]]]:
    """(client, room) -> its client.epoch steps (epoch, status, seq) in order."""
    out: dict[tuple[str, str], list[tuple[int, str, int]]] = {}
    for r in d.rows("client.epoch").itertuples(index=False):
        out.setdefault((r.node, r.room), []).append((_int(r.epoch), r.status, int(r.seq)))
    return out


def _hub_epoch_at(d: Digest, room: str, seq: int) -> int:
    e = 0
    for c in d.commits:
        if c.room == room and c.seq < seq and not c.lost:
            e = max(e, c.new)
    return e


def _volatile_windows(d: Digest) -> list[tuple[float, float]]:
    """Windows in which storage was not durable: a volatile crash (or a
    lagging failover) until its restart."""
    out = []
    crashes = d.trace[(d.trace["kind"] == "fault.crash") & (d.trace["status"] == "volatile")]
    for r in crashes.itertuples(index=False):
        stop = d.end_ms
        for start, end, node, _ in d.fault_windows:
            if node == r.node and start == float(r.t_ms):
                stop = end
        out.append((float(r.t_ms), stop))
    return out


def no_loss(d: Digest, ctx: Context) -> list[Violation]:
    """Every application message the hub accepted reaches, exactly once, every
    client that was an active member of its epoch (reached that epoch, and
    was not removed by the time the hub accepted it) other than its sender,
    when the run leaves ``settle_ms`` of fault-free time after it (a client
    whose removal the hub committed before accepting the message is not
    owed it, whenever the client processes that commit). Exempt:
    messages in ``hub.lost``, messages accepted within ``settle_ms`` of
    (or during) a window of volatile storage, and messages their sender
    built on a branch the hub had abandoned (it forked back to an earlier
    epoch after sending: a lagging failover lost the commit it was at),
    and, with ``leave_delivery: proposal``, messages accepted after the hub
    accepted the client's user's leave
    (:func:`mimisim.analysis.departure.leave_windows`)."""
    from mimisim.analysis.departure import leave_windows

    out: list[Violation] = []
    leaving = leave_windows(d) if ctx.leave_delivery == "proposal" else {}
    submit = d.rows("client.submit")
    sender = dict(zip(submit["msg_id"], submit["node"], strict=True))
    gaps = d.rows("client.gap")
    forks: dict[tuple[str, str], list[tuple[int, int]]] = {}  # (client, room) -> (seq, epoch forked back to)
    for g in gaps[gaps["status"] == "fork"].itertuples(index=False):
        forks.setdefault((g.node, g.room), []).append((int(g.seq), _int(g.epoch)))
    abandoned: set[str] = set()
    for s in submit.itertuples(index=False):
        nxt = next((b for q, b in forks.get((s.node, s.room), []) if q > int(s.seq)), None)
        if nxt is not None and nxt < _int(s.epoch):
            abandoned.add(s.msg_id)
    acc = d.rows("hub.accept")
    acc = acc[(acc["status"] == "accepted") & acc["msg_id"].isin(sender.keys())]
    deliver = d.rows("client.deliver")
    got: dict[tuple[str, str], list[int]] = {}
    for r in deliver.itertuples(index=False):
        got.setdefault((r.msg_id, r.node), []).append(int(r.seq))
    members = _membership(d)
    # (client, room) -> hub seqs of the commits that removed it: a message the
    # hub accepted after one of them is not owed to the client (with
    # protocol.app_epoch_window > 0 it can be of the client's last epoch;
    # no_delivery_after_removal forbids the delivery).
    removed_by: dict[tuple[str, str], list[int]] = {}
    ep_rows = d.rows("client.epoch")
    for r in ep_rows[ep_rows["status"] == "removed"].itertuples(index=False):
        c = d.by_msg.get(r.msg_id)
        if c is not None:
            removed_by.setdefault((r.node, r.room), []).append(c.seq)
    by_room_epoch: dict[tuple[str, int], list[str]] = {}
    for (client, room), steps in members.items():
        for e, st, _ in steps:
            if st != "removed":
                by_room_epoch.setdefault((room, e), []).append(client)
    volatile = _volatile_windows(d)
    settle = ctx.bounds.settle_ms
    seen: set[str] = set()
    for r in acc.itertuples(index=False):
        if r.msg_id in seen or r.msg_id in d.lost_msgs or r.msg_id in abandoned:
            continue
        seen.add(r.msg_id)
        t = float(r.t_ms)
        if d.end_ms - d.quiet_after(t) < settle:
            continue
        if any(a - settle <= t <= b for a, b in volatile):
            continue
        hub_epoch = _hub_epoch_at(d, r.room, int(r.seq)) if any(c.room == r.room for c in d.commits) else 0
        for client in sorted(set(by_room_epoch.get((r.room, int(r.epoch)), []))):
            if client == sender[r.msg_id]:
                continue
            removed = [e for e, st, s in members[(client, r.room)] if st == "removed" and s < int(r.seq)]
            if any(e <= hub_epoch for e in removed):
                continue
            if any(s < int(r.seq) for s in removed_by.get((client, r.room), ())):
                continue
            if any(a < int(r.seq) < b for a, b in leaving.get((r.room, _user(client)), ())):
                continue
            n = len(got.get((r.msg_id, client), []))
            if n == 0:
                later = [(e, s) for e, st, s in members[(client, r.room)] if st == "removed" and s > int(r.seq)]
                why = f" (removed at epoch {later[0][0]} before it arrived)" if later else ""
                out.append(Violation(
                    "no_loss", f"{r.msg_id} (epoch {r.epoch} of {r.room}, accepted at {t:.0f} ms) never reached "
                    f"{client}{why}", (int(r.seq),) + ((later[0][1],) if later else ())))
    return out


def no_duplicate(d: Digest, ctx: Context) -> list[Violation]:
    """No client processes a message twice: at most one ``client.deliver``
    per (client, message), judged both by the MLS message's id and by the
    content's MIMI message id (``content_id``: the same when a sender
    resubmits one message as a new ciphertext, which the msg id cannot see),
    and one ``client.epoch`` per (client, commit)."""
    out: list[Violation] = []
    seen: dict[tuple[str, str], int] = {}
    by_content: dict[tuple[str, str], tuple[int, str]] = {}
    dl = d.rows("client.deliver")
    cids = dl["content_id"] if "content_id" in dl.columns else pd.Series([None] * len(dl), index=dl.index)
    for r, cid in zip(dl.itertuples(index=False), cids, strict=True):
        k = (r.node, r.msg_id)
        if k in seen:
            out.append(Violation("no_duplicate", f"{r.node} delivered {r.msg_id} twice", (seen[k], int(r.seq))))
            continue
        seen[k] = int(r.seq)
        if _null(cid):
            continue
        first = by_content.get((r.node, cid))
        if first is not None:
            out.append(Violation("no_duplicate", f"{r.node} delivered the content {cid} twice, as {first[1]} and "
                                 f"{r.msg_id} (one message resubmitted as a new ciphertext)", (first[0], int(r.seq))))
        else:
            by_content[(r.node, cid)] = (int(r.seq), r.msg_id)
    seen = {}
    ep = d.rows("client.epoch")
    for r in ep[(ep["status"] == "") & (ep["msg_id"] != "")].itertuples(index=False):
        k = (r.node, r.msg_id)
        if k in seen:
            out.append(Violation("no_duplicate", f"{r.node} processed commit {r.msg_id} twice",
                                 (seen[k], int(r.seq))))
        else:
            seen[k] = int(r.seq)
    return out


def leave_committed(d: Digest, ctx: Context) -> list[Violation]:
    """Every leave the hub accepted (a ``client.propose`` whose proposals got
    ``hub.accept`` success) is committed: a later commit of the room moves
    the leaving user to role 0, within the room's leave bound
    (:class:`Bounds`) once the run leaves that much fault-free time."""
    out: list[Violation] = []
    props = d.rows("client.propose")
    acc = d.rows("hub.accept")
    acc = acc[(acc["status"] == "success") & ~_flag(acc["duplicate"])]
    first_acc = {m: (int(s), float(t)) for m, s, t in zip(acc["msg_id"][::-1], acc["seq"][::-1], acc["t_ms"][::-1],
                                                          strict=True)}
    for r in props.itertuples(index=False):
        if r.operation != "leave" or r.msg_id not in first_acc:
            continue
        aseq, at = first_acc[r.msg_id]
        user = _user(r.node)
        done = next((c for c in d.commits if c.room == r.room and c.seq > aseq and not c.lost
                     and any(u == user and n == 0 for u, _, n in c.changes)), None)
        bound = ctx.bounds.leave_base_ms.get(r.room, 0.0) + ctx.bounds.settle_ms
        deadline = d.quiet_after(at) + bound
        if done is None and d.end_ms >= deadline:
            out.append(Violation("leave_committed", f"{user}'s leave from {r.room} (accepted at {at:.0f} ms) "
                                 "was never committed", (int(r.seq), aseq)))
        elif done is not None and done.t_ms > deadline:
            out.append(Violation("leave_committed", f"{user}'s leave from {r.room} took {done.t_ms - at:.0f} ms "
                                 f"to commit (bound {bound:.0f} ms after the last fault)",
                                 (int(r.seq), aseq, done.seq)))
    return out


def policy(d: Digest, ctx: Context) -> list[Violation]:
    """No accepted action broke the room's policy as it stood at that epoch.
    The participant list is replayed from the commits' ``changes=``; an
    accepted application message needs an active sender role with
    ``canSendMessage``; a member's commit needs an active committer role
    (the one the hub reports must match the replayed one), and each role
    change it makes must be one that role may make (``authorized_role_changes``),
    except a move to role 0 of a user whose leave the hub accepted (the
    hub's own proposal). Roles are *effective* ones for sending: a user
    whose leave proposals (or the hub's remove proposals for it) the hub
    accepted may send nothing until the room's next commit ([P] "Room
    state": an accepted change applies at once; the hub's
    ``effective_roles``). Deliberately only ``RoomPolicy.can``/``changes``
    (the policy's data) and no rule function of the core, so a core whose
    rules are broken cannot vouch for itself."""
    from mimisim.mimi import policy as P

    out: list[Violation] = []
    roles: dict[str, dict[str, int]] = {}
    leaving: dict[str, set[str]] = {}
    # Effective roles ([P] "Room state": an accepted change applies at once,
    # before it is committed): room -> user -> seq of the accepted leave (or
    # hub remove) proposals, until the room's next commit.
    pending_out: dict[str, dict[str, int]] = {}
    acc = d.rows("hub.accept")
    props = set(d.rows("client.propose")["msg_id"])
    prop_user = dict(zip(d.rows("client.propose")["msg_id"], d.rows("client.propose")["node"], strict=True))
    for r in acc.itertuples(index=False):
        pol = ctx.policies.get(r.room)
        rm = roles.setdefault(r.room, {})
        if r.msg_id in props:
            leaving.setdefault(r.room, set()).add(_user(prop_user[r.msg_id]))
            pending_out.setdefault(r.room, {}).setdefault(_user(prop_user[r.msg_id]), int(r.seq))
            continue
        if r.message == "hub_remove":
            leaving.setdefault(r.room, set()).add(str(r.target_user))
            pending_out.setdefault(r.room, {}).setdefault(str(r.target_user), int(r.seq))
            continue
        if r.status == "accepted" and r.message == "application":
            sender = _str(r.sender)
            if sender is None or pol is None or _true(r.duplicate):
                continue
            role = rm.get(sender)
            if role is not None and (role in (0, 1) or not pol.can(role, P.C.canSendMessage)):
                out.append(Violation("policy", f"{sender} (role {role}) had message {r.msg_id} accepted in "
                                     f"{r.room}", (int(r.seq),)))
            elif sender in pending_out.get(r.room, {}):
                s = pending_out[r.room][sender]
                out.append(Violation("policy", f"{sender} had message {r.msg_id} accepted in {r.room} after the hub "
                                     "had accepted its removal (effective role 0, not yet committed)",
                                     (s, int(r.seq))))
            continue
        c = d.by_msg.get(r.msg_id)
        if c is None or c.seq != int(r.seq) or c.lost:
            continue
        pending_out.pop(r.room, None)  # the next commit: it removes them, or the proposals are gone
        user = _user(c.committer)
        known = rm.get(user)
        if known is None and c.role is not None and not c.external:
            rm[user] = known = c.role  # the creator: first seen committing
        if pol is not None and not c.external and known is not None:
            if c.role is not None and c.role != known:
                out.append(Violation("policy", f"{r.room}: the hub judged {user}'s commit {c.msg_id} as role "
                                     f"{c.role}, the participant list says {known}", (c.seq,)))
            if known in (0, 1):
                out.append(Violation("policy", f"{r.room}: {user} (role {known}) had commit {c.msg_id} accepted",
                                     (c.seq,)))
            for u, o, n in c.changes:
                if n == 0 and u in leaving.get(r.room, set()):
                    continue
                if n not in pol.changes(known, o):
                    out.append(Violation("policy", f"{r.room}: commit {c.msg_id} by {user} (role {known}) moved "
                                         f"{u} from role {o} to {n}, which that role may not do", (c.seq,)))
        for u, _, n in c.changes:
            rm[u] = n
            if n == 0:
                leaving.get(r.room, set()).discard(u)
    return out


def franks_verify(d: Digest, ctx: Context) -> list[Violation]:
    """Every frank verifies at every receiver: a delivered message's status
    is ``frank:ok`` (or ``frank:absent`` in a room without franking)."""
    dl = d.rows("client.deliver")
    bad = dl[~dl["status"].isin(("frank:ok", "frank:absent"))]
    return [Violation("franks_verify", f"{r.node}: frank of {r.msg_id} is {r.status.split(':', 1)[-1]}",
                      (int(r.seq),)) for r in bad.itertuples(index=False)]


def converged(d: Digest, ctx: Context) -> list[Violation]:
    """At the end, every member client is at the hub's last epoch when the
    run leaves ``settle_ms`` plus the gap timeout of fault-free time after
    the last commit (a member behind after that stayed behind silently)."""
    out: list[Violation] = []
    last: dict[str, HubCommit] = {}
    for hc in d.commits:
        if not hc.lost:
            last[hc.room] = hc
    members = _membership(d)
    for (client, room), steps in sorted(members.items()):
        e, st, seq = steps[-1]
        c = last.get(room)
        if c is None or st == "removed":
            continue
        if d.end_ms - d.quiet_after(c.t_ms) < ctx.bounds.settle_ms + GAP_TIMEOUT_MS:
            continue
        if e < c.new:
            out.append(Violation("converged", f"{client} in {room} ended at epoch {e}, the hub at {c.new}",
                                 (seq, c.seq)))
    return out


Checker = Callable[[Digest, Context], list[Violation]]

#: Name -> checker, in the order ``mimisim check`` prints them.
INVARIANTS: dict[str, Checker] = {
    "hub_total_order": hub_total_order,
    "member_order": member_order,
    "agreement": agreement,
    "converged": converged,
    "no_loss": no_loss,
    "no_duplicate": no_duplicate,
    "leave_committed": leave_committed,
    "policy": policy,
    "franks_verify": franks_verify,
}


def register(name: str, checker: Checker) -> None:
    """Add an invariant from another module (``mimisim.analysis.liveness``);
    ``mimisim check`` prints it after the ones above."""
    if name in INVARIANTS and INVARIANTS[name] is not checker:
        raise ValueError(f"invariant {name!r} is registered twice")
    INVARIANTS[name] = checker


def check_trace(trace: pd.DataFrame, context: Context | None = None,
                only: Iterable[str] | None = None) -> dict[str, list[Violation]]:
    """Every invariant's violations (an empty list: it holds)."""
    ctx = context or Context()
    d = Digest.of(trace, ctx.bounds)
    names = list(only) if only is not None else list(INVARIANTS)
    return {name: INVARIANTS[name](d, ctx) for name in names}


def format_violation(v: Violation, trace: pd.DataFrame, context: int = 0) -> str:
    """The violation and its event window as text."""
    cols = ["t_ms", "seq", "kind", "node", "peer", "room", "epoch", "msg_id", "status", "detail"]
    w = v.window(trace, context)[cols]
    with pd.option_context("display.width", 250, "display.max_colwidth", 110, "display.max_columns", 20):
        table = w.to_string(index=False) if len(w) else "(no rows)"
    return f"[{v.invariant}] {v.message}\n{table}"


# The invariants of other modules register themselves on import (last, so
# they can import what this module defines).
from mimisim.analysis import departure as _departure  # noqa: E402,F401
from mimisim.analysis import liveness as _liveness  # noqa: E402,F401
from mimisim.analysis import privacy as _privacy  # noqa: E402,F401
from mimisim.analysis import userview as _userview  # noqa: E402,F401
