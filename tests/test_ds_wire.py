"""The draft-robert-mimi-delivery-service wire bodies (mimisim.mimi.ds.wire):
round trips of every request and response body built from real MLS messages,
known-answer encodings written by hand from the draft's struct definitions,
the bodies' own-shape rules, and hypothesis bit flips and truncations that must
never raise anything but DecodeError."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mimisim.codec import DecodeError, EncodeError
from mimisim.mimi.ds import wire as D
from mimisim.mls.keypackage import create_key_package
from mimisim.mls.observer import partial_group_info
from mimisim.mls.structs import Add, Credential, MLSMessage, Proposal, Remove
from tests.hypothesis_profiles import examples

try:
    from mls_harness import World
except ImportError:  # pragma: no cover
    from tests.mls_harness import World

FAST = settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _samples() -> dict[str, Any]:
    """Real MLS messages of every kind the DS bodies carry."""
    w = World.create(7)
    w.op_add(random.Random(1), 2)
    c0 = w.clients["c0"]
    g = c0.group
    assert g is not None
    new = w.new_client()
    kp, _priv = create_key_package(w.suite, Credential.basic(b"cx"), new.sig_priv, w.rng.fork("kp-x"))
    out = g.commit([Proposal.of(Add(kp))])
    pgi = partial_group_info(out.group_info)
    proposal = w.clients["c2"].group.propose(Proposal.of(Remove(1)))  # type: ignore[union-attr]
    app = w.clients["c1"].group.protect(b"hello")  # type: ignore[union-attr]
    return {
        "commit": out.message,
        "welcome": out.welcome,
        "pgi": D.PartialGroupInfo(pgi.group_info_extensions, pgi.signature),
        "proposal": proposal,
        "app": app,
        "group_info": MLSMessage.wrap(out.group_info),
        "tree": w.observer.ratchet_tree(),
        "kp": kp,
    }


S = _samples()


def _update() -> D.MLSGroupUpdate:
    return D.MLSGroupUpdate(S["commit"], S["pgi"])


def request_bodies() -> list[Any]:
    return [
        D.DeleteGroupRequest(_update()),
        D.ProposalRequest([S["proposal"], S["proposal"]]),
        D.CommitRequest([_update()], [S["welcome"]]),
        D.CommitRequest([_update(), _update()], []),
        D.SendMessageRequest([S["app"]]),
        D.KeyPackagesRequest([b"alice@a.example/1", b"bob@b.example/2"]),
        D.GroupInfoRequest(b"group-7"),
        D.WelcomeInfoRequest(b"room", b"\x01" * 32),
    ]


def response_bodies() -> list[D.DSResponseBody]:
    return [
        D.DSResponseBody.ok(),
        D.DSResponseBody.of(D.DSError(D.DSErrorCode.wrong_epoch, None, "epoch 3 is gone", 4)),
        D.DSResponseBody.of(D.DSError(D.DSErrorCode.rate_limited, 1500, "", None)),
        D.DSResponseBody.of(D.WelcomeInfo(S["tree"])),
        D.DSResponseBody.of(D.ExternalCommitInfo(S["group_info"], S["tree"])),
        D.DSResponseBody.of(D.KeyPackages([S["kp"], S["kp"]])),
    ]


def all_values() -> list[Any]:
    out: list[Any] = []
    for i, body in enumerate(request_bodies()):
        rb = D.DSRequestBody.of(body)
        auth = D.DSAuthData.anonymous() if i % 2 else D.DSAuthData.client_signature(i, bytes(range(64)))
        out += [rb, D.DSRequest(D.DS10, rb, auth), D.ClientSignatureTBS(D.DS10, rb, i)]
    for rb in response_bodies():
        out += [rb, D.DSResponse(D.DS10, rb)]
    tokens = [D.FanoutAuthToken(b"t1"), D.FanoutAuthToken(b"")]
    for m in ("app", "proposal", "commit", "welcome"):
        out.append(D.DSFanoutRequest(D.DS10, [b"a", b"b"], tokens, S[m]))
    out += [
        D.DSFanoutResponse(D.DS10, D.DSFanoutResponseBody.ok()),
        D.DSFanoutResponse(D.DS10, D.DSFanoutResponseBody.fail(
            D.DSFanoutError(D.DSFanoutErrorCode.rate_limited, 250, [b"a"], "too fast"))),
        D.DSFanoutResponse(D.DS10, D.DSFanoutResponseBody.fail(
            D.DSFanoutError(D.DSFanoutErrorCode.invalid_token, None, [b"b"], "stale token"))),
        _update(),
        S["pgi"],
    ]
    return out


VALUES = all_values()


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_round_trip(value: Any) -> None:
    data = value.encode()
    back = type(value).decode(data)
    assert back == value
    assert back.encode() == data


def test_every_request_and_response_type_is_covered() -> None:
    assert {D.DSRequestBody.of(b).request_type for b in request_bodies()} == set(D.DSRequestType)
    assert {b.response_type for b in response_bodies()} == set(D.DSResponseType)


# ---------------------------------------------------------------- known answers (by hand from the draft)


def test_known_answer_group_info_request_anonymous() -> None:
    # version u16 | request_type u8 (ds_group_info=5) | group_id<V> | auth_type u8 (Anonymous=0)
    req = D.DSRequest(D.DS10, D.DSRequestBody.of(D.GroupInfoRequest(b"abc")), D.DSAuthData.anonymous())
    assert req.encode() == bytes.fromhex("0001" "05" "03616263" "00")


def test_known_answer_key_packages_request_client_signature() -> None:
    # ClientID client_identifiers<V>: varint total length 5 = (01 'a') (02 'bc');
    # ClientSignature: u32 sender_index, opaque signature<0..255> (one length byte)
    req = D.DSRequest(
        D.DS10,
        D.DSRequestBody.of(D.KeyPackagesRequest([b"a", b"bc"])),
        D.DSAuthData.client_signature(7, b"\xab\xcd"),
    )
    assert req.encode() == bytes.fromhex("0001" "04" "05" "0161" "026263" "01" "00000007" "02abcd")
    tbs = req.tbs(7)
    assert tbs.encode() == bytes.fromhex("0001" "04" "05" "0161" "026263" "00000007")


def test_known_answer_responses() -> None:
    err = D.DSResponse(D.DS10, D.DSResponseBody.of(D.DSError(D.DSErrorCode.rate_limited, 1000, "slow", None)))
    assert err.encode() == bytes.fromhex("0001" "01" "0a" "00000000000003e8" "04736c6f77")
    assert D.DSResponse(D.DS10, D.DSResponseBody.ok()).encode() == bytes.fromhex("0001" "00")
    assert D.DSResponse(D.DS10, D.DSResponseBody.of(D.WelcomeInfo([]))).encode() == bytes.fromhex("0001" "02" "00")
    assert D.DSFanoutResponse(D.DS10, D.DSFanoutResponseBody.ok()).encode() == bytes.fromhex("0001" "00")


def test_known_answer_fanout_request_prefix() -> None:
    msg = S["app"]
    req = D.DSFanoutRequest(D.DS10, [b"x"], [D.FanoutAuthToken(b"\x01\x02")], msg)
    assert req.encode() == bytes.fromhex("0001" "02" "0178" "03" "020102") + msg.encode()


# ---------------------------------------------------------------- shape rules


def test_shape_rules_refused_both_ways() -> None:
    cases: list[tuple[Any, str]] = [
        (D.DSFanoutRequest(D.DS10, [b"a", b"b"], [D.FanoutAuthToken(b"")], S["app"]), "tokens"),
        (D.DSFanoutRequest(D.DS10, [b"a", b"a"], [D.FanoutAuthToken(b"")] * 2, S["app"]), "duplicate"),
    ]
    for value, why in cases:
        with pytest.raises(EncodeError, match=why):
            value.encode()
        out = bytearray()
        type(value)._codec.encode_unchecked(value, out)
        with pytest.raises(DecodeError):
            type(value).decode(bytes(out))


@pytest.mark.parametrize(
    "build",
    [
        lambda: D.SendMessageRequest([S["commit"]]),  # a commit where an application message must be
        lambda: D.ProposalRequest([S["app"]]),
        lambda: D.MLSGroupUpdate(S["proposal"], S["pgi"]),
        lambda: D.SendMessageRequest([]),  # empty where the draft needs at least one
        lambda: D.ExternalCommitInfo(S["welcome"], []),
        lambda: D.DSRequest(0, D.DSRequestBody.of(D.GroupInfoRequest(b"")), D.DSAuthData.anonymous()),
        lambda: D.DSAuthData.client_signature(1, bytes(256)),
        lambda: D.DSRequestBody(D.DSRequestType.ds_commits, D.GroupInfoRequest(b"g")),
        lambda: D.DSResponseBody(D.DSResponseType.Ok, D.WelcomeInfo([])),
    ],
)
def test_wrong_kinds_refused(build: Any) -> None:
    with pytest.raises(EncodeError):
        build().encode()


def test_unknown_request_type_and_reserved_version_rejected() -> None:
    good = D.DSRequest(D.DS10, D.DSRequestBody.of(D.GroupInfoRequest(b"g")), D.DSAuthData.anonymous()).encode()
    with pytest.raises(DecodeError, match="request_type"):
        D.DSRequest.decode(good[:2] + b"\x07" + good[3:])
    with pytest.raises(DecodeError, match="reserved"):
        D.DSRequest.decode(b"\x00\x00" + good[2:])
    # a non-reserved unknown version decodes: the cores answer unsupported_version
    assert D.DSRequest.decode(b"\x00\x02" + good[2:]).version == 2
    with pytest.raises(DecodeError, match="trailing"):
        D.DSRequest.decode(good + b"\x00")


# ---------------------------------------------------------------- fuzz

ENCODED = [(type(v), v.encode()) for v in VALUES]


def _survives(cls: Any, data: bytes) -> None:
    try:
        value = cls.decode(data)
    except DecodeError:
        return
    try:
        value.encode()
    except EncodeError:
        pass


@FAST
@given(st.data())
def test_bit_flips_only_decode_error(data: st.DataObject) -> None:
    cls, enc = data.draw(st.sampled_from(ENCODED))
    buf = bytearray(enc)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] ^= 1 << data.draw(st.integers(0, 7))
    _survives(cls, bytes(buf))


@FAST
@given(st.data())
def test_truncations_are_decode_errors(data: st.DataObject) -> None:
    cls, enc = data.draw(st.sampled_from(ENCODED))
    n = data.draw(st.integers(0, len(enc) - 1))
    with pytest.raises(DecodeError):
        cls.decode(enc[:n])


@FAST
@given(st.sampled_from(sorted({type(v) for v in VALUES}, key=lambda c: c.__name__)), st.binary(max_size=200))
def test_arbitrary_bytes_only_decode_error(cls: Any, data: bytes) -> None:
    _survives(cls, data)
