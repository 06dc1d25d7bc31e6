"""The provider core never raises on bad text (issue 11, fuzzing).

Fuzzing the core with mutated live inputs found two exceptions escaping
``handle_request``/``handle_client``: a lone surrogate in a room id, target
or ``From`` (a path ``/update/mimi://a.example/r/%FF`` percent-decodes to
``'\\udcff'``, which cannot be UTF-8) raised UnicodeEncodeError while the
refusal's reason was encoded, and a ``create_room`` whose GroupInfo names
cipher suite 0x0000 raised UnsupportedCipherSuite. Both are 4xx answers now,
and the provider's state is unchanged. The hypothesis tests run every
endpoint and every client operation with arbitrary text, surrogates
included, where the target, ``From`` or room goes.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mimisim.mimi.endpoints import Endpoint
from mimisim.mimi.hub_common import decode_group_info
from mimisim.mimi.transport import ClientMessage, ClientOp, ClientReply, MimiRequest, Outcome
from tests.hypothesis_profiles import examples
from tests.test_mimi_provider import ENDPOINTS, ROOM, A, Case, Net, build, make_fuzz_world

#: Any code point, lone surrogates included (hypothesis leaves them out by default).
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=24)
#: Text that looks like a MIMI URI with arbitrary trailing text.
URI_TEXT = st.builds(lambda kind, rest: f"mimi://a.example/{kind}/{rest}", st.sampled_from("rudx"), ANY_TEXT)
TEXT = st.one_of(ANY_TEXT, URI_TEXT, st.just("mimi://a.example/r/\udcff"), st.just("\udcff"))
_WORLD: list[tuple[Net, dict[Endpoint, Case]]] = []


def fuzz_world() -> tuple[Net, dict[Endpoint, Case]]:
    """A world like test_mimi_provider's fuzz world (one valid body per
    endpoint) but this module's own, since requests here may be accepted."""
    if not _WORLD:
        _WORLD.append(make_fuzz_world())
    return _WORLD[0]


SETTINGS = settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check_refusal_changes_nothing(out: Outcome, before: bytes, after: bytes) -> None:
    resp = out.response
    assert resp is not None
    assert resp.status in (200, 201) or 400 <= resp.status < 500, resp
    if resp.status >= 400:
        assert after == before, resp


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
@SETTINGS
@given(target=TEXT, frm=TEXT, genuine_peer=st.booleans())
def test_arbitrary_target_and_from_are_answered(endpoint: Endpoint, target: str, frm: str,
                                                 genuine_peer: bool) -> None:
    """Every endpoint, a valid body, any text as the path parameter and as
    ``From`` (with the TLS peer either the genuine sender -- the From check
    refuses -- or the text itself, so the request goes further in)."""
    net, cases = fuzz_world()
    case = cases[endpoint]
    p = net.p(case.receiver)
    for t, f in ((target, case.frm), (case.target, frm), (target, frm)):
        peer = case.frm if genuine_peer else f
        before = p.digest()
        out = p.handle_request(MimiRequest(endpoint, t, f, case.receiver, case.body), peer, net.w.now_ms)
        _check_refusal_changes_nothing(out, before, p.digest())


@pytest.mark.parametrize("endpoint", [Endpoint.UPDATE, Endpoint.SUBMIT_MESSAGE, Endpoint.REPORT_ABUSE,
                                      Endpoint.REQUEST_CONSENT, Endpoint.IDENTIFIER_QUERY, Endpoint.KEY_MATERIAL,
                                      Endpoint.NOTIFY], ids=lambda e: e.name)
def test_a_lone_surrogate_is_a_4xx(endpoint: Endpoint) -> None:
    """The cases the fuzzer found, one by one: an unknown room (or user, or
    domain) whose id holds a lone surrogate, and a ``From`` holding one."""
    net, cases = fuzz_world()
    case = cases[endpoint]
    p = net.p(case.receiver)
    for target, frm in (("mimi://a.example/r/\udcff", case.frm), ("\udcff", case.frm), (case.target, "\udcff")):
        before = p.digest()
        out = p.handle_request(MimiRequest(endpoint, target, frm, case.receiver, case.body), case.frm, 0)
        assert out.response is not None and 400 <= out.response.status < 500, (target, frm, out.response)
        assert p.digest() == before


@pytest.mark.parametrize("op", list(ClientOp), ids=lambda o: o.name)
@SETTINGS
@given(room=TEXT, target=TEXT, short_body=st.booleans())
def test_client_operations_with_arbitrary_room_and_target(op: ClientOp, room: str, target: str,
                                                          short_body: bool) -> None:
    """A local client's request naming any room or target is answered (one
    ClientReply or a request sent on); a refusal changes nothing, and what
    is accepted leaves a state that can still be digested (no key that is
    not text)."""
    net, cases = fuzz_world()
    p = net.p(A)
    body = (7).to_bytes(8, "big") if short_body else cases[Endpoint.UPDATE].body
    before = p.digest()
    out = p.handle_client(ClientMessage("mimi://a.example/d/alice/A1", op, 77, body, room, target), 0)
    replies = [a for a in out.actions if isinstance(a, ClientReply)]
    if replies:
        assert len(replies) == 1 and replies[0].status < 500
        if replies[0].status >= 400:
            assert p.digest() == before
    p.digest()


def test_create_room_with_an_unknown_cipher_suite_is_a_400() -> None:
    """A GroupInfo naming cipher suite 0x0000 (no such suite) is refused
    with 400, and no room is created."""
    net = build(5)
    a1, hub = net.cl["a1"], net.p(A)
    room = ROOM.replace("clubhouse", "other")
    step = a1.create_room(room, hub_signature_key=hub.hub_signature_pub, hub_franking_key=hub.franking_key,
                          now_ms=0)
    (msg,) = [m for m in step.messages if m.op == ClientOp.create_room]
    gi = decode_group_info(msg.body)
    for suite in (0x0000, 0xFFFF):
        gi.group_context.cipher_suite = suite
        before = hub.digest()
        out = hub.handle_client(dataclasses.replace(msg, body=gi.encode()), 0)
        (reply,) = out.actions
        assert isinstance(reply, ClientReply) and reply.status == 400, reply
        assert b"cipher suite" in reply.body
        assert hub.digest() == before and room not in hub.rooms
