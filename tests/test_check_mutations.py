"""Faults that bite: each test breaks the protocol core on purpose (a
monkeypatch in the test, never a switch in the product) and shows that the
invariant checks of ``mimisim check`` catch it within a stated number of
seeds. The unbroken core passes the same seeds (``test_unbroken_core_passes``),
so a catch is the mutation's doing, not the scenario's.

Seeds-to-catch (the first seed of 1.. that fails; the bound each test
asserts is in its ``within``): see ``MUTATIONS`` below and docs/invariants.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mimisim import events as E
from mimisim.check import run_checked, shrink
from mimisim.mimi import client as client_mod
from mimisim.mimi import hub as hub_mod
from mimisim.mimi import provider as provider_mod
from mimisim.mimi import wire as W
from mimisim.mimi.transport import Deliver, MimiResponse
from mimisim.sim.scenario import Scenario, load_scenario, load_scenario_text
from tests import mutations as M

BASE = """
name: mutation
seed: 1
duration: {duration}
providers:
  a.example: {{cost: {{per_request: 0.2ms, per_signature: 0.05ms, per_hpke: 0.1ms}}}}
  b.example: {{}}
  c.example: {{}}
users:
  alice: {{provider: a.example, clients: [A1]}}
  bob: {{provider: b.example, clients: [B1, B2]}}
  cathy: {{provider: c.example, clients: [C1]}}
  dave: {{provider: b.example, clients: [D1]}}
rooms:
  room:
    hub: a.example
    participants: {{alice: group_admin, bob: {bob_role}, cathy: ordinary_user, dave: ordinary_user}}
{policy}
network:
  default:
    latency: {{kind: lognormal, median: 30ms, sigma: 0.5}}
    jitter: 10ms
    duplicate: {duplicate}
    reorder: {reorder}
    reorder_extra: {reorder_extra}
workload:
{workload}
"""


def scenario(*, duration: str = "20s", workload: str = "  messages: {rate: 2/s, start: 2s, stop: 14s}",
             duplicate: float = 0.0, reorder: float = 0.0, reorder_extra: str = "60ms",
             bob_role: str = "ordinary_user", policy: str = "", pipelining: bool = False) -> Scenario:
    text = BASE.format(duration=duration, workload=workload, duplicate=duplicate, reorder=reorder,
                       reorder_extra=reorder_extra, bob_role=bob_role, policy=policy)
    if pipelining:  # the hub's notifies leave at once, so link reordering reaches the clients
        text += "protocol:\n  notify_pipelining: true\n"
    return load_scenario_text(text, "mutation.yaml")


#: (mutation's apply function or None, scenario factory, seed) -> the
#: invariants that failed. Why: several tests run the very same (mutation,
#: scenario, seed) and only look at another invariant of it (the three
#: epoch-check tests); each run is simulated once per session and every test
#: still asserts on its own. Under xdist the file runs on one worker
#: (``--dist loadfile``), so this holds there too.
_VERDICTS: dict[tuple[object, object, int], dict[str, list[str]]] = {}


def _failed(apply: Callable[[pytest.MonkeyPatch], None] | None, make: Callable[[], Scenario], seed: int,
            mp: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """The invariants that fail on ``make()`` at ``seed`` with ``apply``
    patched in (None: the unbroken core), each with its violations'
    messages; from the session cache if already run."""
    key = (apply, make, seed)
    if key not in _VERDICTS:
        with mp.context() as m:
            if apply is not None:
                apply(m)
            _, res = run_checked(make(), seed)
        _VERDICTS[key] = {k: [v.message for v in vs] for k, vs in res.items() if vs}
    return _VERDICTS[key]


# ---------------------------------------------------------------- the mutations


def skip_epoch_check(mp: pytest.MonkeyPatch) -> None:
    """The hub does not check a commit's epoch: a commit built on a stale
    epoch is answered ``success`` and relayed to the room (it cannot be
    merged, so the hub's own state stays put). The committer's group forks."""
    orig = hub_mod.HubRoom._update_commit

    def patched(self: Any, bundle: W.HandshakeBundle, mid: str, from_domain: str, now_ms: int,
                routing: Any) -> Any:
        msg = bundle.proposal_or_commit
        c = msg.body.content
        stale = c.epoch != self.epoch and mid not in self.recent_commits
        if not stale:
            return orig(self, bundle, mid, from_domain, now_ms, routing)
        kind, client, _ = self._actor(c.sender, msg.body, from_domain)
        ts = self._ts(now_ms)
        fanout = self._fanout_to_room([W.FanoutMessage.commit(ts, msg, [])], mid, "commit", self.observer.tree,
                                      self._sender_clients(c.sender, self.observer.tree))
        tag = dict(kv.split("=") for kv in hub_mod.state_tag(self.observer.tree_hash, self._participants).split())
        ev = E.HubAccept(room=self.room_uri, epoch=c.epoch, msg_id=mid, status="success", peer=from_domain,
                         message="commit", committer=client, epoch_from=c.epoch, epoch_to=c.epoch + 1, added=0,
                         removed=0, tree_fp=tag["tree"], plist_fp=tag["plist"])
        return hub_mod.HubResult(MimiResponse(200, W.UpdateRoomResponse.success(ts).encode(), "success"), fanout,
                                 [ev])

    mp.setattr(hub_mod.HubRoom, "_update_commit", patched)


def forget_cached_proposal(mp: pytest.MonkeyPatch) -> None:
    """The hub answers ``success`` to proposals (a leave) and relays them,
    but forgets them: its cache and pending list stay as they were."""
    orig = hub_mod.HubRoom._update_proposals

    def patched(self: Any, *args: Any, **kw: Any) -> Any:
        saved = (self.observer, self.pending, self.removal_intents)
        out = orig(self, *args, **kw)
        self.observer, self.pending, self.removal_intents = saved
        return out

    mp.setattr(hub_mod.HubRoom, "_update_proposals", patched)


class _Forgetful(set):  # type: ignore[type-arg]
    """A set that never contains anything: a client's duplicate check, dropped."""

    def __contains__(self, item: object) -> bool:
        return False


def drop_dedup(mp: pytest.MonkeyPatch) -> None:
    """No deduplication anywhere: the follower's notify window never matches,
    the client forgets the ids it has seen, and its MLS layer answers a
    replayed message from a cache of decrypted messages (a plausible
    "tolerate retransmissions" shortcut) instead of refusing it."""
    from mimisim.mimi.dedup import NotifyDeduplicator
    from mimisim.mls.group import Group

    mp.setattr(NotifyDeduplicator, "seen", lambda self, *a, **k: False)
    orig_init = client_mod.Room.__init__

    def init(self: Any, *a: Any, **k: Any) -> None:
        orig_init(self, *a, **k)
        self.seen = _Forgetful()

    mp.setattr(client_mod.Room, "__init__", init)
    orig_process = Group.process
    cache: dict[bytes, Any] = {}

    def process(self: Any, message: Any, *a: Any, **k: Any) -> Any:
        key = message.encode()
        if key in cache:
            return cache[key]
        res = orig_process(self, message, *a, **k)
        cache[key] = res
        return res

    mp.setattr(Group, "process", process)


def deliver_out_of_order(mp: pytest.MonkeyPatch) -> None:
    """The client handles a message of a later epoch as if it could not
    arrive early: it throws it away instead of buffering it (no resync
    timer either), so whatever overtook a commit is lost to it."""
    mp.setattr(client_mod.Inbound, "buffer", lambda self, *a, **k: None)
    mp.setattr(client_mod.Inbound, "arm_gap_timer", lambda self, *a, **k: None)


def lose_notify_delivery(mp: pytest.MonkeyPatch) -> None:
    """A follower answers 201 to a /notify but hands one in eight of its
    messages to nobody (a bug between its queue and its clients)."""
    orig = provider_mod.ProviderCore._deliver_local

    def patched(self: Any, room: str, body: bytes) -> Any:
        out = orig(self, room, body)
        if hashlib.sha256(body).digest()[0] % 8 == 0:
            out.actions = [a for a in out.actions if not isinstance(a, Deliver)]
        return out

    mp.setattr(provider_mod.ProviderCore, "_deliver_local", patched)


def bad_frank(mp: pytest.MonkeyPatch) -> None:
    """The hub franks with the wrong context (another room's URI)."""
    from mimisim.mimi import franking as F

    def patched(self: Any, authenticated_data: bytes, sender: str, ts: int) -> Any:
        tag = F.frank_aad_of(authenticated_data)
        if tag is None or F.franking_agent_of(self.observer.context.extensions) is None:
            return None
        return F.server_frank(self.suite, self.hub_franking_key, tag, sender, self.room_uri + "x", ts)

    mp.setattr(hub_mod.HubRoom, "_frank", patched)


def skip_policy(mp: pytest.MonkeyPatch) -> None:
    """The hub forgets to ask whether the sender's role may send messages."""
    mp.setattr(hub_mod.P, "may_send_message", lambda policy, role: True)


READER_POLICY = """    policy:
      roles:
        no_role: {index: 0}
        banned: {index: 1}
        ordinary_user: {index: 2, capabilities: [canSendMessage, canReceiveMessage, canRemoveSelf],
                        role_changes: {0: [2]}}
        reader: {index: 5, capabilities: [canReceiveMessage]}
        group_admin: {index: 3, capabilities: [canAddParticipant, canRemoveParticipant, canSendMessage,
                      canReceiveMessage, canKick, canAddOwnClient], role_changes: {0: [2, 3, 5]},
                      min_participants: 1}"""


@dataclass(frozen=True)
class Mutation:
    name: str
    apply: Callable[[pytest.MonkeyPatch], None]
    invariant: str
    make: Callable[[], Scenario]
    within: int  # seeds 1..within: at least one fails


# The scenarios, one named function each: tests that share a function share
# its runs (see ``_failed``).


def updates() -> Scenario:
    return scenario(workload="  updates: {rate: 2/s, start: 2s, stop: 12s}")


def leaves() -> Scenario:
    return scenario(duration="30s", workload="  leaves: {rate: 6/min, start: 2s, stop: 12s}")


def duplicates() -> Scenario:
    return scenario(duplicate=0.1)


def reordered() -> Scenario:
    return scenario(duration="25s", reorder=0.5, reorder_extra="150ms", pipelining=True,
                    workload="  messages: {rate: 6/s, start: 2s, stop: 8s}\n"
                    "  updates: {rate: 2/s, start: 2s, stop: 8s}")


def reader() -> Scenario:
    return scenario(bob_role="reader", policy=READER_POLICY)


MUTATIONS = [
    Mutation("skip the epoch check", skip_epoch_check, "hub_total_order", updates, 3),
    Mutation("skip the epoch check (members)", skip_epoch_check, "member_order", updates, 3),
    Mutation("skip the epoch check (agreement)", skip_epoch_check, "agreement", updates, 3),
    Mutation("forget a cached proposal", forget_cached_proposal, "leave_committed", leaves, 3),
    Mutation("drop the dedup", drop_dedup, "no_duplicate", duplicates, 3),
    Mutation("deliver out of order (drop early messages)", deliver_out_of_order, "converged", reordered, 8),
    Mutation("lose a notify's delivery", lose_notify_delivery, "no_loss", scenario, 2),
    Mutation("frank with the wrong context", bad_frank, "franks_verify", scenario, 1),
    Mutation("skip the sender's policy check", skip_policy, "policy", reader, 2),
]


def chaos() -> Scenario:
    """scenarios/chaos.yaml (durable crashes, sync failover, partitions, loss)."""
    return load_scenario(Path(__file__).resolve().parents[1] / "scenarios" / "chaos.yaml")


def txn_scenario() -> Scenario:
    """The small scenario with ``transaction_id`` notify dedup."""
    return load_scenario_text(BASE.format(duration="20s", workload="  messages: {rate: 2/s, start: 2s, stop: 14s}",
                                          duplicate=0.0, reorder=0.0, reorder_extra="60ms", bob_role="ordinary_user",
                                          policy="") + "protocol:\n  dedup: {strategy: transaction_id}\n", "txn.yaml")


def access_scenario() -> Scenario:
    """The small scenario with lossy, jittery client access links (their
    retransmissions are what an unordered access connection would reorder)."""
    text = BASE.format(duration="20s", workload="  messages: {rate: 4/s, start: 2s, stop: 14s}", duplicate=0.0,
                       reorder=0.0, reorder_extra="60ms", bob_role="ordinary_user", policy="")
    access = "  access:\n    default:\n      latency: {kind: uniform, low: 5ms, high: 40ms}\n      loss: 5%\n"
    return load_scenario_text(text.replace("workload:", access + "workload:"), "access.yaml")


# The bug classes of issue 11 that the first nine invariants missed
# (tests/mutations.py; the whole list over the matrix: tests/mutation_matrix.py).
MUTATIONS += [
    Mutation("Welcome only to the first client", M.welcome_first_client_only, "joins_complete", scenario, 1),
    Mutation("Welcome only to the first client (hub's list)", M.welcome_first_client_only, "members_converged",
             scenario, 1),
    Mutation("notify txn id reused under transaction_id", M.notify_txn_id_reused, "converged", txn_scenario, 1),
    Mutation("durable crash loses queued deliveries", M.durable_crash_loses_deliveries, "resync_explained", chaos, 1),
    Mutation("one-time KeyPackage handed out twice", M.key_package_handed_out_twice, "joins_complete", chaos, 1),
    Mutation("access link out of order", M.access_out_of_order, "display_order", access_scenario, 1),
    Mutation("hub fans out to departed providers", M.fanout_to_departed_providers, "fanout_scope",
             lambda: scenario(workload="  messages: {rate: 2/s, start: 2s, stop: 14s}\n  script:\n"
                              "    - {at: 4s, client: C1, action: leave, room: room}"), 1),
]


@pytest.mark.parametrize("m", MUTATIONS, ids=[f"{m.name} -> {m.invariant}" for m in MUTATIONS])
def test_mutation_is_caught(m: Mutation, monkeypatch: pytest.MonkeyPatch) -> None:
    caught = next((s for s in range(1, m.within + 1) if m.invariant in _failed(m.apply, m.make, s, monkeypatch)),
                  None)
    assert caught is not None, f"{m.name}: {m.invariant} held on seeds 1..{m.within}"


#: Every scenario the mutations run, with the most seeds any of them may use.
UNBROKEN = {m.make: max(x.within for x in MUTATIONS if x.make is m.make) for m in MUTATIONS}


@pytest.mark.parametrize("make", list(UNBROKEN), ids=lambda f: f.__name__)
def test_unbroken_core_passes(make: Callable[[], Scenario], monkeypatch: pytest.MonkeyPatch) -> None:
    """The same scenarios and seeds without the mutation break nothing."""
    for seed in range(1, UNBROKEN[make] + 1):
        failed = _failed(None, make, seed, monkeypatch)
        assert not failed, (seed, failed)


def test_shrinking_keeps_the_failure_and_drops_irrelevant_faults(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run with crashes and partitions that fails for a reason no fault
    causes (bad franks) shrinks to the empty schedule."""
    text = BASE.format(duration="20s", workload="  messages: {rate: 2/s, start: 2s, stop: 14s}",
                       duplicate=0.0, reorder=0.0, reorder_extra="60ms", bob_role="ordinary_user",
                       policy="")
    text += ("faults:\n  schedule:\n    - {kind: crash, node: c.example, at: 4s, duration: 1s}\n"
             "    - {kind: partition, at: 6s, duration: 1s, groups: [[a.example], [b.example, c.example]]}\n")
    scn = load_scenario_text(text, "shrink.yaml")
    bad_frank(monkeypatch)
    world, res = run_checked(scn, 1)
    assert res["franks_verify"] and len(world.plan.faults) == 2
    small, runs = shrink(scn, 1, "franks_verify", world.plan)
    assert small.faults == [] and runs <= 4


#: Mutations no invariant can catch yet, and why (docs/invariants.md, "Not built yet"): none today.
KNOWN_ESCAPES: dict[str, str] = {}


@pytest.mark.slow
def test_matrix_catch_rate() -> None:
    """Every mutation of tests/mutations.py over the configuration matrix
    (3 seeds per configuration): all but the known escapes are caught.
    ``python -m tests.mutation_matrix`` prints the same with timings."""
    from tests.mutation_matrix import catch_rate

    res = catch_rate(3)
    escaped = {r.mutation for r in res if not r.caught}
    assert escaped <= set(KNOWN_ESCAPES), escaped - set(KNOWN_ESCAPES)
