"""Invariants of what the user sees (issue 11): the order in which a
client shows a room's messages.

The ordering invariants of :mod:`mimisim.analysis.invariants` judge epochs
(commits); an application message is judged only for arriving at all
(``no_loss``) and once (``no_duplicate``). A client that shows messages in
another order than the hub's passes them all: its MLS layer reads a message
of its epoch whenever it comes. What order is promised, and why, is in
``docs/invariants.md`` ("display_order").
"""

from __future__ import annotations

from mimisim.analysis.invariants import Context, Digest, Violation, _flag, register


def display_order(d: Digest, ctx: Context) -> list[Violation]:
    """Every client shows a room's application messages in the hub's order:
    the order in which the hub accepted them (its ``acceptedTimestamp``,
    draft-ietf-mimi-content, "Message Ordering": "Message ordering is provided by the Hub").
    A ``client.deliver`` of a message the hub accepted before one the same
    client already showed is a violation (rows: both deliveries).

    Judged only when every hop promises order: the hub sends a room's
    ``/notify`` requests to a follower one at a time (``protocol.
    notify_pipelining: false``, the draft's "ordered list of MLS-protected
    events"), and providers hand messages to their clients over an ordered
    connection. With pipelined notifies nothing promises order (the client
    core does not reorder by timestamp) and the check is skipped. Messages
    in ``hub.lost`` (accepted by a hub whose successor never learnt them)
    have no place in the order and are not judged."""
    out: list[Violation] = []
    if not ctx.ordered_fanout:
        return out
    acc = d.rows("hub.accept")
    acc = acc[(acc["status"] == "accepted") & ~_flag(acc["duplicate"])]
    pos: dict[str, int] = {}
    for mid, seq in zip(acc["msg_id"], acc["seq"], strict=True):
        if isinstance(mid, str) and mid not in pos and mid not in d.lost_msgs:
            pos[mid] = int(seq)
    deliver = d.rows("client.deliver")
    shown: dict[tuple[str, str], tuple[int, str, int]] = {}  # (client, room) -> latest hub position shown
    flagged: set[tuple[str, str]] = set()
    for node, room, mid, seq in zip(deliver["node"], deliver["room"], deliver["msg_id"], deliver["seq"], strict=True):
        p = pos.get(mid)
        if p is None:
            continue
        key = (node, room)
        last = shown.get(key)
        if last is not None and p < last[0]:
            if key not in flagged:  # one violation per client and room: the first inversion
                flagged.add(key)
                out.append(Violation(
                    "display_order", f"{node} showed {mid} (accepted by the hub earlier) after {last[1]} in {room}",
                    (last[2], int(seq), p, last[0])))
            continue
        shown[key] = (p, mid, int(seq))
    return out


register("display_order", display_order)
