"""Liveness and robustness invariants (issue 11, item 2): added clients
join, members converge over the participant list, resyncs have a cause,
exchanges end, nothing fails inside a core, and rooms make progress once
the faults are over.

The ordering and safety invariants of :mod:`mimisim.analysis.invariants`
look at the rows clients left; a client that never joined leaves none, and a
gap silently repaired by a resync looks healthy. These checkers look for
what is *missing*: a join that never happened, a request never answered, an
accepted room that stopped accepting. They read the common columns
(``kind, node, peer, room, epoch, msg_id, req_id, status``) and the hub's
commits as :class:`~mimisim.analysis.invariants.Digest` has them (committer,
epochs, role changes), never ``detail``. What each one catches, and the
trace facts still missing for the rest of item 2, are in
``docs/invariants.md``.
"""

from __future__ import annotations

from mimisim.analysis.invariants import (
    GAP_TIMEOUT_MS,
    Context,
    Digest,
    HubCommit,
    Violation,
    _user,
    _volatile_windows,
    register,
)


def _roles(d: Digest) -> dict[str, list[tuple[HubCommit, str, int, int]]]:
    """room -> every role change the hub's non-lost commits made, in order:
    (commit, user, old role, new role)."""
    out: dict[str, list[tuple[HubCommit, str, int, int]]] = {}
    for c in d.commits:
        if c.lost:
            continue
        for user, old, new in c.changes:
            out.setdefault(c.room, []).append((c, user, old, new))
    return out


def _steps(d: Digest) -> dict[tuple[str, str], list[tuple[float, int, str]]]:
    """(client, room) -> its client.epoch rows (t_ms, epoch, status)."""
    ep = d.rows("client.epoch")
    out: dict[tuple[str, str], list[tuple[float, int, str]]] = {}
    for node, room, t, e, st in zip(ep["node"], ep["room"], ep["t_ms"], ep["epoch"], ep["status"], strict=True):
        out.setdefault((node, room), []).append((float(t), int(e), str(st)))
    return out


def _join_bound(ctx: Context) -> float:
    """How long after the world is quiet an added client must have joined:
    the Welcome's notify (settle) plus one gap timeout (a Welcome that
    raced its commit is recovered by a resync)."""
    return ctx.bounds.settle_ms + GAP_TIMEOUT_MS


def joins_complete(d: Digest, ctx: Context) -> list[Violation]:
    """Every client of a user a commit adds (role 0/1 -> active) reaches
    the room at that commit's epoch or later within the join bound after
    the world is quiet, unless a later commit removed the user again first.
    The clients are the user's devices in the scenario that exist from the
    start (``Context.clients_of_user``); a client that never joined has no
    rows, which is why the row-based invariants cannot see it."""
    out: list[Violation] = []
    if not ctx.clients_of_user:
        return out
    steps = _steps(d)
    bound = _join_bound(ctx)
    for room, changes in _roles(d).items():
        for i, (c, user, old, new) in enumerate(changes):
            if new in (0, 1) or old not in (0, 1):
                continue
            deadline = d.quiet_after(c.t_ms) + bound
            if d.end_ms < deadline:
                continue
            gone = next((x for x, u, _, n in changes[i + 1:] if u == user and n in (0, 1)), None)
            if gone is not None and gone.t_ms <= deadline:
                continue
            for client in ctx.clients_of_user.get(user, ()):
                rows = [(t, e) for t, e, st in steps.get((client, room), []) if t >= c.t_ms and st != "removed"]
                if not any(e >= c.new and t <= deadline for t, e in rows):
                    late = next((t for t, e in rows if e >= c.new), None)
                    what = "never joined" if late is None else f"joined only {late - c.t_ms:.0f} ms later"
                    out.append(Violation(
                        "joins_complete", f"{client}: commit {c.msg_id} added {user} to {room} at "
                        f"{c.t_ms:.0f} ms (epoch {c.new}); the client {what} (bound {bound:.0f} ms after the "
                        "last fault)", (c.seq,)))
    return out


def members_converged(d: Digest, ctx: Context) -> list[Violation]:
    """At the end, every client of every user the hub's participant list
    (replayed from the commits' role changes) holds as active in a room is
    a member at the hub's last epoch, given the quiet time of
    ``converged`` after the last commit and after the user's add, and on
    the hub's branch (the tree fingerprint of its last epoch is the hub's).
    Unlike ``converged`` this judges the hub's list, so a client that never
    got its Welcome counts, and a member left on a branch the hub lost in a
    lagging failover counts too. Users active from the room's creation (the creator)
    are judged only over the clients that have rows: the workload creates a
    room with one client of its creator."""
    out: list[Violation] = []
    steps = _steps(d)
    last: dict[str, HubCommit] = {}
    for c in d.commits:
        if not c.lost:
            last[c.room] = c
    quiet = ctx.bounds.settle_ms + GAP_TIMEOUT_MS
    trees: dict[tuple[str, str], str] = {}  # (client, room) -> tree fingerprint of its last epoch
    ep = d.rows("client.epoch")
    if "tree_fp" in ep.columns:
        for node, room, tree in zip(ep["node"], ep["room"], ep["tree_fp"], strict=True):
            if isinstance(tree, str) and tree:
                trees[(node, room)] = tree
    for room, changes in _roles(d).items():
        hub = last[room]
        if d.end_ms - d.quiet_after(hub.t_ms) < quiet:
            continue
        active: dict[str, HubCommit] = {}
        for c, user, _, new in changes:
            if new in (0, 1):
                active.pop(user, None)
            elif user not in active:
                active[user] = c
        for user, added in sorted(active.items()):
            if d.end_ms - d.quiet_after(added.t_ms) < quiet:
                continue
            clients = set(ctx.clients_of_user.get(user, ()))
            clients |= {n for (n, r) in steps if r == room and _user(n) == user}
            for client in sorted(clients):
                rows = steps.get((client, room), [])
                if not rows:
                    out.append(Violation("members_converged", f"{client} of {user}, a participant of {room} "
                                         f"since epoch {added.new}, never joined (the hub is at {hub.new})",
                                         (added.seq, hub.seq)))
                elif rows[-1][2] == "removed" or rows[-1][1] < hub.new:
                    state = "removed" if rows[-1][2] == "removed" else f"at epoch {rows[-1][1]}"
                    out.append(Violation("members_converged", f"{client} of {user}, a participant of {room}, "
                                         f"ended {state}; the hub is at {hub.new}", (hub.seq,)))
                elif rows[-1][1] == hub.new and hub.tree and trees.get((client, room)) not in (None, hub.tree):
                    out.append(Violation("members_converged", f"{client} of {user} ended at epoch {hub.new} of "
                                         f"{room} with tree {trees[(client, room)]}, the hub's is {hub.tree}: a "
                                         "forked branch (a commit the hub lost?)", (hub.seq,)))
    return out


def resync_explained(d: Digest, ctx: Context) -> list[Violation]:
    """A client gives up waiting and resyncs (``client.gap`` status
    ``stuck``) only for a cause the trace shows: a volatile crash window
    that ended at most a gap timeout plus ``settle_ms`` earlier, a hub
    commit or message lost in a lagging failover (``hub.lost``) of that
    room, or an adversary's attempt. Durable crashes, partitions, loss and
    offline windows delay messages but never lose them, so a resync after
    them alone means something dropped what it should have kept (and the
    resync hid it)."""
    out: list[Violation] = []
    stuck = d.rows("client.gap")
    stuck = stuck[stuck["status"] == "stuck"]
    if not len(stuck):
        return out
    volatile = _volatile_windows(d)
    lost = d.rows("hub.lost")
    lost_at: dict[str, float] = {}
    for room, t in zip(lost["room"], lost["t_ms"], strict=True):
        lost_at.setdefault(room, float(t))
    attacks = d.rows("adversary.attempt")
    first_attack = float(attacks["t_ms"].min()) if len(attacks) else None
    slack = GAP_TIMEOUT_MS + ctx.bounds.settle_ms
    for node, room, t, seq in zip(stuck["node"], stuck["room"], stuck["t_ms"], stuck["seq"], strict=True):
        t = float(t)
        if any(a <= t and b >= t - slack for a, b in volatile):
            continue
        if room in lost_at and lost_at[room] <= t:
            continue
        if first_attack is not None and first_attack <= t:
            continue
        out.append(Violation("resync_explained", f"{node} in {room} resynced at {t:.0f} ms with no volatile crash, "
                             "lost suffix or attack before it", (int(seq),)))
    return out


def exchanges_end(d: Digest, ctx: Context) -> list[Violation]:
    """Every provider-to-provider request ends: each ``http.request`` gets
    its ``http.response``, ``http.timeout`` or ``http.giveup`` (same node
    and ``req_id``), unless its sender crashed meanwhile or the run ended
    within ``settle_ms`` of it. A request nothing answers and no timer ends
    waits forever."""
    out: list[Violation] = []
    req = d.rows("http.request")
    if not len(req):
        return out
    ends = d.trace[d.trace["kind"].isin(("http.response", "http.timeout", "http.giveup"))]
    ended = set(zip(ends["node"], ends["req_id"], strict=True))
    crashes: dict[str, list[float]] = {}
    cr = d.trace[d.trace["kind"].isin(("fault.crash", "fault.failover"))]
    for node, t in zip(cr["node"], cr["t_ms"], strict=True):
        crashes.setdefault(node, []).append(float(t))
    for node, rid, t, seq in zip(req["node"], req["req_id"], req["t_ms"], req["seq"], strict=True):
        if (node, rid) in ended or d.end_ms - float(t) < ctx.bounds.settle_ms:
            continue
        if any(x >= float(t) for x in crashes.get(node, ())):
            continue
        out.append(Violation("exchanges_end", f"{node}'s request {rid} (at {float(t):.0f} ms) never got an answer, "
                             "a timeout or a give-up", (int(seq),)))
    return out


def no_internal_error(d: Digest, ctx: Context) -> list[Violation]:
    """No core raised: no row has status ``internalError`` (a client core
    turns an exception at its boundary into ``client.drop internalError``;
    the hub and providers answer 500 with that code) and no ``client.error``
    row exists. An exception inside a core is a bug, never noise."""
    t = d.trace
    bad = t[(t["status"] == "internalError") | (t["kind"] == "client.error")]
    return [Violation("no_internal_error", f"{k} at {n}: internal error", (int(s),))
            for k, n, s in zip(bad["kind"], bad["node"], bad["seq"], strict=True)]


def room_progress(d: Digest, ctx: Context) -> list[Violation]:
    """After the last fault has healed (:meth:`Digest.quiet_after`, or the
    last ``hub.lost``) plus a gap timeout (time for behind members to
    resync), a room that members submit to keeps accepting: after every
    ``client.submit`` or ``client.commit`` of the room, the hub accepts
    something in it (``hub.accept`` accepted/success) within ``settle_ms``
    plus a gap timeout. One violation per stalled room (its first
    unanswered submission). Single attempts may still be refused (a
    message encrypted for an epoch a commit just ended is re-encrypted and
    sent again under a new ``msg_id``), so the judgement is per room, not
    per message: a room that refuses everything after the faults stopped
    is stalled."""
    out: list[Violation] = []
    sub = d.trace[d.trace["kind"].isin(("client.submit", "client.commit"))]
    if not len(sub):
        return out
    healed = d.quiet_after(0.0) if d.fault_windows else 0.0
    lost = d.rows("hub.lost")
    if len(lost):
        healed = max(healed, float(lost["t_ms"].max()))
    start = healed + GAP_TIMEOUT_MS if healed > 0 else 0.0
    bound = ctx.bounds.settle_ms + GAP_TIMEOUT_MS
    acc = d.rows("hub.accept")
    acc = acc[acc["status"].isin(("accepted", "success"))]
    times: dict[str, list[tuple[int, float]]] = {}
    for room, t, s in zip(acc["room"], acc["t_ms"], acc["seq"], strict=True):
        times.setdefault(room, []).append((int(s), float(t)))
    rej = d.rows("hub.reject")
    stalled: set[str] = set()
    for node, room, t, seq in zip(sub["node"], sub["room"], sub["t_ms"], sub["seq"], strict=True):
        t = float(t)
        if room in stalled or t < start or d.end_ms - t < bound:
            continue
        if any(s > seq and x <= t + bound for s, x in times.get(room, ())):
            continue
        stalled.add(room)
        later = rej[(rej["room"] == room) & (rej["t_ms"] >= t)]
        codes = sorted(set(later["status"]))
        out.append(Violation(
            "room_progress", f"{room} accepted nothing for {bound:.0f} ms after {node} submitted at {t:.0f} ms "
            f"(faults healed at {healed:.0f} ms; {len(later)} refusal(s) after it"
            + (f": {', '.join(codes)}" if codes else "") + ")", (int(seq),)))
    return out


#: Why a client operation may end without its effect and without a stall:
#: the client's user is no longer in the room, or the provider went away.
GONE = ("removed", "notMember", "connection lost", "Gateway Timeout")

#: Rows that show a client working on (or ending) an operation in a room.
_OP_ROWS = ("client.send", "client.submit", "client.commit", "client.propose", "client.fail")


def operations_taken_up(d: Digest, ctx: Context) -> list[Violation]:
    """Every operation the workload asks of a client is taken up: after a
    ``workload.action`` (not ``skipped``) for a client in a room, that
    client shows work in that room (``client.send``/``submit``/``commit``/
    ``propose``/``fail``) within ``settle_ms`` plus a gap timeout once the
    world is quiet. A client's operations run one at a time per room, so an
    operation whose request is never answered blocks every later one.
    ``operations_end`` judges each user operation to its end by its id;
    this one also sees a workload action that started nothing."""
    out: list[Violation] = []
    t = d.trace
    wa = t[(t["kind"] == "workload.action") & (t["status"] != "skipped") & (t["room"] != "")]
    if not len(wa):
        return out
    work = t[t["kind"].isin(_OP_ROWS)]
    times: dict[tuple[str, str], list[float]] = {}
    for node, room, tm in zip(work["node"], work["room"], work["t_ms"], strict=True):
        times.setdefault((node, room), []).append(float(tm))
    bound = ctx.bounds.settle_ms + GAP_TIMEOUT_MS
    flagged: set[tuple[str, str]] = set()
    for node, room, tm, seq in zip(wa["node"], wa["room"], wa["t_ms"], wa["seq"], strict=True):
        tm = float(tm)
        key = (node, room)
        deadline = d.quiet_after(tm) + bound
        if key in flagged or d.end_ms < deadline:
            continue
        if any(tm <= x <= deadline for x in times.get(key, ())):
            continue
        flagged.add(key)
        out.append(Violation("operations_taken_up", f"{node} was asked to act in {room} at {tm:.0f} ms and did "
                             f"nothing there for {deadline - tm:.0f} ms (a blocked operation queue?)", (int(seq),)))
    return out


#: How long an add may wait for consent under explicit consent (the client's
#: 15 fetches a second apart, mimisim.mimi.client.replies.CONSENT_POLLS).
CONSENT_WAIT_MS = 16_000.0


def operations_end(d: Digest, ctx: Context) -> list[Violation]:
    """Every user operation a client starts (``client.op``, named by its
    ``op_id``) ends (``client.done``: ``done``, or ``failed`` with the
    refusal or error that ended it) within a bound: ``settle_ms`` + a gap
    timeout (+ 16 s of consent polling under explicit consent), counted
    from when the world is quiet after the
    operation could start. A client runs a room's operations one at a
    time, so an operation can start only once every operation of that
    client and room started before it has ended; behind one that never
    ends, the later ones are not judged (one violation, the cause).
    Operations started too close to the end are not judged.

    Unlike ``operations_taken_up`` (some work shows after a workload
    action), this judges each operation to its end: an operation whose
    request is never answered, that waits for an epoch that never comes, or
    whose retries never stop."""
    out: list[Violation] = []
    starts = d.rows("client.op")
    if not len(starts):
        return out
    ends = d.rows("client.done")
    end_of: dict[tuple[str, int], float] = {}
    for node, op, tm in zip(ends["node"], ends["op_id"], ends["t_ms"], strict=True):
        end_of.setdefault((node, int(op)), float(tm))
    extra = CONSENT_WAIT_MS if ctx.explicit_consent else 0.0
    queues: dict[tuple[str, str], list[tuple[float, int, int]]] = {}
    for node, room, op, tm, seq in zip(starts["node"], starts["room"], starts["op_id"], starts["t_ms"],
                                       starts["seq"], strict=True):
        queues.setdefault((node, str(room)), []).append((float(tm), int(op), int(seq)))
    for (node, room), ops in queues.items():
        bound = ctx.bounds.settle_ms + GAP_TIMEOUT_MS + extra
        free = 0.0  # when every earlier operation of this queue had ended
        for tm, op, seq in ops:
            begin = max(tm, free)
            deadline = d.quiet_after(begin) + bound
            end = end_of.get((node, op))
            if end is not None and end <= deadline:
                free = max(free, end)
                continue
            if d.end_ms < deadline:
                break  # too close to the end to judge (and so is everything behind it)
            what = "never ended" if end is None else f"ended only {end - tm:.0f} ms after it was asked for"
            out.append(Violation("operations_end", f"{node}: operation #{op} in {room or '(no room)'}, started at "
                                 f"{tm:.0f} ms, {what} (bound {bound:.0f} ms after it could start and the world "
                                 "was quiet)", (seq,)))
            break  # what queues behind it is blocked by it
    return out


def leave_completes(d: Digest, ctx: Context) -> list[Violation]:
    """Every leave the workload asks for (``workload.action`` with typed
    ``action`` = ``leave``) ends with the user out of the room: a later
    non-lost commit moves the user to role 0 within the room's leave bound
    (``leave_committed``'s) plus a gap timeout for the leave's own retries,
    counted from when the world is quiet. Unlike ``leave_committed``, which
    judges leaves whose proposals the hub accepted, this judges the user's
    request: a leave given up after refused attempts (``client.fail``)
    leaves the user in the room, which is a violation too, except a leave
    the client reports as impossible (``client.fail`` status ``lastMember``:
    the user is the room's last member, and only another member can commit
    a Remove; an MLS group cannot be emptied)."""
    out: list[Violation] = []
    t = d.trace
    if "action" not in t.columns:
        return out
    wa = t[(t["kind"] == "workload.action") & (t["action"] == "leave") & (t["status"] != "skipped")]
    if not len(wa):
        return out
    fail = t[(t["kind"] == "client.fail")]
    if "operation" in fail.columns:
        fail = fail[fail["operation"] == "leave"]
    for node, room, tm, seq in zip(wa["node"], wa["room"], wa["t_ms"], wa["seq"], strict=True):
        tm = float(tm)
        user = _user(node)
        bound = ctx.bounds.leave_base_ms.get(room, GAP_TIMEOUT_MS) + ctx.bounds.settle_ms + GAP_TIMEOUT_MS
        deadline = d.quiet_after(tm) + bound
        done = next((c for c in d.commits if c.room == room and c.seq > seq and not c.lost
                     and any(u == user and n == 0 for u, _, n in c.changes)), None)
        gave_up = fail[(fail["node"] == node) & (fail["room"] == room) & (fail["seq"] > seq)]
        if len(gave_up) and str(gave_up["status"].iloc[0]) == "lastMember":
            continue  # the room's last member: no one can commit its removal (reported, counted)
        # A leave the client gave up because the hub kept refusing it (the
        # hub answered: they could talk) is judged whenever the run ends.
        refused = len(gave_up) and str(gave_up["status"].iloc[0]) not in GONE and done is None
        if not refused and d.end_ms < deadline:
            continue
        if not refused and done is not None and done.t_ms <= deadline:
            continue
        why = f"; the client gave up ({gave_up['status'].iloc[0]})" if len(gave_up) else ""
        rows = (int(seq),) + ((int(gave_up["seq"].iloc[0]),) if len(gave_up) else ())
        what = "is still in it" if done is None else f"was removed only {done.t_ms - tm:.0f} ms later"
        out.append(Violation("leave_completes", f"{user} asked to leave {room} at {tm:.0f} ms and {what}{why}",
                             rows))
    return out


register("joins_complete", joins_complete)
register("members_converged", members_converged)
register("resync_explained", resync_explained)
register("exchanges_end", exchanges_end)
register("no_internal_error", no_internal_error)
register("room_progress", room_progress)
register("operations_taken_up", operations_taken_up)
register("leave_completes", leave_completes)
register("operations_end", operations_end)
