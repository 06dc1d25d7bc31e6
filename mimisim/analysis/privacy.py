"""Who learns of a room's events (issue 11): the hub fans an event out
only to providers with a recipient for it.

``no_loss`` judges that every member gets a message; nothing judged that
*only* members' providers do. A hub that keeps sending a room's ciphertexts
(and with them who talks when, and the commits' public content) to a
provider whose users all left passes every other invariant: that
provider's core has no member to hand them to. What is judged, and the
draft text behind it, is in ``docs/invariants.md`` ("fanout_scope").
"""

from __future__ import annotations

from bisect import bisect_right

from mimisim.analysis.invariants import Context, Digest, Violation, _user, register
from mimisim.analysis.liveness import _roles


def _domain(uri: str) -> str:
    """``mimi://b.example/u/bob`` (or ``/d/bob/B1``) -> ``b.example``."""
    return uri.removeprefix("mimi://").split("/", 1)[0]


def fanout_scope(d: Digest, ctx: Context) -> list[Violation]:
    """Every ``hub.fanout`` of a room goes to a provider that had an active
    participant of the room (replayed from the hub's commits' role changes)
    when the hub accepted the event or when it sent the fanout, or, for a
    commit, to the provider of a user the commit adds (its Welcome) or
    removes (the removed clients learn of their removal), or of its
    committer. The hub's own domain is never a violation (its local clients
    are not a federation hop). One violation per (room, provider): the
    first such fanout.

    Only *extra* recipients are judged; a missing one is ``no_loss``'s and
    ``joins_complete``'s business."""
    out: list[Violation] = []
    roles = _roles(d)
    # room -> (seqs, active-user sets after each change), for bisecting.
    timeline: dict[str, tuple[list[int], list[frozenset[str]]]] = {}
    for room, changes in roles.items():
        seqs: list[int] = []
        sets: list[frozenset[str]] = []
        active: set[str] = set()
        for c, user, _, new in changes:
            if new in (0, 1):
                active.discard(user)
            else:
                active.add(user)
            seqs.append(c.seq)
            sets.append(frozenset(active))
        timeline[room] = (seqs, sets)

    def active_at(room: str, seq: int, before: bool = False) -> frozenset[str]:
        """Active users of ``room`` after every commit up to ``seq``
        (``before``: excluding a commit at ``seq`` itself)."""
        seqs, sets = timeline.get(room, ([], []))
        i = bisect_right(seqs, seq - 1 if before else seq)
        return sets[i - 1] if i else frozenset()

    # Commits a lagging failover lost (``hub.lost``) are not in the role
    # timeline, yet the old hub fanned them out (and their Welcomes, whose
    # message ids differ from the commit's) between acceptance and loss: the
    # users they touch are in scope for that window.
    lost_seq = {str(m): int(s) for m, s in zip(d.rows("hub.lost")["msg_id"], d.rows("hub.lost")["seq"], strict=True)}
    lost_windows: dict[str, list[tuple[int, int, frozenset[str]]]] = {}
    for c in d.commits:
        if c.lost:
            touched = frozenset({u for u, _, _ in c.changes} | {c.committer})
            end = lost_seq.get(c.msg_id, 1 << 62)
            # ``lost`` is judged by message id: a commit given back and accepted
            # again after its loss carries the flag too, and stays in scope.
            lost_windows.setdefault(c.room, []).append((c.seq, end if end >= c.seq else 1 << 62, touched))

    acc = d.rows("hub.accept")
    accepted_at: dict[str, int] = {}
    for mid, seq in zip(acc["msg_id"], acc["seq"], strict=True):
        if isinstance(mid, str) and mid not in accepted_at:
            accepted_at[mid] = int(seq)
    fan = d.rows("hub.fanout")
    flagged: set[tuple[str, str]] = set()
    for node, peer, room, mid, seq in zip(fan["node"], fan["peer"], fan["room"], fan["msg_id"], fan["seq"],
                                          strict=True):
        if not isinstance(peer, str) or peer == node or (room, peer) in flagged:
            continue
        seq = int(seq)
        at = accepted_at.get(mid, seq)
        users = set(active_at(room, at, before=True)) | active_at(room, at) | active_at(room, seq)
        commit = d.by_msg.get(mid)
        if commit is not None:
            users |= {u for u, _, _ in commit.changes}
            users.add(commit.committer)
        for start, end, touched in lost_windows.get(room, ()):
            if start <= seq <= end:
                users |= touched
        if peer in {_domain(u) for u in users}:
            continue
        flagged.add((room, peer))
        out.append(Violation("fanout_scope", f"the hub sent {mid} of {room} to {peer}, which has no participant "
                             "of the room", (seq,)))
    return out


def consent_respected(d: Digest, ctx: Context) -> list[Violation]:
    """Under explicit consent (``protocol.consent.mode: explicit``), every
    user a commit adds (role 0/1 -> active) had granted consent to the
    committer's user, for that room or any room, and not revoked it since:
    the last ``client.consent`` grant or revoke by one of the added user's
    clients naming the committer's user as requester, before the commit,
    is a grant. A user adding its own devices, and the room's creator,
    need no consent. Not judged under open consent.

    What it catches that nothing else does: a provider that hands out
    KeyPackages without looking at consent (every delivery and ordering
    invariant holds: the add simply happens sooner)."""
    out: list[Violation] = []
    if not ctx.explicit_consent:
        return out
    rows = d.rows("client.consent")
    # (target user, requester user) -> [(seq, room, operation)], in trace order
    decisions: dict[tuple[str, str], list[tuple[int, str, str]]] = {}
    for node, peer, room, op, seq in zip(rows["node"], rows["peer"], rows["room"], rows["operation"], rows["seq"],
                                         strict=True):
        if op in ("grant", "revoke"):
            decisions.setdefault((_user(node), str(peer)), []).append((int(seq), str(room or ""), str(op)))
    for c in d.commits:
        if c.lost:
            continue
        adder = _user(c.committer)
        for user, old, new in c.changes:
            if old not in (0, 1) or new in (0, 1) or user == adder:
                continue
            before = [op for seq, room, op in decisions.get((user, adder), []) if seq < c.seq and room in ("", c.room)]
            if not before or before[-1] != "grant":
                what = "never granted" if not before else "had revoked"
                out.append(Violation("consent_respected", f"{adder} added {user} to {c.room} (commit {c.msg_id}); "
                                     f"{user} {what} consent", (c.seq,)))
    return out


register("fanout_scope", fanout_scope)
register("consent_respected", consent_respected)
