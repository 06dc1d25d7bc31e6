"""The provider core's explicit wiring (issue 10): a frozen output envelope,
crypto counts carried on it, typed inputs, the endpoint table as the one
place that says "retry until 201", hub acceptances as data."""

from __future__ import annotations

import dataclasses

import pytest

from mimisim.mimi.endpoints import Endpoint
from mimisim.mimi.hub import HubResult
from mimisim.mimi.transport import (
    Accepted,
    MimiRequest,
    MimiResponse,
    Outcome,
    OutcomeBuilder,
    PeerRequest,
    SendRequest,
)
from mimisim.mls.crypto import OpCounts, get_suite, metered
from tests.test_mimi_provider import ROOM, A, B, build, commit_body, gi_request


def test_the_envelopes_are_frozen_and_hold_tuples() -> None:
    out = Outcome(MimiResponse(201), [], [])  # type: ignore[arg-type]
    assert out.actions == () and out.events == () and out.accepted == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.actions = ()  # type: ignore[misc]
    res = HubResult(MimiResponse(200), [], [])  # type: ignore[arg-type]
    assert res.fanout == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.fanout = ()  # type: ignore[misc]
    b = OutcomeBuilder(MimiResponse(201))
    b.accepted.append(Accepted(ROOM, "m", 1))
    frozen = b.freeze()
    b.accepted.clear()
    assert frozen.accepted == (Accepted(ROOM, "m", 1),)


def test_crypto_is_counted_only_inside_a_metered_block() -> None:
    suite = get_suite(1)
    priv, pub = suite.generate_signature_key_pair(_Rng())
    outer, inner = OpCounts(), OpCounts()
    sig = suite.sign_with_label(priv, b"x", b"y")  # not metered: counted nowhere
    with metered(outer):
        suite.verify_with_label(pub, b"x", b"y", sig)
        with metered(inner):
            suite.sign_with_label(priv, b"x", b"z")
        suite.verify_with_label(pub, b"x", b"y", sig)
    assert outer.snapshot() == (2, 0) and inner.snapshot() == (1, 0)


def test_a_group_info_request_reports_its_crypto_on_the_envelope() -> None:
    """/groupInfo verifies the request's signature, seals the GroupInfo to
    the requester (HPKE) and signs the response: 2 signatures, 1 HPKE."""
    net = build(3)
    b3 = net.cl["b2"]
    out = net.call(A, Endpoint.GROUP_INFO, ROOM, gi_request(b3), frm=B)
    assert out.response is not None and out.response.code == "success"
    assert (out.crypto.signatures, out.crypto.hpke) == (2, 1)
    # A refusal before any crypto costs none.
    bad = net.call(A, Endpoint.GROUP_INFO, ROOM, b"\x00", frm=B)
    assert bad.response is not None and bad.response.status == 400 and bad.crypto.signatures == 0


def test_typed_inputs_and_accepted_inputs() -> None:
    """``handle(PeerRequest(...))`` is the call ``handle_request`` makes; an
    accepted commit is named in ``accepted`` (what replication reads)."""
    net = build(4)
    body, _ = commit_body(net.group("c1"))
    hub = net.p(A)
    epoch = hub.rooms[ROOM].epoch
    out = hub.handle(PeerRequest(MimiRequest(Endpoint.UPDATE, ROOM, "c.example", A, body), "c.example", 0))
    assert out.response is not None and out.response.code == "success"
    (acc,) = out.accepted
    assert acc.room == ROOM and acc.epoch == epoch and acc.msg_id
    assert [e.kind for e in out.events] == ["hub.accept"]
    # A retry of the same commit (a lost answer) is accepted again as a
    # duplicate: the same input, named the same way, nothing fanned out.
    again = hub.handle(PeerRequest(MimiRequest(Endpoint.UPDATE, ROOM, "c.example", A, body), "c.example", 0))
    assert again.accepted == (acc,) and not [a for a in again.actions if isinstance(a, SendRequest)]
    # A refused input is not.
    stale = hub.handle(PeerRequest(MimiRequest(Endpoint.UPDATE, ROOM, B, A, commit_body(net.group("b1"))[0]), B, 0))
    assert stale.response is not None and stale.response.code == "wrongEpoch" and stale.accepted == ()
    notifies = [a for a in out.actions if isinstance(a, SendRequest)]
    assert notifies and all(a.retry_until_done and a.request.endpoint == Endpoint.NOTIFY for a in notifies)


def test_only_notify_is_retried_until_it_succeeds() -> None:
    assert [e for e in Endpoint if e.spec.retried_until_success] == [Endpoint.NOTIFY]
    req = SendRequest(MimiRequest(Endpoint.NOTIFY, ROOM, A, B, b""), 1)
    assert req.done(MimiResponse(201)) and not req.done(MimiResponse(200)) and not req.done(MimiResponse(503))
    other = SendRequest(MimiRequest(Endpoint.UPDATE, ROOM, B, A, b""), 2)
    assert not other.retry_until_done and other.done(MimiResponse(200))


class _Rng:
    def random_bytes(self, n: int) -> bytes:
        return bytes(range(1, n + 1))
