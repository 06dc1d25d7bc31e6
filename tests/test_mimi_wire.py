"""MIMI wire bodies (mimisim.mimi.wire) and the endpoint table (mimisim.mimi.endpoints).

* round trip of every struct, from strategies derived from the declarations;
* strictness: truncations, trailing bytes, unknown/reserved enum values,
  wrong message kinds, draft MUSTs -- each error naming the field path;
* the drafts' figures with concrete values (participant-list change,
  directory document, URI examples, IANA tables).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mimisim.codec import DecodeError, EncodeError
from mimisim.mimi import wire as W
from mimisim.mimi.endpoints import Endpoint, ParamKind, default_directory, parse_param, render_param
from mimisim.mls import structs as M
from tests.hypothesis_profiles import examples

try:  # tests/ is on sys.path (rootdir-relative import mode, no __init__.py)
    from strategies import default_builder, mls_message
except ImportError:  # pragma: no cover - if tests/ becomes a package
    from tests.strategies import default_builder, mls_message

BUILDER = default_builder()
FAST = settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.too_slow])


def spec_dir() -> Path:
    env = os.environ.get("MIMISIM_SPEC")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "spec"


def spec_text(name: str) -> str:
    p = spec_dir() / name
    if not p.exists():
        pytest.skip(f"draft not available: {p}")
    return p.read_text()


# ==========================================================================
# fixtures: small, hand-built MLS objects (no crypto needed for the wire)

GROUP = b"mimi://a.example/g/clubhouse"


def uri(s: str) -> W.IdentifierUri:
    return W.IdentifierUri(s)


def app_message(epoch: int = 5) -> M.MLSMessage:
    pm = M.PrivateMessage(GROUP, epoch, M.ContentType.application, b"", b"\x01" * 4, b"\x02" * 8)
    return M.MLSMessage.wrap(pm)


def commit_message(epoch: int = 5) -> M.MLSMessage:
    content = M.FramedContent(
        GROUP, epoch, M.Sender.member(0), b"", M.ContentType.commit, None, None, M.Commit([], None)
    )
    return M.MLSMessage.wrap(M.PublicMessage(content, M.AuthData(b"sig", b"ctag"), b"mtag"))


def proposal_message(epoch: int = 5, removed: int = 3) -> M.MLSMessage:
    content = M.FramedContent(
        GROUP,
        epoch,
        M.Sender.external(0),
        b"",
        M.ContentType.proposal,
        None,
        M.Proposal.of(M.Remove(removed)),
        None,
    )
    return M.MLSMessage.wrap(M.PublicMessage(content, M.AuthData(b"sig", None), None))


def welcome_message() -> M.MLSMessage:
    return M.MLSMessage.wrap(
        M.Welcome(1, [M.EncryptedGroupSecrets(b"kpref", M.HPKECiphertext(b"k", b"c"))], b"egi")
    )


def key_package(name: bytes = b"bob") -> M.KeyPackage:
    leaf = M.LeafNode(
        b"enc",
        b"sigkey",
        M.Credential.basic(name),
        M.Capabilities([1], [1], [], [8], [1]),
        M.LeafNodeSource.key_package,
        M.Lifetime(0, 2**63),
        None,
        [],
        b"leafsig",
    )
    return M.KeyPackage(1, 1, b"init", leaf, [], b"kpsig")


def group_info() -> M.GroupInfo:
    return M.GroupInfo(M.GroupContext(1, 1, GROUP, 5, b"th", b"cth", []), [], b"ctag", 0, b"gisig")


def tree_option(rep: M.RatchetTreeRepresentation, signature: bytes | None = None) -> M.RatchetTreeOption:
    nodes = [] if rep == M.RatchetTreeRepresentation.full else None
    return M.RatchetTreeOption(rep, nodes, None, signature)


def frank() -> W.Frank:
    return W.Frank(b"\xf0" * 32, 1, b"fsig")


def examples() -> dict[str, Any]:
    """One concrete, valid body per interesting shape."""
    return {
        "KeyMaterialRequest": W.KeyMaterialRequest(
            W.MLS10,
            uri("mimi://a.example/u/alice"),
            uri("mimi://b.example/u/bob"),
            uri("mimi://a.example/r/clubhouse"),
            [1, 3],
            M.RequiredCapabilities([6], [8], [1]),
            b"alice-key",
            M.Credential.basic(b"alice"),
            b"kmr-sig",
        ),
        "KeyMaterialResponse": W.KeyMaterialResponse(
            W.MLS10,
            W.KeyMaterialUserCode.partialSuccess,
            uri("mimi://b.example/u/bob"),
            [
                W.ClientKeyMaterial(
                    W.KeyMaterialClientCode.success, uri("mimi://b.example/d/ClientB1"), key_package(), None
                ),
                W.ClientKeyMaterial(
                    W.KeyMaterialClientCode.keyMaterialExhausted,
                    uri("mimi://b.example/d/ClientB2"),
                    None,
                    None,
                ),
            ],
        ),
        "UpdateRequest": W.UpdateRequest(
            W.HandshakeBundle.commit(
                commit_message(),
                W.GroupInfoOption.partial(W.PartialGroupInfo(W.RatchetTreePresence.present, [], b"gisig")),
                tree_option(M.RatchetTreeRepresentation.distribution_service),
                welcome=M.Welcome(1, [], b"egi"),
            )
        ),
        "UpdateRequest/proposals": W.UpdateRequest(
            W.HandshakeBundle.proposals(proposal_message(), [proposal_message(removed=4)])
        ),
        "UpdateRoomResponse": W.UpdateRoomResponse.wrong_epoch(7, "epoch moved"),
        "SubmitMessageRequest": W.SubmitMessageRequest(
            W.MLS10, app_message(), uri("mimi://c.example/u/cathy")
        ),
        "SubmitMessageResponse": W.SubmitMessageResponse.accepted(1_700_000_000_000, frank()),
        "FanoutMessage": W.FanoutMessage.commit(1_700_000_000_001, commit_message(), [proposal_message(6)]),
        "FanoutMessage/welcome": W.FanoutMessage.welcome(
            1_700_000_000_002, welcome_message(), tree_option(M.RatchetTreeRepresentation.out_of_band, b"ts")
        ),
        "GroupInfoRequest": W.GroupInfoRequest(
            W.MLS10, 1, b"c3-key", M.Credential.basic(b"cathy"), b"hpke-pub", None, b"gir-sig"
        ),
        "GroupInfoResponse": W.GroupInfoResponse(
            W.MLS10,
            "mimi://a.example/r/clubhouse",
            W.GroupInfoCode.success,
            1,
            M.ExternalSender(b"hub-key", M.Credential.basic(b"a.example")),
            M.HPKECiphertext(b"kem", b"ct"),
            b"hub-sig",
        ),
        "UpdateConsentBody": W.UpdateConsentBody(
            W.ConsentOperation.grant,
            uri("mimi://a.example/u/alice"),
            uri("mimi://b.example/u/bob"),
            None,
            [key_package()],
            M.AppDataDictionary([]),
        ),
        "IdentifierResponse": W.IdentifierResponse(
            W.IdentifierQueryCode.success,
            [uri("mimi://x.example/u/xavier")],
            [
                W.UserProfile(
                    uri("mimi://x.example/u/xavier"),
                    [W.ProfileField(W.FieldSource.oidcStdClaim, "given_name", b"Xavier")],
                )
            ],
            M.AppDataDictionary([]),
        ),
        "AbuseReport": W.AbuseReport(
            uri(""),
            uri("mimi://b.example/u/bob"),
            0,
            "spam",
            [W.AbusiveMessage(b"content", frank(), 5)],
            M.AppDataDictionary([]),
        ),
        "RoomMetaData": W.RoomMetaData(
            uri("mimi://a.example/r/clubhouse"),
            "Clubhouse",
            [W.RichDescription(b"", b"en", b"A room")],
            uri("https://a.example/avatar.png"),
            "subject",
            "mood",
        ),
    }


EXAMPLES = examples()


def cls_of(key: str) -> type:
    return type(EXAMPLES[key])


# ==========================================================================
# declarations


DRAFT_BODIES = {
    "IdentifierUri",
    "KeyMaterialRequest",
    "KeyMaterialRequestTBS",
    "ClientKeyMaterial",
    "KeyMaterialResponse",
    "HandshakeBundle",
    "GroupInfoOption",
    "UpdateRequest",
    "UpdateRoomResponse",
    "SubmitMessageRequest",
    "SubmitMessageResponse",
    "Frank",
    "FanoutMessage",
    "GroupInfoRequestTBS",
    "GroupInfoRequest",
    "PendingProposal",
    "GroupInfoRatchetTreeTBE",
    "GroupInfoResponseTBS",
    "GroupInfoResponse",
    "ConsentEntry",
    "ConsentScope",
    "RequestConsentBody",
    "UpdateConsentBody",
    "QueryElement",
    "IdentifierRequest",
    "ProfileField",
    "UserProfile",
    "IdentifierResponse",
    "AbusiveMessage",
    "AbuseReport",
    "UserRolePair",
    "ParticipantListData",
    "UserindexRolePair",
    "ParticipantListUpdate",
    "RichDescription",
    "RoomMetaData",
    "FrankAAD",
    "FrankingAgentData",
    "ServerFrankingContext",
    "ServerFrankInput",
    "FrankingIntegrityTBS",
}


def test_every_draft_body_is_declared_once() -> None:
    assert set(W.WIRE_STRUCTS) == DRAFT_BODIES


@pytest.mark.parametrize("name", sorted(W.WIRE_STRUCTS))
def test_every_struct_has_a_docstring_citing_a_draft(name: str) -> None:
    doc = W.WIRE_STRUCTS[name].__doc__ or ""
    assert re.search(r"\[(P|P6|RP|RTO|EXT)\]", doc), name


def test_status_codes_carry_the_draft_numbers() -> None:
    assert W.SubmitResponseCode.accepted == 0
    assert [int(c) for c in W.UpdateResponseCode] == [0, 1, 2, 3]
    assert W.UpdateResponseCode(1).name == "wrongEpoch"
    assert W.KeyMaterialUserCode.userDeleted == 7
    assert W.KeyMaterialClientCode.nothingCompatible == 2
    assert W.GroupInfoCode.success == 1 and W.GroupInfoCode.noSuchRoom == 3
    assert W.ConsentOperation.revoke == 3
    assert W.IdentifierQueryCode.unsupportedField == 4
    assert W.SearchIdentifierType.vcardField == 8
    assert W.RoleIndex.no_role == 0 and W.RoleIndex.banned == 1 and W.BANNED_ROLE_NAME == "banned"
    assert W.ComponentId.participant_list == 0x0022 and W.ComponentId.room_metadata == 0x0023


# ==========================================================================
# round trip, generically

#: MLS-layer structs that MIMI bodies embed and that only MIMI exercises.
EMBEDDED = {"RatchetTreeOption": M.RatchetTreeOption, "PartialGroupInfo": M.PartialGroupInfo}
ALL_STRUCTS = {**W.WIRE_STRUCTS, **EMBEDDED}


@pytest.mark.parametrize("name", sorted(ALL_STRUCTS))
@FAST
@given(data=st.data())
def test_round_trip(name: str, data: st.DataObject) -> None:
    cls = ALL_STRUCTS[name]
    value = data.draw(BUILDER.struct(cls), label=name)
    encoded = value.encode()
    decoded = cls.decode(encoded)
    assert decoded == value
    assert decoded.encode() == encoded
    # strictness on the same value: trailing bytes and sampled truncations
    with pytest.raises(DecodeError, match="trailing"):
        cls.decode(encoded + b"\x00")
    cuts = data.draw(st.lists(st.integers(0, len(encoded) - 1), max_size=6), label="cuts")
    for cut in {0, len(encoded) - 1, *cuts}:
        with pytest.raises(DecodeError):
            cls.decode(encoded[:cut])


@pytest.mark.parametrize("kind", list(W.MessageKind))
@FAST
@given(data=st.data())
def test_builder_makes_mls_messages_of_each_kind(kind: W.MessageKind, data: st.DataObject) -> None:
    msg = data.draw(mls_message(BUILDER, kind))
    assert W.message_kind(msg) == kind
    assert M.MLSMessage.decode(msg.encode()) == msg


@FAST
@given(st.lists(BUILDER.struct(W.FanoutMessage), min_size=1, max_size=3))
def test_concatenated_fanout_messages_round_trip(messages: list[W.FanoutMessage]) -> None:
    body = W.encode_fanout_messages(messages)
    assert W.decode_fanout_messages(body) == messages
    assert Endpoint.NOTIFY.decode_request(Endpoint.NOTIFY.encode_request(messages)) == messages


# ==========================================================================
# strictness on concrete examples


@pytest.mark.parametrize("key", sorted(EXAMPLES))
def test_example_round_trips(key: str) -> None:
    value = EXAMPLES[key]
    assert cls_of(key).decode(value.encode()) == value


@pytest.mark.parametrize("key", sorted(EXAMPLES))
def test_every_truncation_of_an_example_raises(key: str) -> None:
    encoded = EXAMPLES[key].encode()
    for cut in range(len(encoded)):
        with pytest.raises(DecodeError):
            cls_of(key).decode(encoded[:cut])


@pytest.mark.parametrize("key", sorted(EXAMPLES))
def test_trailing_bytes_raise(key: str) -> None:
    with pytest.raises(DecodeError, match=r"trailing bytes"):
        cls_of(key).decode(EXAMPLES[key].encode() + b"\x01")


def patched(data: bytes, offset: int, value: int) -> bytes:
    out = bytearray(data)
    out[offset] = value
    return bytes(out)


@pytest.mark.parametrize(
    ("key", "offset", "value", "message"),
    [
        (
            "UpdateRoomResponse",
            0,
            9,
            r"^UpdateRoomResponse\.response_code: unknown UpdateResponseCode value 9$",
        ),
        (
            "SubmitMessageResponse",
            1,
            3,
            r"^SubmitMessageResponse\.status_code: unknown SubmitResponseCode value 3$",
        ),
        ("SubmitMessageRequest", 0, 0, r"^SubmitMessageRequest\.protocol: reserved Protocol value 0$"),
        ("SubmitMessageRequest", 0, 2, r"^SubmitMessageRequest\.protocol: unknown Protocol value 2$"),
        (
            "KeyMaterialResponse",
            1,
            8,
            r"^KeyMaterialResponse\.user_status: unknown KeyMaterialUserCode value 8$",
        ),
        (
            "UpdateConsentBody",
            0,
            4,
            r"^UpdateConsentBody\.consent_operation: unknown ConsentOperation value 4$",
        ),
        ("GroupInfoResponse", 30, 0, r"^GroupInfoResponse\.status: reserved GroupInfoCode value 0$"),
        (
            "IdentifierResponse",
            0,
            5,
            r"^IdentifierResponse\.response_code: unknown IdentifierQueryCode value 5$",
        ),
    ],
)
def test_unknown_or_reserved_enum_values_name_the_field(
    key: str, offset: int, value: int, message: str
) -> None:
    data = patched(EXAMPLES[key].encode(), offset, value)
    with pytest.raises(DecodeError, match=message):
        cls_of(key).decode(data)


def test_nested_enum_error_names_the_nested_path() -> None:
    resp = EXAMPLES["KeyMaterialResponse"]
    data = resp.encode()
    # protocol(1) status(1) user_uri(1+22) clients-length(2) -> client_status
    offset = 1 + 1 + 1 + len(resp.user_uri.uri) + 2
    with pytest.raises(
        DecodeError,
        match=r"^KeyMaterialResponse\.clients\[0\]\.client_status: unknown KeyMaterialClientCode value 3$",
    ):
        W.KeyMaterialResponse.decode(patched(data, offset, 3))


def test_reserved_representation_inside_bundle_names_the_path() -> None:
    bundle = W.UpdateRequest(
        W.HandshakeBundle.commit(
            commit_message(),
            W.GroupInfoOption.full(group_info()),
            tree_option(M.RatchetTreeRepresentation.full),
        )
    )
    data = bundle.encode()
    offset = len(commit_message().encode()) + 1  # after the MLSMessage and the optional<Welcome> flag
    with pytest.raises(
        DecodeError,
        match=r"^UpdateRequest\.bundle\.group_info_option\.representation: reserved GroupInfoRepresentation value 0$",
    ):
        W.UpdateRequest.decode(patched(data, offset, 0))


def test_invalid_utf8_uri_names_the_field() -> None:
    req = EXAMPLES["KeyMaterialRequest"]
    data = req.encode()
    offset = 1 + 1  # protocol, uri length -> first URI byte
    with pytest.raises(
        DecodeError, match=r"^KeyMaterialRequest\.requesting_user\.uri: invalid UTF-8 at byte 0$"
    ):
        W.KeyMaterialRequest.decode(patched(data, offset, 0xFF))
    with pytest.raises(DecodeError, match=r"requesting_user\.uri: NUL"):
        W.KeyMaterialRequest.decode(patched(data, offset, 0x00))


def test_optional_presence_byte_must_be_0_or_1() -> None:
    scope = W.ConsentScope(uri("mimi://a.example/u/a"), uri("mimi://b.example/u/b"), None)
    data = scope.encode()
    with pytest.raises(
        DecodeError, match=r"^ConsentScope\.room_id: optional presence byte must be 0 or 1, got 2$"
    ):
        W.ConsentScope.decode(data[:-1] + b"\x02")


def test_wrong_message_kinds_are_refused_both_ways() -> None:
    bad = W.SubmitMessageRequest(W.MLS10, commit_message(), uri("mimi://c.example/u/cathy"))
    with pytest.raises(
        EncodeError, match=r"expected PrivateMessage\(application\), got public_message\(commit\)"
    ):
        bad.encode()
    good = EXAMPLES["SubmitMessageRequest"].encode()
    forged = good[:1] + commit_message().encode() + good[1 + len(app_message().encode()) :]
    with pytest.raises(
        DecodeError,
        match=r"^SubmitMessageRequest\.app_message: expected PrivateMessage\(application\), got public_message\(commit\)$",
    ):
        W.SubmitMessageRequest.decode(forged)
    # an application message is not a handshake
    with pytest.raises(DecodeError, match=r"^UpdateRequest\.bundle\.proposal_or_commit: expected"):
        W.UpdateRequest.decode(app_message().encode() + b"\x00")
    # more_proposals hold proposals only
    with pytest.raises(EncodeError, match="more_proposals"):
        W.HandshakeBundle.proposals(proposal_message(), [commit_message()]).encode()


def test_fanout_error_names_the_message_index() -> None:
    a = W.FanoutMessage.application(1, app_message())
    b = W.FanoutMessage.application(2, app_message())
    body = W.encode_fanout_messages([a, b])
    second = len(a.encode())
    broken = patched(body, second + 8 + 3, 9)  # timestamp(8) version(2) wire_format(2): low byte
    with pytest.raises(
        DecodeError, match=r"^FanoutMessage\[1\]\.message\.wire_format: unknown WireFormat value 9$"
    ):
        W.decode_fanout_messages(broken)
    with pytest.raises(DecodeError, match=r"FanoutMessage\[1\]"):
        W.decode_fanout_messages(body[:-1])
    with pytest.raises(DecodeError, match="empty"):
        W.decode_fanout_messages(b"")
    with pytest.raises(EncodeError):
        W.encode_fanout_messages([])


def test_draft_musts_about_a_body_are_enforced() -> None:
    kmr = EXAMPLES["KeyMaterialRequest"]
    empty_suites = W.KeyMaterialRequest(**{**vars(kmr), "acceptable_ciphersuites": []})
    with pytest.raises(EncodeError, match="must not be empty"):
        empty_suites.encode()
    tbs = kmr.tbs().encode()
    assert kmr.encode().startswith(tbs)  # the signature covers exactly the prefix
    data = kmr.encode()
    at = data.index(bytes([0x04, 0x00, 0x01, 0x00, 0x03]))  # the ciphersuite vector
    with pytest.raises(
        DecodeError, match=r"^KeyMaterialRequest\.acceptable_ciphersuites: vector must not be empty$"
    ):
        W.KeyMaterialRequest.decode(data[:at] + b"\x00" + data[at + 5 :])

    resp = W.KeyMaterialResponse(
        W.MLS10, W.KeyMaterialUserCode.userUnknown, uri("mimi://b.example/u/bob"), []
    )
    ok = resp.encode()
    with_clients = ok[:-1] + EXAMPLES["KeyMaterialResponse"].encode()[len(ok) - 1 :]
    with pytest.raises(
        DecodeError, match=r"^KeyMaterialResponse: clients must be empty when user_status is userUnknown$"
    ):
        W.KeyMaterialResponse.decode(with_clients)

    grant = EXAMPLES["UpdateConsentBody"]
    as_request = W.RequestConsentBody(**vars(grant))
    with pytest.raises(EncodeError, match="requestConsent carries request or cancel"):
        as_request.encode()
    with pytest.raises(
        DecodeError, match=r"^RequestConsentBody: requestConsent carries request or cancel, not grant$"
    ):
        W.RequestConsentBody.decode(grant.encode())

    dup = W.ParticipantListData(
        [W.UserRolePair("mimi://a.example/u/alice", 2), W.UserRolePair("mimi://a.example/u/alice", 3)]
    )
    with pytest.raises(EncodeError, match="listed twice"):
        dup.encode()
    with pytest.raises(EncodeError, match="role_index 0"):
        W.ParticipantListData([W.UserRolePair("mimi://a.example/u/alice", 0)]).encode()
    with pytest.raises(EncodeError, match="more than once"):
        W.ParticipantListUpdate([W.UserindexRolePair(1, 2)], [1], []).encode()


def test_select_arms_must_match_their_tag_when_encoding() -> None:
    bad = W.UpdateRoomResponse(W.UpdateResponseCode.notAllowed, "", 5, None, None)
    with pytest.raises(EncodeError, match="accepted_timestamp"):
        bad.encode()
    with pytest.raises(EncodeError):
        W.SubmitMessageRequest(W.Protocol.reserved, app_message(), uri("mimi://c.example/u/c")).encode()


def test_group_info_request_tbs_is_the_request_minus_signature() -> None:
    req = EXAMPLES["GroupInfoRequest"]
    assert req.encode() == req.tbs().encode() + bytes([len(req.signature)]) + req.signature
    resp = EXAMPLES["GroupInfoResponse"]
    assert resp.encode().startswith(resp.tbs().encode())
    with pytest.raises(ValueError):
        W.GroupInfoResponse.failure("mimi://a.example/r/x", W.GroupInfoCode.noSuchRoom).tbs()


def test_abuse_type_is_open() -> None:
    report = W.AbuseReport(uri(""), uri("mimi://b.example/u/bob"), 42, "", [], M.AppDataDictionary([]))
    assert W.AbuseReport.decode(report.encode()).reason_code == 42


# ==========================================================================
# the drafts' figures with concrete values


def test_participant_list_change_figure() -> None:
    """[P] fig-room-state-change: add diana (4, admin) and eric (3, moderator),
    remove bob, set cathy to 1 (banned); as a ParticipantListUpdate."""
    before = W.ParticipantListData(
        [
            W.UserRolePair("mimi://a.example/u/alice", 4),
            W.UserRolePair("mimi://b.example/u/bob", 2),
            W.UserRolePair("mimi://c.example/u/cathy", 2),
        ]
    )
    update = W.ParticipantListUpdate(
        changed_role_participants=[W.UserindexRolePair(2, W.RoleIndex.banned)],
        removed_indices=[1],
        added_participants=[
            W.UserRolePair("mimi://d.example/u/diana", 4),
            W.UserRolePair("mimi://e.example/u/eric", 3),
        ],
    )
    expected = (
        bytes.fromhex("08" "00000002" "00000001")  # changedRoleParticipants<V>: 8 bytes
        + bytes.fromhex("04" "00000001")  # removedIndices<V>: 4 bytes
        + bytes.fromhex("39")  # addedParticipants<V>: 57 bytes
        + b"\x18mimi://d.example/u/diana" + bytes.fromhex("00000004")
        + b"\x17mimi://e.example/u/eric" + bytes.fromhex("00000003")
    )  # fmt: skip
    assert update.encode() == expected
    assert W.ParticipantListUpdate.decode(expected) == update
    assert before.role_of("mimi://c.example/u/cathy") == 2
    assert before.role_of("mimi://d.example/u/diana") == W.RoleIndex.no_role
    assert W.ParticipantListData.decode(before.encode()) == before


@pytest.mark.parametrize(
    "text",
    [
        "mimi://a.example",
        "mimi://a.example/u/alice",
        "mimi://a.example/d/ClientA1",
        "mimi://a.example/r/clubhouse",
        "mimi://a.example/g/clubhouse",
    ],
)
def test_mimi_uri_examples_table(text: str) -> None:
    """[P] mimi-uri-examples: each identifier is ``opaque uri<V>``."""
    encoded = W.IdentifierUri(text).encode()
    assert encoded == bytes([len(text)]) + text.encode()
    assert W.IdentifierUri.decode(encoded).uri == text


def test_flow_figure_paths() -> None:
    """[P] example flows: ``POST /notify/a.example/r/clubhouse`` etc."""
    room = "mimi://a.example/r/clubhouse"
    assert Endpoint.NOTIFY.detail(room) == "POST /notify/a.example/r/clubhouse"
    assert Endpoint.UPDATE.detail(room) == "POST /update/a.example/r/clubhouse"
    assert Endpoint.SUBMIT_MESSAGE.path(room) == "/submitMessage/a.example/r/clubhouse"
    assert Endpoint.KEY_MATERIAL.path("mimi://b.example/u/bob") == "/keyMaterial/b.example/u/bob"
    assert Endpoint.REQUEST_CONSENT.path("b.example") == "/requestConsent/b.example"


SEED_DIRECTORY = """
{
  "keyMaterial":
     "https://mimi.example.com/v1/keyMaterial/{targetUser}",
  "update": "https://mimi.example.com/v1/update{roomId}",
  "notify": "https://mimi.example.com/v1/notify/{roomId}",
  "submitMessage":
     "https://mimi.example.com/v1/submitMessage/{roomId}",
  "groupInfo":
     "https://mimi.example.com/v1/groupInfo/{roomId}",
  "requestConsent":
     "https://mimi.example.com/v1/requestConsent/{targetUser}",
  "updateConsent":
     "https://mimi.example.com/v1/updateConsent/{requesterUser}",
  "identifierQuery":
     "https://mimi.example.com/v1/identifierQuery/{domain}",
  "reportAbuse":
     "https://mimi.example.com/v1/reportAbuse/{roomId}"
}
"""


def _figure_after(text: str, marker: str) -> str:
    start = text.index(marker)
    block = text.index("~~~\n{", start) + 4
    return text[block : text.index("~~~", block)]


def test_directory_figure_of_the_seed() -> None:
    """[P] Directory: the example document parses as shown."""
    figure = _figure_after(
        spec_text("draft-ietf-mimi-protocol.md"), "GET /.well-known/mimi-protocol-directory"
    )
    assert json.loads(figure) == json.loads(SEED_DIRECTORY)
    d = W.Directory.from_json(figure)
    assert d.notify == "https://mimi.example.com/v1/notify/{roomId}"
    assert d.proxy_download is None
    assert (
        Endpoint.NOTIFY.url(d, "mimi://a.example/r/clubhouse")
        == "https://mimi.example.com/v1/notify/a.example/r/clubhouse"
    )
    assert (
        Endpoint.UPDATE_CONSENT.url(d, "a.example") == "https://mimi.example.com/v1/updateConsent/a.example"
    )
    assert W.Directory.from_json(d.to_json()) == d


def test_directory_figure_of_06_is_not_json_but_its_fix_is() -> None:
    """[P6] Directory: the figure lacks a colon after "proxyDownload"."""
    figure = _figure_after(
        spec_text("newer/draft-ietf-mimi-protocol-06.md"), "GET /.well-known/mimi-protocol-directory"
    )
    with pytest.raises(W.DirectoryError, match="not valid JSON"):
        W.Directory.from_json(figure)
    fixed = W.Directory.from_json(figure.replace('"proxyDownload"\n', '"proxyDownload":\n'))
    assert fixed.proxy_download == "https://mimi.example.com/v1/proxyDownload/{downloadUrl}"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda o: o.pop("notify"), "missing key 'notify'"),
        (lambda o: o.update(extra="https://x.example/{a}"), "unknown key 'extra'"),
        (
            lambda o: o.update(notify="http://mimi.example.com/v1/notify/{roomId}"),
            "notify: expected an https URL",
        ),
        (lambda o: o.update(notify="https://mimi.example.com/v1/notify/"), "exactly one"),
        (lambda o: o.update(notify="https://mimi.example.com/{a}/{b}"), "exactly one"),
        (lambda o: o.update(notify="https://{host}/notify"), "in the path"),
        (lambda o: o.update(notify=7), "expected a string"),
    ],
)
def test_directory_validation_is_strict(mutate: Any, message: str) -> None:
    obj = json.loads(SEED_DIRECTORY)
    mutate(obj)
    with pytest.raises(W.DirectoryError, match=re.escape(message)):
        W.Directory.from_json(json.dumps(obj))


def test_directory_rejects_duplicates_and_non_objects() -> None:
    with pytest.raises(W.DirectoryError, match="duplicate"):
        W.Directory.from_json('{"notify": "https://a/{r}", "notify": "https://a/{r}"}')
    with pytest.raises(W.DirectoryError, match="object"):
        W.Directory.from_json("[]")


def test_default_directory_round_trips() -> None:
    d = default_directory("https://mimi.a.example/v1/")
    assert d.key_material == "https://mimi.a.example/v1/keyMaterial/{targetUser}"
    assert W.Directory.from_json(d.to_json()) == d


def test_capability_registry_matches_the_draft() -> None:
    """[RP] New MIMI Role Capabilities registry: every row, value and name."""
    text = spec_text("newer/draft-ietf-mimi-room-policy.md")
    rows = re.findall(r"^\| (0x[0-9a-fA-F]{4}) \| (\w+)( \(reserved\))?\s*\|", text, re.M)
    assert len(rows) > 70
    for value, name, reserved in rows:
        cap = W.Capability[name]
        assert cap == int(value, 16), name
        assert (cap in W.RESERVED_CAPABILITIES) == bool(reserved), name
    assert {c for c in W.Capability} == {W.Capability[n] for _, n, _ in rows}


def test_component_ids_match_the_drafts() -> None:
    """[P6] and [RP] IANA sections: component names and (suggested) values."""
    p6 = spec_text("newer/draft-ietf-mimi-protocol-06.md")
    rp = spec_text("newer/draft-ietf-mimi-room-policy.md")
    found = re.findall(r"- Value: (0x[0-9A-Fa-f]{4})\n- Name: (\w+)", p6)
    found += re.findall(r"- Value: TBD\d+ +\(suggested value (0x[0-9A-Fa-f]{4})\)\n- Name: (\w+)", rp)
    assert len(found) == 4 + 13
    for value, name in found:
        assert W.ComponentId[name] == int(value, 16), name


def test_franking_inputs_are_tag_then_context() -> None:
    """[P6] Hub processing: server_frank = HMAC(hub_key, franking_tag || context)."""
    ctx = W.ServerFrankingContext(
        uri("mimi://b.example/u/alice"), uri("mimi://hub.example/r/Rl33FWLCYWOwxHrYnpWDQg"), 1_700_000_000_000
    )
    tag = bytes(range(32))
    assert W.ServerFrankInput(tag, ctx).encode() == tag + ctx.encode()
    tbs = W.FrankingIntegrityTBS(b"\x07" * 32, 1, ctx)
    assert tbs.encode() == b"\x07" * 32 + b"\x00\x01" + ctx.encode()
    item = W.FrankAAD(tag).aad_item()
    assert item.component_id == W.ComponentId.frank_aad and item.aad_item_data == tag
    with pytest.raises(EncodeError):
        W.FrankAAD(b"short").encode()


def test_update_room_response_wrong_epoch_layout() -> None:
    """[P] Update Room State: code, string, then the arm's field."""
    resp = W.UpdateRoomResponse.wrong_epoch(7)
    assert resp.encode() == bytes.fromhex("01" "00" "0000000000000007")  # fmt: skip
    ok = W.UpdateRoomResponse.success(1_700_000_000_000, "ok")
    assert ok.encode() == b"\x00\x02ok" + (1_700_000_000_000).to_bytes(8, "big")


# ==========================================================================
# endpoint table


def test_endpoint_table_covers_the_draft() -> None:
    paths = {ep.template for ep in Endpoint}
    assert paths >= {
        "/notify/{roomId}",
        "/keyMaterial/{targetUser}",
        "/update/{roomId}",
        "/submitMessage/{roomId}",
        "/groupInfo/{roomId}",
        "/requestConsent/{targetDomain}",
        "/updateConsent/{requesterDomain}",
        "/identifierQuery/{domain}",
        "/reportAbuse/{roomId}",
    }
    assert Endpoint.NOTIFY.success_status == 201
    assert Endpoint.UPDATE.request is W.UpdateRequest and Endpoint.UPDATE.response is W.UpdateRoomResponse
    for ep in Endpoint:
        if ep == Endpoint.DIRECTORY:
            assert ep.template == "/.well-known/mimi-protocol-directory" and ep.spec.param == ""
            continue
        assert ep.spec.template.endswith("{" + ep.spec.param + "}")


@pytest.mark.parametrize("ep", list(Endpoint))
def test_match_inverts_path(ep: Endpoint) -> None:
    value = {
        ParamKind.MIMI_URI: "mimi://a.example/r/club house%",
        ParamKind.DOMAIN: "b.example",
        ParamKind.URL: "https://assets.c.example/x/y?z=1#f",
        ParamKind.NONE: "",
    }[ep.spec.param_kind]
    assert Endpoint.match(ep.method, ep.path(value)) == (ep, value)


@FAST
@given(st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=20))
def test_mimi_uri_params_round_trip(rest: str) -> None:
    value = "mimi://" + rest
    rendered = render_param(ParamKind.MIMI_URI, value)
    assert "?" not in rendered and "#" not in rendered
    assert parse_param(ParamKind.MIMI_URI, rendered) == value


def test_bad_params_are_refused() -> None:
    with pytest.raises(ValueError):
        Endpoint.NOTIFY.path("https://a.example/r/x")
    with pytest.raises(ValueError):
        Endpoint.REQUEST_CONSENT.path("B.example/evil")
    assert Endpoint.match("POST", "/requestConsent/B.EXAMPLE") is None
    assert Endpoint.match("GET", "/notify/a.example/r/x") is None
    assert Endpoint.match("POST", "/nothing/here") is None
    assert Endpoint.match("POST", "/notify/") is None


def test_endpoint_bodies() -> None:
    ep = Endpoint.SUBMIT_MESSAGE
    req = EXAMPLES["SubmitMessageRequest"]
    assert ep.decode_request(ep.encode_request(req)) == req
    resp = EXAMPLES["SubmitMessageResponse"]
    assert ep.decode_response(ep.encode_response(resp)) == resp
    with pytest.raises(EncodeError, match="expected SubmitMessageRequest"):
        ep.encode_request(resp)
    # bodiless responses
    assert Endpoint.NOTIFY.encode_response(None) == b""
    assert Endpoint.NOTIFY.decode_response(b"") is None
    # consent endpoints decode only their own operations
    grant = EXAMPLES["UpdateConsentBody"]
    assert Endpoint.UPDATE_CONSENT.decode_request(grant.encode()) == grant
    with pytest.raises(DecodeError, match="requestConsent carries"):
        Endpoint.REQUEST_CONSENT.decode_request(grant.encode())
    # one FanoutMessage or several
    fm = EXAMPLES["FanoutMessage"]
    assert Endpoint.NOTIFY.decode_request(Endpoint.NOTIFY.encode_request(fm)) == [fm]
