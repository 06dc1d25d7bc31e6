"""Delivery to users who left or were removed (issue 13, item 3).

draft-ietf-mimi-protocol-06 s.5.3: a hub that "observes that an active
participant has been removed or banned from the room, MUST prevent any of
its clients from sending or receiving any additional application messages".
:func:`no_delivery_after_removal` checks the receiving half on the trace:
no application message the hub accepted after the commit that removed (or
banned) a user is read by one of that user's clients (``client.deliver``),
until a later commit lists the user again. Messages the hub accepted before
that commit may still arrive late (a follower delivers them to departed
clients whose epoch they belong to); they are not counted.

:func:`received_after_leave` measures what the hub option
``protocol.leave_delivery`` changes: how many application messages a
leaving user's clients read that the hub accepted after the user asked to
leave (its first ``client.propose`` of operation ``leave``). The leave study
(:mod:`mimisim.analysis.leave`) adds it as a column.

Reads typed columns only (``kind, node, room, msg_id, message, duplicate``) and the hub's commits as
:class:`~mimisim.analysis.invariants.Digest` has them.
"""

from __future__ import annotations

import math

import pandas as pd

from mimisim.analysis.invariants import Context, Digest, Violation, _flag, _user, register

#: Role indices that put a user out of the room: 0 (not listed), 1 (banned).
_OUT = (0, 1)


def _accepted_applications(trace: pd.DataFrame) -> dict[str, tuple[int, float, str]]:
    """msg id -> (seq, time, room) of the hub's first acceptance of each
    application message (a retry's duplicate acceptance is not a new one)."""
    acc = trace[(trace["kind"] == "hub.accept") & (trace["message"] == "application") & ~_flag(trace["duplicate"])]
    out: dict[str, tuple[int, float, str]] = {}
    for m, s, t, r in zip(acc["msg_id"], acc["seq"], acc["t_ms"], acc["room"], strict=True):
        if m not in out:
            out[m] = (int(s), float(t), r)
    return out


def removal_windows(d: Digest) -> dict[tuple[str, str], list[tuple[int, int]]]:
    """(room, user) -> the hub-seq intervals ``[removed, listed again)``
    during which the user was out of the room, from the hub's commits that
    were not lost in a failover (an interval still open ends at +inf, as a
    very large seq)."""
    out: dict[tuple[str, str], list[tuple[int, int]]] = {}
    open_: dict[tuple[str, str], int] = {}
    for c in sorted((c for c in d.commits if not c.lost), key=lambda c: c.seq):
        for user, old, new in c.changes:
            k = (c.room, user)
            if new in _OUT and old not in _OUT and k not in open_:
                open_[k] = c.seq
            elif new not in _OUT and k in open_:
                out.setdefault(k, []).append((open_.pop(k), c.seq))
    for k, start in open_.items():
        out.setdefault(k, []).append((start, 1 << 62))
    return out


def no_delivery_after_removal(d: Digest, ctx: Context) -> list[Violation]:
    """No application message accepted after a user's removal was committed
    reaches (is read by) one of that user's clients, until the user is
    listed again ([P6] s.5.3)."""
    windows = removal_windows(d)
    if not windows:
        return []
    accepted = _accepted_applications(d.trace)
    out: list[Violation] = []
    for r in d.rows("client.deliver").itertuples(index=False):
        acc = accepted.get(r.msg_id)
        if acc is None:
            continue
        aseq, at, room = acc
        user = _user(r.node)
        for start, end in windows.get((room, user), ()):
            if start < aseq < end:
                out.append(Violation(
                    "no_delivery_after_removal",
                    f"{r.node} read {r.msg_id}, accepted at {at:.0f} ms after {user}'s removal from {room} "
                    "was committed", (start, aseq, int(r.seq))))
                break
    return out


def received_after_leave(trace: pd.DataFrame, leaves: list[tuple[str, str, float, float]]) -> list[int]:
    """For each leave ``(room, user URI, asked_ms, removed_ms)``, how many
    application messages the hub accepted after ``asked_ms`` (when the user
    asked to leave, e.g. its first leave proposal) and before ``removed_ms``
    (the hub's acceptance of the commit that removed it; NaN: the run's end)
    a client of that user read (``client.deliver``). What came after the
    removal is :func:`no_delivery_after_removal`'s business. A NaN
    ``asked_ms`` counts 0."""
    if not leaves:
        return []
    accepted = _accepted_applications(trace)
    deliver = trace[trace["kind"] == "client.deliver"]
    got: dict[tuple[str, str], list[float]] = {}
    for m, node in zip(deliver["msg_id"], deliver["node"], strict=True):
        acc = accepted.get(m)
        if acc is not None:
            got.setdefault((acc[2], _user(node)), []).append(acc[1])
    out = []
    for room, user, asked, removed in leaves:
        if asked != asked:
            out.append(0)
            continue
        end = math.inf if removed != removed else removed
        out.append(sum(1 for a in got.get((room, user), []) if asked < a < end))
    return out


def leave_windows(d: Digest) -> dict[tuple[str, str], list[tuple[int, int]]]:
    """(room, user) -> hub-seq intervals ``[leave accepted, listed again)``:
    from the hub's first acceptance of each leave proposal bundle (a
    ``client.propose`` of operation ``leave``) until a later commit lists the
    user with an active role again (open: a very large seq). With
    ``leave_delivery: proposal`` the user's clients get no application
    message accepted in such an interval (``no_loss`` does not expect them)."""
    props = d.rows("client.propose")
    props = props[props["operation"] == "leave"]
    if not len(props):
        return {}
    acc = d.rows("hub.accept")
    acc = acc[(acc["status"] == "success") & ~_flag(acc["duplicate"])]
    first: dict[str, int] = {}
    for m, s in zip(acc["msg_id"], acc["seq"], strict=True):
        first.setdefault(m, int(s))
    relisted: dict[tuple[str, str], list[int]] = {}
    for c in d.commits:
        if c.lost:
            continue
        for user, old, new in c.changes:
            if new not in _OUT and old in _OUT:
                relisted.setdefault((c.room, user), []).append(c.seq)
    out: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for r in props.itertuples(index=False):
        s = first.get(r.msg_id)
        if s is None:
            continue
        k = (r.room, _user(r.node))
        end = min([x for x in relisted.get(k, []) if x > s] or [1 << 62])
        out.setdefault(k, []).append((s, end))
    return out


register("no_delivery_after_removal", no_delivery_after_removal)
