"""Known-answer tests for what a trace cannot show when both sides share a
bug (issue 11, item 6): franking tags and server franks, signatures over the
-06 request structures, and the hub's notify transaction ids.

Every expected value is built here, by hand, from the draft's definitions
(draft-ietf-mimi-protocol-06 "Message Franking", "Fetch Key Material",
"Claim group key information"; RFC 9420 s.2.1.2 varints and s.5.1.2
SignWithLabel) with ``hmac``/``hashlib`` and ``cryptography`` directly, and
compared with what the code produces. A bug that the sender and receiver
make consistently (a wrong HMAC input, a field missing from a TBS) passes
every invariant of ``mimisim check`` but fails here.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mimisim.mimi import franking as F
from mimisim.mimi import wire as W
from mimisim.mimi.endpoints import Endpoint
from mimisim.mimi.keystore import verify_key_material_request
from mimisim.mls.crypto import get_suite
from mimisim.mls.structs import Credential, RequiredCapabilities

SALT = bytes(range(16))
APP = b"MIMI known-answer application data"
#: HMAC-SHA256(key=SALT, APP), computed once with Python's hmac module.
TAG = bytes.fromhex("aec9731615ab50750acf63856d64cb08f9d3ad8fe14d0a99e3001316b515b6c2")
SENDER = "mimi://a.example/u/alice"
ROOM = "mimi://a.example/r/clubhouse"
TS = 1_700_000_123_456


def varint(n: int) -> bytes:
    """RFC 9420 s.2.1.2 variable-length integer."""
    if n < 1 << 6:
        return bytes([n])
    if n < 1 << 14:
        return struct.pack(">H", n | 0x4000)
    assert n < 1 << 30
    return struct.pack(">I", n | 0x8000_0000)


def opaque(b: bytes) -> bytes:
    return varint(len(b)) + b


def sign_content(label: str, content: bytes) -> bytes:
    """RFC 9420 s.5.1.2: SignContent { opaque label<V> = "MLS 1.0 " + Label; opaque content<V>; }."""
    return opaque(b"MLS 1.0 " + label.encode()) + opaque(content)


def context_bytes(sender: str, room: str, ts: int) -> bytes:
    """[P6] ServerFrankingContext { IdentifierUri sender_uri; IdentifierUri room_uri; uint64 accepted_timestamp; }
    with IdentifierUri { opaque uri<V>; }."""
    return opaque(sender.encode()) + opaque(room.encode()) + struct.pack(">Q", ts)


def ed25519_pub(priv: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(priv).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


# ---------------------------------------------------------------- franking


def test_franking_tag_is_hmac_sha256_keyed_by_the_salt() -> None:
    """[P6] franking_tag = HMAC_SHA256(salt, application_data)."""
    assert hmac.new(SALT, APP, hashlib.sha256).digest() == TAG  # the pinned constant itself
    assert F.franking_tag(SALT, APP) == TAG


def test_server_frank_and_its_integrity_signature() -> None:
    """[P6] server_frank = HMAC_SHA256(hub_key, franking_tag || context);
    franking_integrity_signature = SignWithLabel(franking_private_key,
    "FrankingIntegrityTBS", FrankingIntegrityTBS{server_frank[32],
    franking_signature_ciphersuite, context})."""
    suite = get_suite(1)  # MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
    secret = bytes(range(32))
    keys = F.hub_franking_keys(suite, secret)  # hub_key and key pair: implementation choice of derivation
    ctx = context_bytes(SENDER, ROOM, TS)
    assert F.franking_context(SENDER, ROOM, TS).encode() == ctx
    value = hmac.new(keys.hub_key, TAG + ctx, hashlib.sha256).digest()
    frank = F.server_frank(suite, secret, TAG, SENDER, ROOM, TS)
    assert frank.server_frank == value
    assert frank.franking_signature_ciphersuite == 1
    tbs = value + struct.pack(">H", 1) + ctx  # opaque server_frank[32]: no length prefix
    expected_sig = Ed25519PrivateKey.from_private_bytes(keys.signature_priv).sign(
        sign_content("FrankingIntegrityTBS", tbs))
    assert frank.franking_integrity_signature == expected_sig  # Ed25519 is deterministic
    Ed25519PublicKey.from_public_bytes(keys.signature_pub).verify(expected_sig, sign_content("FrankingIntegrityTBS",
                                                                                              tbs))
    assert keys.signature_pub == ed25519_pub(keys.signature_priv)


def test_frank_aad_is_the_safe_aad_component_0x0020() -> None:
    """[P6] FrankAAD { uint8 franking_tag[32]; } in the frank_aad Safe AAD
    component (0x0020): SafeAAD { SafeAADItem aad_items<V>; } with
    SafeAADItem { ComponentID component_id; opaque aad_item_data<V>; }
    (draft-ietf-mls-extensions: uint16 ComponentID)."""
    content = F.encode_simple_content(SALT, SENDER, ROOM, b"hi")
    assert content[:18] == bytes([0x87, 0x50]) + SALT  # CBOR array(7), then the 16-byte salt as a bstr
    tag = hmac.new(SALT, content, hashlib.sha256).digest()
    aad = F.add_frank_aad(content)
    item = struct.pack(">H", 0x0020) + opaque(tag)
    assert aad == opaque(item)
    assert F.frank_aad_of(aad) == tag


# ---------------------------------------------------------------- request signatures


def _credential_bytes(identity: bytes) -> bytes:
    """RFC 9420 Credential: credential_type basic(1) uint16, opaque identity<V>."""
    return struct.pack(">H", 1) + opaque(identity)


def test_key_material_request_signature_covers_the_tbs() -> None:
    """[P6] KeyMaterialRequestTBS {protocol; requestingUser; targetUser;
    roomId; acceptableCiphersuites<V>; requiredCapabilities;
    requesterSignatureKey; requesterCredential} signed with label
    "KeyMaterialRequestTBS"."""
    priv = bytes(range(100, 132))
    pub = ed25519_pub(priv)
    ident = b"mimi://a.example/d/alice/A1"
    tbs = (bytes([1])  # Protocol mls10 (uint8)
           + opaque(SENDER.encode()) + opaque(b"mimi://b.example/u/bob") + opaque(ROOM.encode())
           + opaque(struct.pack(">H", 1))  # acceptableCiphersuites<V>: [1]
           + opaque(b"") + opaque(b"") + opaque(b"")  # RequiredCapabilities: three empty uint16 vectors
           + opaque(pub) + _credential_bytes(ident))
    sig = Ed25519PrivateKey.from_private_bytes(priv).sign(sign_content("KeyMaterialRequestTBS", tbs))
    req = W.KeyMaterialRequest(W.MLS10, W.IdentifierUri(SENDER), W.IdentifierUri("mimi://b.example/u/bob"),
                               W.IdentifierUri(ROOM), [1], RequiredCapabilities([], [], []), pub,
                               Credential.basic(ident), sig)
    assert req.tbs().encode() == tbs
    assert req.encode() == tbs + opaque(sig)
    assert verify_key_material_request(req)
    bad = W.KeyMaterialRequest.decode(req.encode()[:-1] + bytes([req.encode()[-1] ^ 1]))
    assert not verify_key_material_request(bad)
    other_room = W.KeyMaterialRequest(req.protocol, req.requesting_user, req.target_user,
                                      W.IdentifierUri("mimi://a.example/r/other"), req.acceptable_ciphersuites,
                                      req.required_capabilities, pub, req.requester_credential, sig)
    assert not verify_key_material_request(other_room)  # the room id is covered


def test_group_info_request_signature_covers_the_tbs() -> None:
    """[P6] GroupInfoRequestTBS {protocol; cipher_suite;
    requestingSignatureKey; requestingCredential; groupInfoPublicKey;
    optional joiningCode<V>} signed with label "GroupInfoRequestTBS"."""
    suite = get_suite(1)
    priv = bytes(range(140, 172))
    pub = ed25519_pub(priv)
    hpke_pub = bytes(range(32))
    ident = b"mimi://c.example/d/cathy/C3"
    tbs = (bytes([1]) + struct.pack(">H", 1) + opaque(pub) + _credential_bytes(ident) + opaque(hpke_pub)
           + bytes([0]))  # optional<joiningCode> absent
    sig = Ed25519PrivateKey.from_private_bytes(priv).sign(sign_content("GroupInfoRequestTBS", tbs))
    req = W.GroupInfoRequest(W.MLS10, 1, pub, Credential.basic(ident), hpke_pub, None, sig)
    assert req.tbs().encode() == tbs
    assert suite.verify_with_label(pub, b"GroupInfoRequestTBS", req.tbs().encode(), req.signature)
    assert suite.sign_with_label(priv, b"GroupInfoRequestTBS", tbs) == sig


# ---------------------------------------------------------------- notify transaction ids


def test_notify_transaction_ids_count_per_room_and_follower() -> None:
    """The hub's notify ids (docs/mimi-choices.md: an ``Idempotency-Key``
    per logical notify, the same on every retry): ``<room>><follower>#<n>``,
    n = 0, 1, 2 ... per room and follower in the order the hub sends them.
    Distinct notifies must never share an id: under ``transaction_id``
    dedup the follower would drop the second one as a retry."""
    from tests.test_mimi_provider import B, C, build

    net = build()
    a1 = net.cl["a1"]
    for i in range(3):
        net.w.client_step(a1.client_uri, a1.send_message(ROOM, f"hello {i}", net.w.now_ms))
    for follower in (B, C):
        ids = [q.txn_id for d, q, _, _ in net.log if d == follower and q.endpoint == Endpoint.NOTIFY]
        assert len(ids) >= 4  # the adds plus three messages
        assert ids == [f"{ROOM}>{follower}#{n}" for n in range(len(ids))]
