"""Consent store ([P] Consent, Convey explicit consent, Fetch Key Material codes)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mimisim.mimi import wire as W
from mimisim.mimi.consent import ConsentState, ConsentStore, scope
from mimisim.mimi.endpoints import Endpoint
from mimisim.mimi.transport import MimiRequest
from mimisim.mls.crypto import DeterministicRandom, get_suite
from mimisim.mls.keypackage import create_key_package
from mimisim.mls.structs import Credential
from tests.hypothesis_profiles import examples

Code = W.KeyMaterialUserCode
Op = W.ConsentOperation
ALICE = "mimi://a.example/u/alice"
ANN = "mimi://a.example/u/ann"
BOB = "mimi://b.example/u/bob"
CATHY = "mimi://c.example/u/cathy"
R1 = "mimi://a.example/r/one"
R2 = "mimi://a.example/r/two"


def stores(**kw) -> tuple[ConsentStore, ConsentStore]:
    return ConsentStore("a.example", **kw), ConsentStore("b.example", **kw)


def deliver(result, to: ConsentStore, from_domain: str, now_ms: int = 0):
    assert result.ok and result.entry is not None, result.reason
    return to.receive(result.entry, from_domain, now_ms)


def test_the_drafts_example():
    """Alice requests consent from Bob for any room; later Bob grants it. At
    the same time as her request, Alice grants Bob consent to add her."""
    a, b = stores()
    r = a.request(ALICE, BOB, now_ms=1)
    assert isinstance(r.entry, W.RequestConsentBody) and r.entry.consent_operation == Op.request
    assert deliver(r, b, "a.example").status == 201
    assert b.pending_requests(BOB) == [scope(ALICE, BOB)]
    g = a.grant(BOB, ALICE, now_ms=1)  # unsolicited: Bob is the "requester", Alice the target
    assert isinstance(g.entry, W.UpdateConsentBody) and g.entry.consent_operation == Op.grant
    deliver(g, b, "a.example")
    assert b.check(BOB, ALICE) == Code.success and a.check(BOB, ALICE) == Code.success
    assert a.check(ALICE, BOB) == Code.noConsent and b.check(ALICE, BOB) == Code.noConsent
    deliver(b.grant(ALICE, BOB, now_ms=5), a, "b.example", 5)
    assert b.check(ALICE, BOB, R1) == Code.success  # any room
    assert a.may_add(ALICE, BOB, R2)
    assert b.pending_requests() == [] and a.pending_requests() == []  # the grant answered the request
    assert b.decision(ALICE, BOB).state is ConsentState.granted and b.decision(ALICE, BOB).at_ms == 5


def test_room_scoped_consent():
    _, b = stores()
    b.grant(ALICE, BOB, R1)
    assert b.check(ALICE, BOB, R1) == Code.success
    assert b.check(ALICE, BOB, R2) == Code.noConsentForThisRoom
    assert b.check(ALICE, BOB) == Code.noConsent  # not for a room
    assert b.check(ALICE, BOB, "") == Code.noConsent
    assert b.check(CATHY, BOB, R1) == Code.noConsent
    plain = ConsentStore("b.example", distinguish_rooms=False)
    plain.grant(ALICE, BOB, R1)
    assert plain.check(ALICE, BOB, R2) == Code.noConsent


def test_the_most_specific_decision_wins():
    _, b = stores()
    b.grant(ALICE, BOB)
    b.revoke(ALICE, BOB, R1)
    assert b.check(ALICE, BOB, R1) == Code.noConsentForThisRoom
    assert b.check(ALICE, BOB, R2) == Code.success
    b.revoke(ALICE, BOB)
    b.grant(ALICE, BOB, R2)
    assert b.check(ALICE, BOB, R2) == Code.success
    assert b.check(ALICE, BOB, "mimi://a.example/r/three") == Code.noConsent
    assert not b.may_add(ALICE, BOB, R1)


def test_implicit_consent_yields_to_an_explicit_revoke():
    same_domain = ConsentStore("a.example", implicit=lambda r, t, room: r.split("/")[2] == t.split("/")[2])
    assert same_domain.check(ANN, ALICE) == Code.success
    assert same_domain.check(BOB, ALICE) == Code.noConsent
    same_domain.revoke(ANN, ALICE)
    assert same_domain.check(ANN, ALICE) == Code.noConsent


def test_cancel():
    a, b = stores()
    r = a.request(ALICE, BOB, R1)
    deliver(r, b, "a.example")
    before = a.digest()
    assert a.cancel(ALICE, BOB).status == 404 and a.digest() == before  # another scope
    c = a.cancel(ALICE, BOB, R1)
    assert c.changed and c.entry.consent_operation == Op.cancel and a.pending_requests() == []
    assert deliver(c, b, "a.example").changed and b.pending_requests() == []
    again = b.receive(c.entry, "a.example")
    assert again.status == 201 and not again.changed  # no matching request: accepted, nothing done


def test_requests_are_idempotent_and_answered_by_decisions():
    _, b = stores()
    entry = ConsentStore("a.example").request(ALICE, BOB).entry
    assert b.receive(entry, "a.example").changed
    assert not b.receive(entry, "a.example").changed
    b.revoke(ALICE, BOB)
    assert b.pending_requests() == []
    assert b.receive(entry, "a.example").changed  # asking again after a refusal
    b.grant(ALICE, BOB)
    assert not b.receive(entry, "a.example").changed  # already granted
    assert not b.grant(ALICE, BOB).changed
    assert b.grant(ALICE, BOB, now_ms=9).changed  # a new grant (time recorded)


def test_grant_carries_key_packages():
    suite = get_suite(1)
    rng = DeterministicRandom(1, "consent")
    priv, _ = suite.generate_signature_key_pair(rng)
    kp, _ = create_key_package(suite, Credential.basic(b"mimi://b.example/d/bob/phone"), priv, rng)
    a, b = stores()
    g = b.grant(ALICE, BOB, R1, key_packages=[kp])
    assert g.entry.client_key_packages == [kp]
    assert W.UpdateConsentBody.decode(g.entry.encode()) == g.entry
    deliver(g, a, "b.example")
    assert a.key_packages(ALICE, BOB, R1) == (kp.encode(),)
    assert a.key_packages(ALICE, BOB) == ()
    assert b.revoke(ALICE, BOB, R1).entry.client_key_packages is None


@pytest.mark.parametrize(
    "entry, sender, status",
    [
        (scope(ALICE, CATHY), "a.example", 400),  # request for a target that is not ours
        (scope(ANN, BOB), "c.example", 403),  # c.example cannot speak for ann
        (scope("not a uri", BOB), "a.example", 403),
    ],
)
def test_received_requests_are_checked(entry, sender, status):
    _, b = stores()
    body = W.RequestConsentBody(Op.request, entry.requester_uri, entry.target_uri, None, None, W.AppDataDictionary([]))
    before = b.digest()
    r = b.receive(body, sender)
    assert r.status == status and not r.changed and r.reason and b.digest() == before


def test_received_decisions_are_checked():
    a, _ = stores()
    before = a.digest()
    grant = ConsentStore("b.example").grant(ALICE, BOB).entry
    assert a.receive(grant, "c.example").status == 403  # b.example's user, sent by c.example
    foreign = ConsentStore("b.example").grant(CATHY, BOB).entry
    assert a.receive(foreign, "b.example").status == 400  # cathy is not ours
    bad_room = W.UpdateConsentBody(Op.grant, W.IdentifierUri(ALICE), W.IdentifierUri(BOB),
                                   W.IdentifierUri("room 1"), [], W.AppDataDictionary([]))  # fmt: skip
    assert a.receive(bad_room, "b.example").status == 400
    assert a.digest() == before
    assert a.receive(grant, "b.example").status == 201


def test_unknown_users():
    hidden = ConsentStore("b.example", local_users=[BOB])
    shown = ConsentStore("b.example", local_users=[BOB], reveal_unknown_users=True)
    entry = ConsentStore("a.example").request(ALICE, "mimi://b.example/u/nobody").entry
    before = hidden.digest()
    assert hidden.receive(entry, "a.example").status == 201 and hidden.digest() == before
    assert shown.receive(entry, "a.example").status == 404
    assert shown.receive(ConsentStore("a.example").request(ALICE, BOB).entry, "a.example").changed


def test_local_operations_are_checked():
    a, _ = stores()
    before = a.digest()
    assert a.request(BOB, ALICE).status == 403  # the requester must be ours
    assert a.grant(BOB, CATHY).status == 403  # the target must be ours
    assert a.revoke(ALICE, "bob").status == 400
    assert a.request(ALICE, BOB, "room").status == 400
    assert a.digest() == before
    assert a.revoke(BOB, ALICE).changed  # a pre-emptive denial
    assert a.decisions()[0][1].state is ConsentState.revoked


def _request(endpoint: Endpoint, body: bytes, target: str = "b.example", sender: str = "a.example") -> MimiRequest:
    return MimiRequest(endpoint, target, sender, target, body)


def test_endpoint_adapter():
    _, b = stores()
    req = ConsentStore("a.example").request(ALICE, BOB).entry.encode()
    assert b.handle(_request(Endpoint.REQUEST_CONSENT, req), 0).response.status == 201
    assert b.handle(_request(Endpoint.REQUEST_CONSENT, req, target="c.example"), 0).response.status == 404
    assert b.handle(_request(Endpoint.REQUEST_CONSENT, req, sender="c.example"), 0).response.status == 403
    grant = ConsentStore("b.example").grant(ALICE, BOB).entry.encode()
    assert b.handle(_request(Endpoint.REQUEST_CONSENT, grant), 0).response.status == 400  # wrong body type
    assert b.handle(_request(Endpoint.UPDATE_CONSENT, b"\x09"), 0).response.status == 400
    assert b.handle(_request(Endpoint.NOTIFY, req), 0).response.status == 400
    misaddressed = ConsentStore("a.example").request(ALICE, CATHY).entry.encode()
    assert b.handle(_request(Endpoint.REQUEST_CONSENT, misaddressed), 0).response.status == 400
    shown = ConsentStore("b.example", local_users=[BOB], reveal_unknown_users=True)
    nobody = ConsentStore("a.example").request(ALICE, "mimi://b.example/u/x").entry.encode()
    assert shown.handle(_request(Endpoint.REQUEST_CONSENT, nobody), 0).response.status == 404
    a = ConsentStore("a.example")
    out = a.handle(_request(Endpoint.UPDATE_CONSENT, grant, target="a.example", sender="b.example"), 0)
    assert out.response.status == 201 and a.check(ALICE, BOB) == Code.success


ROOMS = [None, R1, R2]


@settings(max_examples=examples(150), deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["grant", "revoke"]), st.sampled_from(ROOMS)), max_size=8),
       st.sampled_from(ROOMS), st.booleans())  # fmt: skip
def test_check_follows_the_most_specific_decision(ops, room, distinguish):
    b = ConsentStore("b.example", distinguish_rooms=distinguish)
    last: dict[str | None, str] = {}
    for op, r in ops:
        getattr(b, op)(ALICE, BOB, r)
        last[r] = op
    for_room = Code.noConsentForThisRoom if distinguish else Code.noConsent
    if room is not None and room in last:
        expected = Code.success if last[room] == "grant" else for_room
    elif None in last:
        expected = Code.success if last[None] == "grant" else Code.noConsent
    elif room is not None and any(v == "grant" for k, v in last.items() if k is not None):
        expected = for_room
    else:
        expected = Code.noConsent
    assert b.check(ALICE, BOB, room) == expected


@settings(max_examples=examples(100), deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["request", "cancel", "grant", "revoke"]),
                          st.sampled_from([ALICE, BOB, "x"]), st.sampled_from([ALICE, BOB, "x"]),
                          st.sampled_from(ROOMS)), max_size=10))  # fmt: skip
def test_refused_operations_change_nothing(ops):
    a = ConsentStore("a.example")
    for op, requester, target, room in ops:
        before = a.digest()
        r = getattr(a, op)(requester, target, room)
        if not r.ok:
            assert a.digest() == before and r.entry is None
        elif not r.changed:
            assert a.digest() == before
