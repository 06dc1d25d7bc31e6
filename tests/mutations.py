"""Realistic bugs, one per bug class of issue 11, put into the core by
monkeypatching at test time (never a switch in the product).

Each ``apply(mp)`` patches public functions or methods through
:func:`target`, which fails loudly when the patch point has gone (the
client core, the hub and the trace are being restructured: a mutation that
silently patches nothing would count as "escaped" for the wrong reason).
``tests/test_check_mutations.py`` runs the fast ones on small scenarios;
``tests/mutation_matrix.py`` runs every one over the configuration matrix
and reports the catch rate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest


def target(owner: Any, name: str) -> Any:
    """``getattr(owner, name)``, or an AssertionError naming the lost patch point."""
    if not hasattr(owner, name):
        raise AssertionError(f"mutation patch point {getattr(owner, '__name__', owner)}.{name} is gone: "
                             "move the mutation to where that code lives now")
    return getattr(owner, name)


# ---------------------------------------------------------------- providers and the simulator


def durable_crash_loses_deliveries(mp: pytest.MonkeyPatch) -> None:
    """A durable crash loses what the provider had queued for its own
    clients (its access downlinks), as only a volatile one may. The
    clients' gap timeout and resync repair it, which hid it before."""
    from mimisim.sim import nodes

    orig = target(nodes.ProviderNode, "crash")

    def crash(self: Any, state: str | None = None, **kw: Any) -> None:
        durable = (state or self.state) == "durable" and self.up
        orig(self, state, **kw)
        if durable:
            for s in target(self, "downlinks").values():
                s.reset()

    mp.setattr(nodes.ProviderNode, "crash", crash)


def access_out_of_order(mp: pytest.MonkeyPatch) -> None:
    """The client access connection hands messages over in arrival order,
    not in sending order (a reliable but unordered transport)."""
    from mimisim.sim import nodes

    target(nodes.Stream, "_release")

    def release(self: Any) -> None:
        for seq in sorted(self.arrived):
            item = self.arrived.pop(seq)
            self.next_deliver = max(self.next_deliver, seq + 1)
            self.on_arrive(item)

    mp.setattr(nodes.Stream, "_release", release)


def crash_leaves_requests_unanswered(mp: pytest.MonkeyPatch) -> None:
    """When a provider crashes, its clients' in-flight requests are never
    answered (no connection-lost error): those operations wait forever."""
    from mimisim.sim import nodes

    target(nodes.ClientNode, "connection_lost")
    mp.setattr(nodes.ClientNode, "connection_lost", lambda self, request_ids=None: None)


def welcome_first_client_only(mp: pytest.MonkeyPatch) -> None:
    """A follower gives a Welcome only to the first of a user's clients it
    names (the others never join and so leave no rows)."""
    from mimisim.mimi import provider as provider_mod
    from mimisim.mimi import wire as W
    from mimisim.mimi.transport import Deliver

    orig = target(provider_mod.ProviderCore, "_deliver_local")

    def patched(self: Any, room: str, body: bytes) -> Any:
        out = orig(self, room, body)
        if W.FanoutMessage.decode(body).kind == W.MessageKind.welcome:
            seen: set[str] = set()
            keep = []
            for a in out.actions:
                if isinstance(a, Deliver):
                    user = a.client.rsplit("/", 1)[0]
                    if user in seen:
                        continue
                    seen.add(user)
                keep.append(a)
            out.actions = keep
        return out

    mp.setattr(provider_mod.ProviderCore, "_deliver_local", patched)


def key_package_handed_out_twice(mp: pytest.MonkeyPatch) -> None:
    """A one-time KeyPackage stays in the store after a claim, so a second
    add of the same client (another room) gets it again."""
    from mimisim.mimi import keystore

    orig = target(keystore.KeyMaterialStore, "claim")

    def claim(self: Any, *a: Any, **k: Any) -> Any:
        before = self._clients
        out = orig(self, *a, **k)
        self._clients = before
        return out

    mp.setattr(keystore.KeyMaterialStore, "claim", claim)


def notify_txn_id_reused(mp: pytest.MonkeyPatch) -> None:
    """The hub's notify transaction id does not count: every notify of a
    room to one follower carries the same id, so under ``transaction_id``
    dedup the follower drops all but the first as retries (invisible under
    the default ``body_hash``)."""
    from mimisim.mimi import provider as provider_mod

    orig = target(provider_mod.ProviderCore, "_send")

    def send(self: Any, *a: Any, **kw: Any) -> Any:
        if kw.get("txn_id"):
            kw["txn_id"] = kw["txn_id"].rsplit("#", 1)[0] + "#0"
        return orig(self, *a, **kw)

    mp.setattr(provider_mod.ProviderCore, "_send", send)


# ---------------------------------------------------------------- clients and MLS


def skip_application_signature(mp: pytest.MonkeyPatch) -> None:
    """Receivers do not verify an application message's signature."""
    from mimisim.mls import framing
    from mimisim.mls import group as group_mod

    target(group_mod.Group, "_application")
    target(framing, "verify_content")

    def application(self: Any, ac: Any, tree: Any, ctx_bytes: bytes) -> Any:
        li = ac.content.sender.leaf_index
        if li is None or li >= tree.n_leaves or tree.leaf(li) is None:
            raise group_mod.MLSError("application message from a blank leaf")
        return group_mod.ApplicationMessage(li, ac.content.epoch, ac.content.application_data,
                                            ac.content.authenticated_data)

    mp.setattr(group_mod.Group, "_application", application)


def keep_past_epoch_secrets(mp: pytest.MonkeyPatch) -> None:
    """Clients' MLS groups never delete past epochs' secrets (forward
    secrecy lost: a compromise reveals every old epoch)."""
    from mimisim.mimi import client as client_mod

    orig = target(client_mod.ClientCore, "group_config")

    def config(self: Any) -> Any:
        return dataclasses.replace(orig(self), max_past_epochs=1_000_000)

    mp.setattr(client_mod.ClientCore, "group_config", config)


def remove_without_path(mp: pytest.MonkeyPatch) -> None:
    """Remove is left out of the proposal types that need an UpdatePath
    (RFC 9420 s.12.4: a commit with a Remove MUST carry one), and clients
    commit without a path whenever the proposals allow it (a size
    optimisation). A removing commit then changes no secret the removed
    member lacks: it can compute the next epoch and read on. Both sides
    agree, so no ordering or agreement invariant can see it."""
    from mimisim.mls import group as group_mod
    from mimisim.mls import proposals as proposals_mod
    from mimisim.mls.structs import ProposalType

    required = target(proposals_mod, "PATH_REQUIRED")
    mp.setattr(proposals_mod, "PATH_REQUIRED", required - {ProposalType.remove, ProposalType.self_remove})
    orig = target(group_mod.Group, "commit")

    def commit(self: Any, proposals: Any = (), **kw: Any) -> Any:
        if kw.get("path") is None:
            try:
                return orig(self, proposals, **{**kw, "path": False})
            except group_mod.ProposalError:
                pass
        return orig(self, proposals, **kw)

    mp.setattr(group_mod.Group, "commit", commit)


def fanout_to_departed_providers(mp: pytest.MonkeyPatch) -> None:
    """The hub remembers every provider that ever had a member in a room
    and keeps fanning the room's events out to all of them (a recipient
    list that only grows). The departed provider has no member to hand
    them to, so every delivery invariant holds; the room's ciphertexts and
    commits leak to a provider that left."""
    from mimisim.mimi import hub as hub_mod
    from mimisim.mimi.hub_common import FanoutItem

    orig = target(hub_mod.HubRoom, "_fanout_to_room")
    ever: dict[int, set[str]] = {}

    def patched(self: Any, messages: Any, mid: str, kind: str, tree_before: Any,
                sender: frozenset[str] = frozenset()) -> Any:
        items = orig(self, messages, mid, kind, tree_before, sender)
        known = ever.setdefault(id(self), set())
        have = {i.domain for i in items}
        known |= have
        bodies = [m.encode() for m in messages]
        extra = [FanoutItem(dm, b, mid, kind) for dm in sorted(known - have) for b in bodies]
        return items + extra

    mp.setattr(hub_mod.HubRoom, "_fanout_to_room", patched)


def ignore_consent(mp: pytest.MonkeyPatch) -> None:
    """A provider hands out its users' KeyPackages without looking at
    consent (its consent rule never consulted): under explicit consent a
    user is added before, or without, granting it. Every delivery and
    ordering invariant holds: the add just happens sooner."""
    from mimisim.mimi import provider as provider_mod

    target(provider_mod.ProviderCore, "consent_check")
    mp.setattr(provider_mod.ProviderCore, "consent_check", lambda self: None)


def committed_roles_only(mp: pytest.MonkeyPatch) -> None:
    """The hub judges who may send on the committed participant list only,
    ignoring the accepted-but-uncommitted changes ([P] "Room state" applies
    them at once): a user whose leave the hub accepted can still send
    until the commit."""
    from mimisim.mimi import hub as hub_mod

    target(hub_mod.HubRoom, "effective_roles")
    mp.setattr(hub_mod.HubRoom, "effective_roles", lambda self: dict(target(self, "_participants")))


@dataclass(frozen=True)
class Mutation:
    name: str
    bug_class: str
    apply: Callable[[pytest.MonkeyPatch], None]


def all_mutations() -> list[Mutation]:
    """Every mutation: the issue's bug classes plus the ones the first
    mutation tests were written for (``tests/test_check_mutations.py``)."""
    from tests import test_check_mutations as T

    return [
        Mutation("durable crash loses queued deliveries", "durable crash", durable_crash_loses_deliveries),
        Mutation("access link out of order", "client access ordering", access_out_of_order),
        Mutation("crash leaves requests unanswered", "request liveness", crash_leaves_requests_unanswered),
        Mutation("Welcome only to the first client", "joins", welcome_first_client_only),
        Mutation("one-time KeyPackage handed out twice", "key material", key_package_handed_out_twice),
        Mutation("notify txn id reused", "dedup under transaction_id", notify_txn_id_reused),
        Mutation("no application signature check", "authentication", skip_application_signature),
        Mutation("past epochs' secrets never deleted", "forward secrecy", keep_past_epoch_secrets),
        Mutation("removing commit without UpdatePath", "secrecy after removal", remove_without_path),
        Mutation("hub fans out to departed providers", "fanout scope", fanout_to_departed_providers),
        Mutation("key store ignores consent", "explicit consent", ignore_consent),
        Mutation("hub judges senders on committed roles", "effective roles", committed_roles_only),
        Mutation("hub skips the epoch check", "ordering", T.skip_epoch_check),
        Mutation("hub forgets a cached proposal", "leave", T.forget_cached_proposal),
        Mutation("no dedup anywhere", "dedup", T.drop_dedup),
        Mutation("client drops early messages", "buffering", T.deliver_out_of_order),
        Mutation("follower loses one delivery in eight", "delivery", T.lose_notify_delivery),
        Mutation("hub franks with the wrong context", "franking", T.bad_frank),
        Mutation("hub skips the sender's policy check", "policy", T.skip_policy),
    ]
