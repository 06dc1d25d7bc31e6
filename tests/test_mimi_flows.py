"""The draft's six example flows through three provider cores and their
clients with the in-memory dispatcher: the provider-to-provider requests of
each step, in order, as the draft's figures draw them."""

from __future__ import annotations

from mimisim.mimi.client import ClientCore
from mimisim.mimi.inmemory import InMemoryWorld
from mimisim.mimi.provider import ProviderCore
from mimisim.mls.crypto import DeterministicRandom

ROOM = "mimi://a.example/r/clubhouse"
ALICE, BOB, CATHY = "mimi://a.example/u/alice", "mimi://b.example/u/bob", "mimi://c.example/u/cathy"
EPOCH_BASE_MS = 1_700_000_000_000
NOTIFY = "POST /notify/a.example/r/clubhouse"


def _agree(w: InMemoryWorld, clients: list[ClientCore]) -> None:
    hub = w.providers["a.example"].rooms[ROOM]
    assert {c.epoch(ROOM) for c in clients} == {hub.epoch}
    assert len({c.epoch_authenticator(ROOM) for c in clients}) == 1
    assert len({c.tree_hash(ROOM) for c in clients}) == 1
    assert all(c.participants(ROOM) == hub.participants() for c in clients)


def test_the_six_example_flows() -> None:
    root = DeterministicRandom(11, "flows")
    w = InMemoryWorld()
    for d in ("a.example", "b.example", "c.example"):
        w.add_provider(ProviderCore.new(d, root.fork("provider " + d)))

    def mk(uri: str) -> ClientCore:
        c = ClientCore(uri, 1, root.fork(uri), now_s=EPOCH_BASE_MS // 1000)
        w.add_client(c)
        return c

    a1 = mk("mimi://a.example/d/alice/ClientA1")
    b1, b2 = mk("mimi://b.example/d/bob/ClientB1"), mk("mimi://b.example/d/bob/ClientB2")
    c1, c2 = mk("mimi://c.example/d/cathy/ClientC1"), mk("mimi://c.example/d/cathy/ClientC2")
    for c in (b1, b2, c1, c2):
        w.client_step(c.client_uri, c.upload_key_packages(2))
    hub = w.providers["a.example"]

    # 1. Alice creates the room: local to the hub, no MIMI request.
    n = len(w.exchanges)
    w.client_step(a1.client_uri, a1.create_room(ROOM, hub_signature_key=hub.hub_signature_pub,
                                                 hub_franking_key=hub.franking_key, now_ms=0))
    assert w.exchange_lines(n) == []
    _agree(w, [a1])

    # 2. Alice adds Bob: the hub fetches Bob's KeyPackages, then notifies b.example (Welcome).
    n = len(w.exchanges)
    w.client_step(a1.client_uri, a1.add_user(ROOM, BOB, w.now_ms))
    assert w.exchange_lines(n) == [
        "a.example->b.example: POST /keyMaterial/b.example/u/bob",
        f"a.example->b.example: {NOTIFY}",
    ]
    _agree(w, [a1, b1, b2])

    # 3. Bob adds Cathy: key material through the hub, /update to the hub,
    #    then notifies to c.example (Welcome) and b.example (commit).
    n = len(w.exchanges)
    w.client_step(b1.client_uri, b1.add_user(ROOM, CATHY, w.now_ms))
    lines = w.exchange_lines(n)
    assert lines[:3] == [
        "b.example->a.example: POST /keyMaterial/c.example/u/cathy",
        "a.example->c.example: POST /keyMaterial/c.example/u/cathy",
        "b.example->a.example: POST /update/a.example/r/clubhouse",
    ]
    assert sorted(lines[3:]) == [f"a.example->b.example: {NOTIFY}", f"a.example->c.example: {NOTIFY}"]
    _agree(w, [a1, b1, b2, c1, c2])

    # 4. Cathy sends a message: /submitMessage to the hub, notifies to b and c.
    n = len(w.exchanges)
    w.client_step(c1.client_uri, c1.send_message(ROOM, "hello", w.now_ms))
    lines = w.exchange_lines(n)
    assert lines[0] == "c.example->a.example: POST /submitMessage/a.example/r/clubhouse"
    assert sorted(lines[1:]) == [f"a.example->b.example: {NOTIFY}", f"a.example->c.example: {NOTIFY}"]
    got = sorted((u, d[2]) for u, d in w.delivered)
    assert got == sorted((c.client_uri, "hello") for c in (a1, b1, b2, c2))

    # 5. Bob leaves: his proposals go to the hub, which caches and fans them
    #    out; the next commit (by a remaining member, at once) must carry them.
    n = len(w.exchanges)
    w.client_step(b1.client_uri, b1.leave(ROOM, w.now_ms))
    lines = w.exchange_lines(n)
    assert lines[0] == "b.example->a.example: POST /update/a.example/r/clubhouse"
    assert f"a.example->c.example: {NOTIFY}" in lines
    # A remaining member's commit reaches the hub by /update (from c.example, or locally at a.example).
    assert b1.rooms() == [] and b2.rooms() == []
    _agree(w, [a1, c1, c2])
    assert BOB not in hub.rooms[ROOM].participants()

    # 6. Cathy adds a new device: /groupInfo, then the external commit by /update.
    c3 = mk("mimi://c.example/d/cathy/ClientC3")
    n = len(w.exchanges)
    w.client_step(c3.client_uri, c3.join_new_device(ROOM, w.now_ms))
    lines = w.exchange_lines(n)
    assert lines[:2] == [
        "c.example->a.example: POST /groupInfo/a.example/r/clubhouse",
        "c.example->a.example: POST /update/a.example/r/clubhouse",
    ]
    assert f"a.example->c.example: {NOTIFY}" in lines[2:]
    _agree(w, [a1, c1, c2, c3])
    assert all(e.status in ("", "Created") or e.kind != "provider.reject" for _, e in w.events)
    assert not [e for _, e in w.events if e.kind in ("client.fail", "provider.reject")]


def test_impersonation_and_notify_from_non_hub_are_refused() -> None:
    from mimisim.mimi.endpoints import Endpoint
    from mimisim.mimi.transport import MimiRequest

    root = DeterministicRandom(12, "imp")
    b = ProviderCore.new("b.example", root.fork("b"))
    before = b.digest()
    req = MimiRequest(Endpoint.NOTIFY, ROOM, "a.example", "b.example", b"\x00")
    out = b.handle_request(req, peer="c.example", now_ms=0)  # c.example claims to be a.example
    assert out.response is not None and out.response.status == 403
    req = MimiRequest(Endpoint.NOTIFY, ROOM, "c.example", "b.example", b"\x00")
    out = b.handle_request(req, peer="c.example", now_ms=0)  # honest c.example, but not the hub
    assert out.response is not None and out.response.status == 403
    req = MimiRequest(Endpoint.NOTIFY, ROOM, "a.example", "b.example", b"\x00\x01garbage")
    out = b.handle_request(req, peer="a.example", now_ms=0)  # the hub, malformed body
    assert out.response is not None and out.response.status == 400
    assert b.digest() == before
