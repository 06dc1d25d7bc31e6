"""Message framing (RFC 9420 s.6) and transcript hashes (s.8.2) against the
official vectors (message-protection.json, transcript-hashes.json), plus the
rejections a receiver must make: tampering, replay, non-zero padding, wrong
group or epoch, unknown sender, missing tags."""

from __future__ import annotations

import pytest

from mimisim.codec import DecodeError, encode_opaque
from mimisim.mls import framing
from mimisim.mls.crypto import CipherSuite, DeterministicRandom, get_suite
from mimisim.mls.framing import FramingError
from mimisim.mls.keyschedule import SecretTree, sender_data_key_nonce
from mimisim.mls.structs import (
    MLS10,
    AuthData,
    AuthenticatedContent,
    ContentType,
    FramedContent,
    GroupContext,
    MLSMessage,
    PrivateContentAAD,
    PrivateMessage,
    Proposal,
    PublicMessage,
    Remove,
    Sender,
    SenderData,
    SenderDataAAD,
    WireFormat,
)
from mimisim.mls.vectors_framing import _sig_priv, check_message_protection, check_transcript_hashes
from tests.vectors import load, needs_vectors

MP_CASES = load("message-protection.json")
TH_CASES = load("transcript-hashes.json")
PUB = ("proposal_pub", "commit_pub")
PRIV = ("proposal_priv", "commit_priv", "application_priv")


def _ids(cases: list[dict]) -> list[str]:
    return [f"cs{c['cipher_suite']}-{i}" for i, c in enumerate(cases)]


class Ctx:
    """The per-case inputs, decoded once."""

    def __init__(self, case: dict) -> None:
        self.case = case
        self.suite: CipherSuite = get_suite(case["cipher_suite"])
        self.group_context = GroupContext(
            MLS10,
            case["cipher_suite"],
            bytes.fromhex(case["group_id"]),
            case["epoch"],
            bytes.fromhex(case["tree_hash"]),
            bytes.fromhex(case["confirmed_transcript_hash"]),
            [],
        )
        self.ctx = self.group_context.encode()
        self.membership_key = bytes.fromhex(case["membership_key"])
        self.sig_pub = bytes.fromhex(case["signature_pub"])
        self.sig_priv = _sig_priv(self.suite, case)
        self.enc_secret = bytes.fromhex(case["encryption_secret"])
        self.sds = bytes.fromhex(case["sender_data_secret"])

    def tree(self, n_leaves: int = 2) -> SecretTree:
        return SecretTree(self.suite, self.enc_secret, n_leaves)

    def raw(self, name: str) -> bytes:
        return bytes.fromhex(self.case[name])

    def msg(self, name: str) -> PublicMessage | PrivateMessage:
        body = MLSMessage.decode(self.raw(name)).body
        assert isinstance(body, PublicMessage | PrivateMessage)
        return body

    def content(self, content_type: ContentType = ContentType.proposal, sender: Sender | None = None) -> FramedContent:
        g = self.group_context
        prop = Proposal.of(Remove(0)) if content_type == ContentType.proposal else None
        app = b"hello" if content_type == ContentType.application else None
        return FramedContent(
            g.group_id, g.epoch, sender or Sender.member(1), b"aad", content_type, app, prop, None
        )

    def signed(self, wf: WireFormat, content: FramedContent) -> AuthenticatedContent:
        ctx = self.ctx if content.sender.sender_type in (1, 4) else None
        return AuthenticatedContent(wf, content, framing.sign_content(self.suite, self.sig_priv, wf, content, ctx))


# ---------------------------------------------------------------- vectors


@needs_vectors
def test_vector_files_cover_all_suites() -> None:
    for cases in (MP_CASES, TH_CASES):
        assert sorted(c["cipher_suite"] for c in cases) == list(range(1, 8))


@pytest.mark.parametrize("case", MP_CASES, ids=_ids(MP_CASES))
def test_message_protection_vector(case: dict) -> None:
    check_message_protection(case)


@pytest.mark.parametrize("case", TH_CASES, ids=_ids(TH_CASES))
def test_transcript_hashes_vector(case: dict) -> None:
    check_transcript_hashes(case)


def _mutate_hex(h: str, pos: int = -1) -> str:
    b = bytearray(bytes.fromhex(h))
    b[pos] ^= 1
    return b.hex()


@pytest.mark.parametrize(
    "key", ["confirmed_transcript_hash_after", "interim_transcript_hash_after", "confirmation_key",
            "interim_transcript_hash_before"]
)
def test_transcript_checker_rejects_wrong_values(key: str) -> None:
    c = dict(TH_CASES[0])
    c[key] = _mutate_hex(c[key])
    with pytest.raises(AssertionError):
        check_transcript_hashes(c)


@pytest.mark.parametrize("key", ["proposal_pub", "commit_priv", "application_priv", "membership_key"])
def test_protection_checker_rejects_wrong_values(key: str) -> None:
    c = dict(MP_CASES[0])
    c[key] = _mutate_hex(c[key])
    with pytest.raises(AssertionError):
        check_message_protection(c)


# ---------------------------------------------------------------- tampering


@pytest.mark.parametrize("case", MP_CASES, ids=_ids(MP_CASES))
def test_every_flipped_byte_is_rejected(case: dict) -> None:
    """Flip each byte of each protected vector message: the codec rejects it
    (DecodeError) or framing does (FramingError); it never gets through, and
    nothing else escapes."""
    k = Ctx(case)
    for name in PUB + PRIV:
        data = k.raw(name)
        framing_rejections = 0
        for pos in range(len(data)):
            bad = bytearray(data)
            bad[pos] ^= 0x01
            try:
                body = MLSMessage.decode(bytes(bad)).body
            except DecodeError:
                continue
            with pytest.raises(FramingError):
                if isinstance(body, PublicMessage):
                    framing.from_public_message(k.suite, body, k.membership_key, k.ctx)
                elif isinstance(body, PrivateMessage):
                    framing.decrypt_private(k.suite, body, k.tree(), k.sds)
                else:
                    raise FramingError("not a framed message")
            framing_rejections += 1
        # The payload bytes (signature, tags, ciphertexts) decode fine when
        # flipped, so framing must have been what stopped most of them.
        assert framing_rejections > len(data) // 2, name


@pytest.mark.parametrize("case", MP_CASES, ids=_ids(MP_CASES))
def test_server_without_membership_key_still_catches_bad_signatures(case: dict) -> None:
    """A hub has no membership key: from_public_message passes, but a flipped
    signature byte must fail verify_content."""
    k = Ctx(case)
    for name in PUB:
        pm = k.msg(name)
        assert isinstance(pm, PublicMessage)
        ac = framing.from_public_message(k.suite, pm, None, k.ctx)
        assert framing.verify_content(k.suite, k.sig_pub, ac, k.ctx)
        sig = bytearray(pm.auth.signature)
        sig[len(sig) // 2] ^= 1
        bad = PublicMessage(pm.content, AuthData(bytes(sig), pm.auth.confirmation_tag), pm.membership_tag)
        ac = framing.from_public_message(k.suite, bad, None, k.ctx)
        assert not framing.verify_content(k.suite, k.sig_pub, ac, k.ctx)
        with pytest.raises(FramingError, match="membership tag"):
            framing.from_public_message(k.suite, bad, k.membership_key, k.ctx)


def test_tampered_private_message_does_not_burn_the_key() -> None:
    """A forged message for a generation must not consume that generation's
    key: the genuine message still decrypts afterwards."""
    k = Ctx(MP_CASES[0])
    pm = k.msg("application_priv")
    assert isinstance(pm, PrivateMessage)
    ct = bytearray(pm.ciphertext)
    ct[-1] ^= 1  # past the sender-data sample: sender data still decrypts
    forged = PrivateMessage(pm.group_id, pm.epoch, pm.content_type, pm.authenticated_data,
                            pm.encrypted_sender_data, bytes(ct))
    tree = k.tree()
    with pytest.raises(FramingError) as e:
        framing.decrypt_private(k.suite, forged, tree, k.sds)
    assert e.value.code == "undecryptable"
    ac = framing.decrypt_private(k.suite, pm, tree, k.sds)
    assert ac.content.application_data == k.raw("application")


# ---------------------------------------------------------------- replay


@pytest.mark.parametrize("case", MP_CASES, ids=_ids(MP_CASES))
def test_replayed_private_message_is_rejected(case: dict) -> None:
    k = Ctx(case)
    for name in PRIV:
        pm = k.msg(name)
        assert isinstance(pm, PrivateMessage)
        tree = k.tree()
        framing.decrypt_private(k.suite, pm, tree, k.sds)
        with pytest.raises(FramingError, match="replay") as e:
            framing.decrypt_private(k.suite, pm, tree, k.sds)
        assert e.value.code == "replay"


def test_out_of_order_private_messages_decrypt_once_each() -> None:
    k = Ctx(MP_CASES[2])
    send, recv = k.tree(), k.tree()
    rng = DeterministicRandom(b"t", "ooo")
    msgs = [
        framing.encrypt_private(
            k.suite, k.signed(WireFormat.private_message, k.content(ContentType.application)), send, k.sds, rng
        )
        for _ in range(4)
    ]
    for i in (2, 0, 3, 1):
        framing.decrypt_private(k.suite, msgs[i], recv, k.sds)
    for m in msgs:
        with pytest.raises(FramingError, match="replay"):
            framing.decrypt_private(k.suite, m, recv, k.sds)


# ---------------------------------------------------------------- padding


def _seal_by_hand(k: Ctx, plaintext: bytes, content_type: ContentType = ContentType.proposal) -> PrivateMessage:
    """An independent PrivateMessage encryption (s.6.3), so a test can put
    anything in PrivateMessageContent, such as non-zero padding."""
    s, g = k.suite, k.group_context
    gen, key, nonce = k.tree().next_handshake(1)
    guard = b"\x01\x02\x03\x04"
    nonce = bytes(a ^ b for a, b in zip(nonce[:4], guard, strict=True)) + nonce[4:]
    aad = PrivateContentAAD(g.group_id, g.epoch, content_type, b"").encode()
    ct = s.aead_seal(key, nonce, aad, plaintext)
    sk, sn = sender_data_key_nonce(s, k.sds, ct)
    esd = s.aead_seal(sk, sn, SenderDataAAD(g.group_id, g.epoch, content_type).encode(),
                      SenderData(1, gen, guard).encode())
    return PrivateMessage(g.group_id, g.epoch, content_type, b"", esd, ct)


@pytest.mark.parametrize("case", MP_CASES, ids=_ids(MP_CASES))
def test_padding_must_be_zero(case: dict) -> None:
    k = Ctx(case)
    body = Proposal.of(Remove(3)).encode() + encode_opaque(b"sig")
    ok = framing.decrypt_private(k.suite, _seal_by_hand(k, body + bytes(40)), k.tree(), k.sds)
    assert ok.content.proposal == Proposal.of(Remove(3))
    assert ok.auth == AuthData(b"sig", None)
    for pad in (b"\x01", bytes(39) + b"\x80", b"\x00\x00\xff\x00"):
        with pytest.raises(FramingError, match="padding") as e:
            framing.decrypt_private(k.suite, _seal_by_hand(k, body + pad), k.tree(), k.sds)
        assert e.value.code == "badPadding"


def test_truncated_private_content_is_rejected() -> None:
    k = Ctx(MP_CASES[0])
    for body in (b"", Proposal.of(Remove(3)).encode(), Proposal.of(Remove(3)).encode() + b"\x05ab"):
        with pytest.raises(FramingError, match="malformed"):
            framing.decrypt_private(k.suite, _seal_by_hand(k, body), k.tree(), k.sds)
    # A commit needs a confirmation tag after the signature.
    commit = bytes.fromhex(k.case["commit"])
    pm = _seal_by_hand(k, commit + encode_opaque(b"sig"), ContentType.commit)
    with pytest.raises(FramingError):
        framing.decrypt_private(k.suite, pm, k.tree(), k.sds)


@pytest.mark.parametrize("padding", [0, 1, 7, 1000])
def test_padding_round_trips(padding: int) -> None:
    k = Ctx(MP_CASES[1])
    ac = k.signed(WireFormat.private_message, k.content(ContentType.application))
    pm = framing.encrypt_private(k.suite, ac, k.tree(), k.sds, DeterministicRandom(1), padding)
    plain_len = len(encode_opaque(b"hello")) + len(encode_opaque(ac.auth.signature)) + padding
    assert len(pm.ciphertext) == plain_len + 16  # every suite's AEAD tag is 16 bytes
    assert framing.decrypt_private(k.suite, pm, k.tree(), k.sds) == ac
    with pytest.raises(FramingError):
        framing.encrypt_private(k.suite, ac, k.tree(), k.sds, DeterministicRandom(1), -1)


# ---------------------------------------------------------------- other rejections


def test_public_message_for_wrong_group_or_epoch() -> None:
    k = Ctx(MP_CASES[0])
    pm = k.msg("proposal_pub")
    assert isinstance(pm, PublicMessage)
    g = k.group_context
    other_epoch = GroupContext(g.version, g.cipher_suite, g.group_id, g.epoch + 1, g.tree_hash,
                               g.confirmed_transcript_hash, []).encode()
    other_group = GroupContext(g.version, g.cipher_suite, b"other", g.epoch, g.tree_hash,
                               g.confirmed_transcript_hash, []).encode()
    for ctx, code in ((other_epoch, "wrongEpoch"), (other_group, "wrongGroup")):
        for key in (k.membership_key, None):
            with pytest.raises(FramingError) as e:
                framing.from_public_message(k.suite, pm, key, ctx)
            assert e.value.code == code
    with pytest.raises(FramingError, match="GroupContext"):
        framing.from_public_message(k.suite, pm, k.membership_key, b"\x00\x01")


def test_public_message_tag_presence() -> None:
    k = Ctx(MP_CASES[0])
    pm = k.msg("proposal_pub")
    assert isinstance(pm, PublicMessage)
    no_tag = PublicMessage(pm.content, pm.auth, None)
    for key in (k.membership_key, None):
        with pytest.raises(FramingError, match="membership_tag"):
            framing.from_public_message(k.suite, no_tag, key, k.ctx)
    # Commits need a confirmation tag; other content types must not carry one.
    cm = k.msg("commit_pub")
    assert isinstance(cm, PublicMessage)
    with pytest.raises(FramingError, match="confirmation_tag"):
        framing.from_public_message(k.suite, PublicMessage(cm.content, AuthData(cm.auth.signature), cm.membership_tag),
                                    None, k.ctx)
    with pytest.raises(FramingError, match="confirmation_tag"):
        framing.from_public_message(k.suite, PublicMessage(pm.content, AuthData(pm.auth.signature, b"t"),
                                                           pm.membership_tag), None, k.ctx)


def test_application_data_is_never_public() -> None:
    k = Ctx(MP_CASES[0])
    c = k.content(ContentType.application)
    ac = k.signed(WireFormat.public_message, c)
    with pytest.raises(FramingError, match="PrivateMessage"):
        framing.to_public_message(k.suite, ac, k.membership_key, k.ctx)
    forged = PublicMessage(c, ac.auth, b"\x00" * k.suite.hash_len)
    with pytest.raises(FramingError, match="application"):
        framing.from_public_message(k.suite, forged, k.membership_key, k.ctx)


def test_wire_format_is_bound_by_the_signature() -> None:
    """Content signed for PrivateMessage does not verify as PublicMessage, and
    each framing refuses content signed for the other."""
    k = Ctx(MP_CASES[0])
    ac = k.signed(WireFormat.private_message, k.content())
    moved = AuthenticatedContent(WireFormat.public_message, ac.content, ac.auth)
    assert framing.verify_content(k.suite, k.sig_pub, ac, k.ctx)
    assert not framing.verify_content(k.suite, k.sig_pub, moved, k.ctx)
    with pytest.raises(FramingError):
        framing.to_public_message(k.suite, ac, k.membership_key, k.ctx)
    with pytest.raises(FramingError):
        framing.encrypt_private(k.suite, moved, k.tree(), k.sds, DeterministicRandom(1))


def test_signature_binds_the_group_context() -> None:
    k = Ctx(MP_CASES[3])
    ac = k.signed(WireFormat.public_message, k.content())
    assert framing.verify_content(k.suite, k.sig_pub, ac, k.ctx)
    assert not framing.verify_content(k.suite, k.sig_pub, ac, k.ctx + b"\x00")
    with pytest.raises(FramingError, match="GroupContext"):
        framing.sign_content(k.suite, k.sig_priv, WireFormat.public_message, k.content(), None)


def test_external_sender_public_message() -> None:
    """External and new-member-proposal senders sign without the context and
    carry no membership tag."""
    k = Ctx(MP_CASES[0])
    for sender in (Sender.external(0), Sender.new_member_proposal()):
        c = k.content(sender=sender)
        ac = k.signed(WireFormat.public_message, c)
        pm = framing.to_public_message(k.suite, ac, None, None)
        assert pm.membership_tag is None
        pm = PublicMessage.decode(pm.encode())
        back = framing.from_public_message(k.suite, pm, k.membership_key, k.ctx)
        assert framing.verify_content(k.suite, k.sig_pub, back, None)
        assert framing.verify_content(k.suite, k.sig_pub, back, k.ctx)  # context ignored
        with pytest.raises(FramingError, match="members"):
            framing.encrypt_private(k.suite, AuthenticatedContent(WireFormat.private_message, c, ac.auth),
                                    k.tree(), k.sds, DeterministicRandom(1))


def test_member_public_message_needs_membership_key() -> None:
    k = Ctx(MP_CASES[0])
    ac = k.signed(WireFormat.public_message, k.content())
    with pytest.raises(FramingError, match="membership key"):
        framing.to_public_message(k.suite, ac, None, k.ctx)


def test_unknown_sender_leaf() -> None:
    k = Ctx(MP_CASES[4])
    ac = k.signed(WireFormat.private_message, k.content(sender=Sender.member(5)))
    pm = framing.encrypt_private(k.suite, ac, k.tree(8), k.sds, DeterministicRandom(2))
    with pytest.raises(FramingError) as e:
        framing.decrypt_private(k.suite, pm, k.tree(2), k.sds)
    assert e.value.code == "unknownSender"
    assert framing.decrypt_private(k.suite, pm, k.tree(8), k.sds) == ac


def test_wrong_secrets_or_header_fields_fail_to_decrypt() -> None:
    k = Ctx(MP_CASES[5])
    pm = k.msg("commit_priv")
    assert isinstance(pm, PrivateMessage)
    with pytest.raises(FramingError, match="sender data") as e:
        framing.decrypt_private(k.suite, pm, k.tree(), bytes(len(k.sds)))
    assert e.value.code == "undecryptable"
    wrong_tree = SecretTree(k.suite, bytes(len(k.enc_secret)), 2)
    with pytest.raises(FramingError, match="content"):
        framing.decrypt_private(k.suite, pm, wrong_tree, k.sds)
    for bad in (
        PrivateMessage(pm.group_id + b"x", pm.epoch, pm.content_type, pm.authenticated_data,
                       pm.encrypted_sender_data, pm.ciphertext),
        PrivateMessage(pm.group_id, pm.epoch + 1, pm.content_type, pm.authenticated_data,
                       pm.encrypted_sender_data, pm.ciphertext),
        PrivateMessage(pm.group_id, pm.epoch, ContentType.proposal, pm.authenticated_data,
                       pm.encrypted_sender_data, pm.ciphertext),
        PrivateMessage(pm.group_id, pm.epoch, pm.content_type, pm.authenticated_data + b"x",
                       pm.encrypted_sender_data, pm.ciphertext),
        PrivateMessage(pm.group_id, pm.epoch, pm.content_type, pm.authenticated_data,
                       pm.encrypted_sender_data, pm.ciphertext[:5]),
    ):
        with pytest.raises(FramingError):
            framing.decrypt_private(k.suite, bad, k.tree(), k.sds)


def test_reuse_guard_comes_from_the_rng() -> None:
    """Same key generation, different guard: different ciphertexts (s.6.3.1)."""
    k = Ctx(MP_CASES[0])
    ac = k.signed(WireFormat.private_message, k.content(ContentType.application))
    a = framing.encrypt_private(k.suite, ac, k.tree(), k.sds, DeterministicRandom(1))
    b = framing.encrypt_private(k.suite, ac, k.tree(), k.sds, DeterministicRandom(2))
    c = framing.encrypt_private(k.suite, ac, k.tree(), k.sds, DeterministicRandom(1))
    assert a.ciphertext != b.ciphertext
    assert a == c  # deterministic given the seed


def test_transcript_hash_needs_a_commit() -> None:
    k = Ctx(MP_CASES[0])
    ac = k.signed(WireFormat.public_message, k.content())
    with pytest.raises(FramingError, match="commit"):
        framing.confirmed_transcript_hash(k.suite, b"", ac)
