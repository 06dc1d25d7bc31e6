"""Franking per draft-ietf-mimi-protocol-06 (mimisim.mimi.franking).

* sender -> hub -> receiver round trip verifies, over a real MLS
  PrivateMessage and through the wire structs, for every cipher suite;
* every single-bit change to the content (salt included), the tag, the
  server frank or the signature fails verification (exhaustively, bit by bit),
  as does any change to the context;
* each receiver failure status is reached on purpose;
* abuse reports: the hub verifies its own franks, refuses tampered ones,
  other hubs' ones, and franks attached to the wrong room or abuser;
* the MIMI content reader matches the mimi-content draft's example bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac

import pytest

from mimisim.mimi import franking as F
from mimisim.mimi import wire as W
from mimisim.mimi.identity import user_of_client
from mimisim.mls.crypto import DeterministicRandom, get_suite
from mimisim.mls.group import ApplicationMessage, Group
from mimisim.mls.keypackage import create_key_package
from mimisim.mls.structs import (
    Add,
    AppDataDictionary,
    ComponentData,
    Credential,
    Extension,
    ExtensionType,
    MLSMessage,
    Proposal,
    SafeAAD,
    SafeAADItem,
)

HUB = "hub.example"
ROOM = f"mimi://{HUB}/r/clubhouse"
ALICE = "mimi://a.example/u/alice"
ALICE_PHONE = "mimi://a.example/d/alice/phone"
BOB_PHONE = "mimi://b.example/d/bob/phone"
TS = 1_700_000_123_456
SECRET = DeterministicRandom(1, "hub franking").random_bytes(32)
OTHER_SECRET = DeterministicRandom(2, "other hub franking").random_bytes(32)
SALT = bytes(range(16))
SUITE = get_suite(1)


def group_extensions(suite_id: int = 1, secret: bytes = SECRET, domain: str = HUB) -> list[Extension]:
    agent = F.franking_agent_data(get_suite(suite_id), secret, domain)
    d = AppDataDictionary([ComponentData(W.ComponentId.franking_agent, agent.encode())])
    return [Extension(ExtensionType.app_data_dictionary, d.encode())]


@dataclasses.dataclass
class Sent:
    content: bytes
    aad: bytes
    tag: bytes
    frank: W.Frank


def send(content: bytes | None = None, suite_id: int = 1, sender: str = ALICE, secret: bytes = SECRET) -> Sent:
    """Sender builds the AAD; the hub franks what it sees (the tag and the asserted sender)."""
    suite = get_suite(suite_id)
    content = content if content is not None else F.encode_simple_content(SALT, ALICE, ROOM, b"hello, room")
    aad = F.add_frank_aad(content)
    tag = F.frank_aad_of(aad)
    assert tag is not None
    frank = F.server_frank(suite, secret, tag, sender, ROOM, TS)
    # Through the hub's response and fanout wire bodies.
    frank = W.Frank.decode(frank.encode())
    return Sent(content, aad, tag, frank)


def receive(s: Sent, suite_id: int = 1, **changes: object) -> F.FrankVerification:
    args: dict[str, object] = dict(
        suite=get_suite(suite_id),
        group_extensions=group_extensions(suite_id),
        room_uri=ROOM,
        sender_user_uri=ALICE,
        authenticated_data=s.aad,
        application_data=s.content,
        frank=s.frank,
        accepted_timestamp=TS,
    )
    args.update(changes)
    return F.verify_received_frank(**args)  # type: ignore[arg-type]


def flips(data: bytes, start: int = 0, end: int | None = None) -> list[bytes]:
    """``data`` with each single bit in [start, end) flipped, one at a time."""
    end = len(data) if end is None else end
    out = []
    for i in range(start, end):
        for b in range(8):
            m = bytearray(data)
            m[i] ^= 1 << b
            out.append(bytes(m))
    return out


# ---------------------------------------------------------------- round trip


@pytest.mark.parametrize("suite_id", range(1, 8))
def test_round_trip_every_suite(suite_id: int) -> None:
    s = send(suite_id=suite_id)
    assert s.frank.franking_signature_ciphersuite == suite_id
    v = receive(s, suite_id)
    assert v.ok and v.status == F.FrankStatus.ok
    assert v.record is not None and v.record.franking_tag == s.tag
    assert v.record.context == F.franking_context(ALICE, ROOM, TS)
    report = v.record.abusive_message(s.content)
    assert F.verify_abusive_message(get_suite(suite_id), SECRET, report, ROOM, ALICE)
    # Deterministic: same inputs, same frank (ECDSA suites sign deterministically).
    assert send(suite_id=suite_id).frank == s.frank


def test_round_trip_over_mls_and_the_wire() -> None:
    """The AAD rides in a real PrivateMessage; the Frank in the -06 bodies."""
    rng = DeterministicRandom(3, "mls")
    exts = group_extensions()
    sa, _ = SUITE.generate_signature_key_pair(rng)
    sb, _ = SUITE.generate_signature_key_pair(rng)
    kpa, pa = create_key_package(SUITE, Credential.basic(ALICE_PHONE.encode()), sa, rng)
    kpb, pb = create_key_package(SUITE, Credential.basic(BOB_PHONE.encode()), sb, rng)
    alice = Group.create(SUITE, b"mimi://hub.example/g/clubhouse", kpa, pa, rng.fork("a"), extensions=exts)
    out = alice.commit([Proposal.of(Add(kpb))])
    alice.merge_pending_commit()
    assert out.welcome is not None
    bob = Group.join(out.welcome, kpb, pb, rng.fork("b"))

    content = F.encode_simple_content(SALT, ALICE, ROOM, "héllo".encode())
    msg = alice.protect(content, F.add_frank_aad(content))
    req = W.SubmitMessageRequest.decode(W.SubmitMessageRequest(W.MLS10, msg, W.IdentifierUri(ALICE)).encode())
    # Hub: sees only the AAD (PrivateMessage.authenticated_data is in the clear).
    tag = F.frank_aad_of(req.app_message.body.authenticated_data)
    assert tag is not None
    agent = F.franking_agent_of(exts)
    assert agent is not None and F.is_hub_franking_agent(agent, SECRET, SUITE)
    frank = F.server_frank(SUITE, SECRET, tag, req.sending_uri.uri, ROOM, TS)
    resp = W.SubmitMessageResponse.decode(W.SubmitMessageResponse.accepted(TS, frank).encode())
    assert resp.frank == frank
    fm = W.decode_fanout_messages(W.encode_fanout_messages([W.FanoutMessage.application(TS, req.app_message, frank)]))[0]
    # Receiver.
    got = bob.process(MLSMessage.decode(fm.message.encode()))
    assert isinstance(got, ApplicationMessage) and got.data == content
    sender_client = dict(bob.members())[got.sender].credential.identity.decode()
    sender_user = user_of_client(sender_client)
    v = F.verify_received_frank(
        SUITE, bob.extensions, ROOM, sender_user, got.authenticated_data, got.data, fm.frank, fm.timestamp
    )
    assert v.ok
    # Report: AbuseReport round trip, hub verifies.
    assert v.record is not None
    report = W.AbuseReport(W.IdentifierUri(""), W.IdentifierUri(ALICE), 0, "", [v.record.abusive_message(got.data)],
                           AppDataDictionary([]))
    report = W.AbuseReport.decode(report.encode())
    assert all(F.verify_abusive_message(SUITE, SECRET, m, ROOM, report.alleged_abuser_uri.uri) for m in report.messages)


# ---------------------------------------------------------------- single-bit changes


def test_every_bit_of_content_and_salt_matters() -> None:
    s = send()
    salt_at = s.content.index(SALT)
    assert salt_at == 2  # array(7) header, bytes(16) header
    for bad in flips(s.content):
        assert not receive(s, application_data=bad).ok
    # The salt bits, with the rest of the content intact, specifically:
    for bad in flips(s.content, salt_at, salt_at + 16):
        assert receive(s, application_data=bad).status == F.FrankStatus.bad_tag


def test_every_bit_of_tag_server_frank_and_signature_matters() -> None:
    s = send()
    tag_at = s.aad.index(s.tag)
    for bad in flips(s.aad, tag_at, tag_at + 32):
        assert receive(s, authenticated_data=bad).status == F.FrankStatus.bad_tag
    for bad in flips(s.frank.server_frank):
        assert receive(s, frank=dataclasses.replace(s.frank, server_frank=bad)).status == F.FrankStatus.bad_signature
    for bad in flips(s.frank.franking_integrity_signature):
        assert not receive(s, frank=dataclasses.replace(s.frank, franking_integrity_signature=bad)).ok
    for bad in flips(s.aad):  # anywhere in the AAD
        assert not receive(s, authenticated_data=bad).ok


def test_context_changes_break_the_signature() -> None:
    s = send()
    for delta in (1, -1, 1 << 20):
        assert receive(s, accepted_timestamp=TS + delta).status == F.FrankStatus.bad_signature
    # The hub franked a different sender than the content claims.
    assert receive(send(sender="mimi://a.example/u/mallory")).status == F.FrankStatus.bad_signature
    # A frank signed by another hub's key.
    assert receive(send(secret=OTHER_SECRET)).status == F.FrankStatus.bad_signature


# ---------------------------------------------------------------- receiver statuses


def test_receiver_statuses() -> None:
    s = send()
    st = F.FrankStatus
    assert receive(s, authenticated_data=b"", frank=None).status == st.absent
    assert receive(s, authenticated_data=SafeAAD([]).encode(), frank=None).status == st.absent
    assert receive(s, frank=None).status == st.missing_frank
    assert receive(s, authenticated_data=b"").status == st.missing_tag
    assert receive(s, authenticated_data=b"\x05junk").status == st.malformed_aad
    two = SafeAAD([SafeAADItem(0x20, bytes(32)), SafeAADItem(0x20, bytes(32))]).encode()
    assert receive(s, authenticated_data=two).status == st.malformed_aad
    short = SafeAAD([SafeAADItem(0x20, bytes(31))]).encode()
    assert receive(s, authenticated_data=short).status == st.malformed_aad
    assert receive(s, suite=get_suite(3)).status == st.suite_mismatch
    assert receive(s, group_extensions=[]).status == st.no_franking_agent
    assert receive(s, group_extensions=group_extensions(domain="evil.example")).status == st.agent_not_hub
    assert receive(s, group_extensions=group_extensions(secret=OTHER_SECRET)).status == st.bad_signature
    assert receive(s, sender_user_uri="mimi://a.example/u/mallory").status == st.sender_mismatch
    # The content names another room: tag and signature verify, the room check does not.
    other_room = F.encode_simple_content(SALT, ALICE, f"mimi://{HUB}/r/other", b"hello")
    assert receive(send(other_room)).status == st.room_mismatch
    # A receiver given a non-room URI.
    assert receive(s, room_uri="mimi://hub.example/u/x").status == st.room_mismatch
    no_sender = F.encode_simple_content(SALT, None, ROOM, b"hi")
    assert receive(s, application_data=no_sender).status == st.malformed_content


def test_agent_credential_forms() -> None:
    s = send()
    agent = F.franking_agent_data(SUITE, SECRET, HUB)
    assert agent.credential.identity == b"mimi://hub.example"
    for identity, ok in ((b"hub.example", True), (b"mimi://hub.example/u/x", False), (b"\xff", False)):
        a = W.FrankingAgentData(agent.franking_signature_key, Credential.basic(identity))
        d = AppDataDictionary([ComponentData(W.ComponentId.franking_agent, a.encode())])
        exts = [Extension(ExtensionType.app_data_dictionary, d.encode())]
        assert receive(s, group_extensions=exts).ok is ok, identity
    # A malformed component is as good as none.
    d = AppDataDictionary([ComponentData(W.ComponentId.franking_agent, b"\x01")])
    assert F.franking_agent_of([Extension(ExtensionType.app_data_dictionary, d.encode())]) is None


# ---------------------------------------------------------------- sender side


def test_add_frank_aad_merges_sorted_and_replaces() -> None:
    content = F.encode_simple_content(SALT, ALICE, ROOM, b"x")
    existing = SafeAAD([SafeAADItem(0x0005, b"ack"), SafeAADItem(0x0030, b"z"), SafeAADItem(0x0020, bytes(32))])
    out = SafeAAD.decode(F.add_frank_aad(content, existing))
    assert [i.component_id for i in out.aad_items] == [0x0005, 0x0020, 0x0030]
    assert W.FrankAAD.decode(out.aad_items[1].aad_item_data) == F.frank_aad_for(content)
    assert F.add_frank_aad(content, existing.encode()) == out.encode()
    assert F.add_frank_aad(content, None) == F.add_frank_aad(content, b"") == SafeAAD([F.frank_aad_for(content).aad_item()]).encode()
    assert F.frank_aad_of(b"not safe aad") is None
    with pytest.raises(F.ContentError):
        F.frank_aad_for(F.encode_simple_content(SALT, ALICE, None, b"x"))
    with pytest.raises(F.ContentError):
        F.add_frank_aad(b"not cbor")


def test_franking_tag_is_hmac_sha256_of_the_content_under_the_salt() -> None:
    content = F.encode_simple_content(SALT, ALICE, ROOM, b"x")
    assert F.frank_aad_for(content).franking_tag == hmac.new(SALT, content, hashlib.sha256).digest()
    # Even in a SHA-512 suite: -06 fixes HMAC_SHA256 and 32-byte fields.
    s = send(suite_id=5)
    assert len(s.frank.server_frank) == 32


# ---------------------------------------------------------------- abuse reports


def _report(s: Sent | None = None) -> W.AbusiveMessage:
    s = s or send()
    return W.AbusiveMessage(s.content, s.frank, TS)


def test_abuse_report_verification() -> None:
    m = _report()
    st = F.FrankStatus
    assert F.check_abusive_message(SUITE, SECRET, m, ROOM, ALICE) == st.ok
    assert F.check_abusive_message(SUITE, SECRET, m, ROOM) == st.ok  # no abuser named
    assert F.check_abusive_message(None, SECRET, m, ROOM) == st.ok
    assert F.check_abusive_message(SUITE, [OTHER_SECRET, SECRET], m, ROOM) == st.ok  # key rotation
    assert F.check_abusive_message(SUITE, OTHER_SECRET, m, ROOM) == st.bad_server_frank
    assert F.check_abusive_message(SUITE, SECRET, m, f"mimi://{HUB}/r/other") == st.room_mismatch
    assert F.check_abusive_message(SUITE, SECRET, m, ROOM, "mimi://a.example/u/bob") == st.sender_mismatch
    assert F.check_abusive_message(get_suite(3), SECRET, m, ROOM) == st.suite_mismatch
    unknown = dataclasses.replace(m, frank=dataclasses.replace(m.frank, franking_signature_ciphersuite=0x7777))
    assert F.check_abusive_message(None, SECRET, unknown, ROOM) == st.unsupported_suite
    assert F.check_abusive_message(SUITE, SECRET, dataclasses.replace(m, message_content=b"x"), ROOM) == st.malformed_content
    for delta in (1, -1):
        late = dataclasses.replace(m, accepted_timestamp=TS + delta)
        assert F.check_abusive_message(SUITE, SECRET, late, ROOM) == st.bad_server_frank
    # The hub franked a different sender than the content names: the frank
    # does not match the content's sender, so the report is refused.
    assert F.check_abusive_message(SUITE, SECRET, _report(send(sender="mimi://a.example/u/mallory")), ROOM) == st.bad_server_frank
    # A valid HMAC with a signature that is not the hub's: bad_signature.
    other_sig = send(secret=OTHER_SECRET).frank.franking_integrity_signature
    forged = dataclasses.replace(m, frank=dataclasses.replace(m.frank, franking_integrity_signature=other_sig))
    assert F.check_abusive_message(SUITE, SECRET, forged, ROOM) == st.bad_signature


def test_abuse_report_every_bit_matters() -> None:
    m = _report()
    for bad in flips(m.message_content):
        assert not F.verify_abusive_message(SUITE, SECRET, dataclasses.replace(m, message_content=bad), ROOM, ALICE)
    for bad in flips(m.frank.server_frank):
        assert not F.verify_abusive_message(SUITE, SECRET, dataclasses.replace(m, frank=dataclasses.replace(m.frank, server_frank=bad)), ROOM)
    for bad in flips(m.frank.franking_integrity_signature):
        frank = dataclasses.replace(m.frank, franking_integrity_signature=bad)
        assert not F.verify_abusive_message(SUITE, SECRET, dataclasses.replace(m, frank=frank), ROOM)
    for bit in range(64):
        late = dataclasses.replace(m, accepted_timestamp=TS ^ (1 << bit))
        assert not F.verify_abusive_message(SUITE, SECRET, late, ROOM)


def test_hub_keys() -> None:
    k1 = F.hub_franking_keys(SUITE, SECRET)
    assert k1 == F.hub_franking_keys(SUITE, SECRET)
    assert k1.hub_key != F.hub_franking_keys(SUITE, OTHER_SECRET).hub_key
    assert k1.signature_pub == SUITE.signature_public_key(k1.signature_priv)
    assert SECRET.hex() not in repr(k1) and k1.signature_priv.hex() not in repr(k1)
    # One key pair per suite; the hub key is the same.
    k2 = F.hub_franking_keys(get_suite(2), SECRET)
    assert k2.hub_key == k1.hub_key and k2.signature_pub != k1.signature_pub
    agent = F.franking_agent_data(SUITE, SECRET, HUB)
    assert F.is_hub_franking_agent(agent, SECRET, SUITE)
    assert not F.is_hub_franking_agent(agent, OTHER_SECRET, SUITE)
    assert not F.is_hub_franking_agent(agent, SECRET, get_suite(3))


# ---------------------------------------------------------------- MIMI content reader

#: [CONTENT] "Original Message" example, hex dump transcribed from the draft.
DRAFT_ORIGINAL = bytes.fromhex(
    "87"
    "50" "5eed9406c2545547ab6f09f20a18b003"
    "f6" "40" "f6" "f6"
    "a2"
    "01" "7820" "6d696d693a2f2f6578616d706c652e636f6d2f752f616c6963652d736d697468"
    "02" "7825" "6d696d693a2f2f6578616d706c652e636f6d2f722f656e67696e656572696e675f7465616d"
    "85" "01" "60" "01"
    "781e" "746578742f6d61726b646f776e3b76617269616e743d47464d2d4d494d49"
    "5839" "48692065766572796f6e652c207765206a75737420736869707065642072656c"
    "6561736520322e302e205f5f476f6f642020776f726b5f5f21"
)


def test_content_matches_the_draft_example() -> None:
    fields = F.franking_fields(DRAFT_ORIGINAL)
    assert fields == F.FrankingFields(
        bytes.fromhex("5eed9406c2545547ab6f09f20a18b003"),
        "mimi://example.com/u/alice-smith",
        "mimi://example.com/r/engineering_team",
    )
    built = F.encode_simple_content(
        fields.salt,
        fields.sender_uri,
        fields.room_uri,
        b"Hi everyone, we just shipped release 2.0. __Good  work__!",
        "text/markdown;variant=GFM-MIMI",
    )
    assert built == DRAFT_ORIGINAL


def test_content_inside_application_framing() -> None:
    framed = F._ApplicationFraming(F._MediaType(b"application/mimi-content", []), DRAFT_ORIGINAL).encode()
    assert F.franking_fields(framed) == F.franking_fields(DRAFT_ORIGINAL)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "truncated"),
        (bytes.fromhex("86") + DRAFT_ORIGINAL[1:], "7 items"),
        (bytes.fromhex("874f") + bytes(15), "16-byte"),
        (DRAFT_ORIGINAL + b"\x00", "trailing"),
        (DRAFT_ORIGINAL[:-1], "truncated"),
        (bytes.fromhex("9f") + DRAFT_ORIGINAL[1:], "indefinite"),
        (bytes.fromhex("8750") + bytes(16) + bytes.fromhex("f640f6f6a20160016000"), "twice"),
        (bytes.fromhex("8750") + bytes(16) + bytes.fromhex("f640f6f6a1a0f6"), "integers or text"),
        (bytes.fromhex("8750") + bytes(16) + bytes.fromhex("f640f6f6a10101"), "text string"),
        (bytes.fromhex("8750") + bytes(16) + bytes.fromhex("f640f6f680"), "map"),
        (bytes.fromhex("8750") + bytes(16) + bytes.fromhex("f640f6f6a0") + b"\x81" * 40 + b"\x00", "deeply"),
        (bytes.fromhex("8750") + bytes(16) + bytes.fromhex("f640f6f6a09bffffffffffffffff"), "longer than"),
        (bytes.fromhex("8750") + bytes(16) + bytes.fromhex("f640f6f6a0") + b"\x1c", "reserved"),
    ],
)
def test_content_reader_refuses(data: bytes, why: str) -> None:
    with pytest.raises(F.ContentError, match=why):
        F.franking_fields(data)


def test_content_reader_skips_other_extensions_and_parts() -> None:
    # Extensions: text key, negative key, nested value, tag; the reader finds 1 and 2 among them.
    ext = (
        bytes.fromhex("a5")
        + bytes.fromhex("01") + bytes.fromhex("6161")  # 1: "a"
        + bytes.fromhex("02") + bytes.fromhex("6162")  # 2: "b"
        + bytes.fromhex("20") + bytes.fromhex("82f5f4")  # -1: [true, false]
        + bytes.fromhex("6178") + bytes.fromhex("d82063687474")  # "x": 32("htt")
        + bytes.fromhex("190100") + bytes.fromhex("fb3ff0000000000000")  # 256: 1.0
    )
    data = bytes.fromhex("8750") + SALT + bytes.fromhex("f640f6f6") + ext + bytes.fromhex("83090000")
    assert F.franking_fields(data) == F.FrankingFields(SALT, "a", "b")
