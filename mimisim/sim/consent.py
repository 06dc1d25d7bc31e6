"""Users answering consent requests (``protocol.consent``, explicit mode).

The draft leaves how a user learns of a consent request to the provider
([P] Convey explicit consent: the target's provider receives the
``requestConsent``; nothing reaches the user's clients). Here each user
looks, every ``answer_delay``, at the requests its provider holds for it
(``ConsentStore.pending_requests``, read through the provider node like the
adversaries read cores) and answers each through one of its clients that is
online: a grant, or a revoke for the users in ``protocol.consent.refuse``.
The answer is the client's ``update_consent`` request, so it travels,
is recorded (``client.consent``) and can be lost like any other.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from mimisim.mimi.identity import domain_of

if TYPE_CHECKING:
    from mimisim.sim.world import World


def start(world: World) -> None:
    """One answering process per provider, when consent is explicit."""
    consent = world.scenario.protocol.consent
    if consent.mode != "explicit":
        return
    refuse = {world.scenario.user_uri(u) for u in consent.refuse}
    for domain in sorted(world.providers):
        world.env.process(_answer(world, domain, float(consent.answer_delay), refuse))


def _answer(world: World, domain: str, every: float, refuse: set[str]) -> Generator[Any, Any, None]:
    env = world.env
    while True:
        yield env.timeout(every)
        node = world.providers[domain]
        store = getattr(node.core, "consent_store", None) if node.up else None  # none under the ds profile
        if store is None:
            continue
        for s in store.pending_requests():
            target = s.target_uri.uri
            if domain_of(target) != domain:
                continue  # a request our user sent (kept for a cancel)
            room = s.room_id.uri if s.room_id is not None else None
            online = [u for u in world.clients_of_user.get(target, []) if world.network.is_online(u, env.now)]
            if not online:
                continue
            client = world.clients[online[0]]
            client.apply(client.core.answer_consent(s.requester_uri.uri, room, target not in refuse, client.now))
