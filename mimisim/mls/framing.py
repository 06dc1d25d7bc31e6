"""Message framing (RFC 9420 s.6) and transcript hashes (s.8.2).

This module turns an :class:`AuthenticatedContent` into the two framed wire
forms and back:

* signing and verifying ``FramedContentTBS`` (s.6.1),
* :class:`PublicMessage` with its membership tag (s.6.2),
* :class:`PrivateMessage` with content and sender-data encryption (s.6.3),
* the confirmed / interim transcript hashes and the confirmation tag (s.8.2).

It is sans-IO: the only randomness (the 4-byte reuse guard) comes from an
injected :class:`RandomSource`. Group state (which leaf is whose, which key
signs) stays with the caller; this module only needs the serialized
GroupContext, the per-epoch secrets and the epoch's :class:`SecretTree`.

Every failure caused by the bytes of a message raises :class:`FramingError`
(an :class:`MLSError`, hence a ``ValueError``), never a codec, crypto or
secret-tree exception, so callers at a trust boundary catch exactly one type.
Its ``code`` says why (``"replay"``, ``"badMembershipTag"``,
``"undecryptable"``, ...); replays also say ``replay`` in the message text.
"""

from __future__ import annotations

import hmac

from mimisim.codec import DecodeError, EncodeError, Reader, encode_opaque, opaque, uint64
from mimisim.mls.crypto import CipherSuite, CryptoError, RandomSource
from mimisim.mls.errors import MLSError
from mimisim.mls.keyschedule import SecretTree, SecretTreeError, sender_data_key_nonce
from mimisim.mls.structs import (
    MLS10,
    AuthData,
    AuthDataCodec,
    AuthenticatedContent,
    Commit,
    ConfirmedTranscriptHashInput,
    ContentType,
    FramedContent,
    PrivateContentAAD,
    PrivateMessage,
    Proposal,
    PublicMessage,
    Sender,
    SenderData,
    SenderDataAAD,
    SenderType,
    WireFormat,
)

__all__ = [
    "FramingError",
    "framed_content_tbs",
    "sign_content",
    "verify_content",
    "membership_tag",
    "to_public_message",
    "from_public_message",
    "encrypt_private",
    "decrypt_private",
    "confirmed_transcript_hash",
    "interim_transcript_hash",
    "confirmation_tag",
]

_TBS_LABEL = b"FramedContentTBS"
_REUSE_GUARD_LEN = 4
_AUTH_DATA_CODEC = AuthDataCodec()


class FramingError(MLSError):
    """A framed message this member (or server) must reject.

    ``code`` is one of ``"malformed"``, ``"wrongGroup"``, ``"wrongEpoch"``,
    ``"badMembershipTag"``, ``"undecryptable"``, ``"badPadding"``,
    ``"unknownSender"``, ``"replay"``, ``"generationTooFar"``.
    """

    code = "framing"


# --------------------------------------------------------------------------
# helpers


def _needs_context(sender: Sender) -> bool:
    """Member and new-member-commit signatures cover the GroupContext (s.6.1)."""
    return sender.sender_type in (SenderType.member, SenderType.new_member_commit)


def _auth_bytes(content: FramedContent, auth: AuthData) -> bytes:
    """FramedContentAuthData, after checking it matches the content type."""
    if (content.content_type == ContentType.commit) != (auth.confirmation_tag is not None):
        raise FramingError("confirmation_tag must be present exactly for commits", "malformed")
    out = bytearray()
    try:
        _AUTH_DATA_CODEC.encode(auth, out)
    except EncodeError as e:
        raise FramingError(f"cannot encode FramedContentAuthData: {e}", "malformed") from None
    return bytes(out)


def _context_group_epoch(group_context: bytes) -> tuple[bytes, int]:
    """group_id and epoch from serialized GroupContext bytes, reading only the
    prefix (version, cipher_suite, group_id, epoch): cheap at any group size."""
    try:
        r = Reader(group_context)
        r.take(4)
        gid = opaque.decode(r, {})
        epoch = uint64.decode(r, {})
    except DecodeError as e:
        raise FramingError(f"malformed GroupContext: {e}", "malformed") from None
    return gid, epoch


def _xor_guard(nonce: bytes, guard: bytes) -> bytes:
    """s.6.3.1: the reuse guard is XORed into the first 4 bytes of the nonce."""
    head = bytes(a ^ b for a, b in zip(nonce[:_REUSE_GUARD_LEN], guard, strict=True))
    return head + nonce[_REUSE_GUARD_LEN:]


def _secret_tree_error(e: SecretTreeError) -> FramingError:
    """Keep the secret tree's reason (replay, too far, bad leaf) visible both as
    ``code`` and in the text, which callers map to ReplayError."""
    code = {"invalidLeaf": "unknownSender"}.get(e.code, e.code)
    return FramingError(f"{e.code}: {e}", code)


# --------------------------------------------------------------------------
# signing (s.6.1)


def framed_content_tbs(wire_format: WireFormat, content: FramedContent, group_context: bytes | None) -> bytes:
    """Serialized FramedContentTBS.

    ``group_context`` (serialized GroupContext) is appended for member and
    new_member_commit senders, which binds their signature to the epoch; it
    is ignored for external and new_member_proposal senders, whose signers
    need not know the current context. Missing it where needed is a caller
    bug, reported as FramingError rather than silently signing less.
    """
    try:
        head = MLS10.to_bytes(2, "big") + int(wire_format).to_bytes(2, "big") + content.encode()
    except EncodeError as e:
        raise FramingError(f"cannot encode FramedContent: {e}", "malformed") from None
    if _needs_context(content.sender):
        if group_context is None:
            raise FramingError(
                f"a {content.sender.sender_type.name} sender's signature covers the GroupContext; none given",
                "malformed",
            )
        return head + bytes(group_context)
    return head


def sign_content(
    suite: CipherSuite,
    sig_priv: bytes,
    wire_format: WireFormat,
    content: FramedContent,
    group_context: bytes | None,
) -> AuthData:
    """Sign ``content`` as it will be sent in ``wire_format``.

    For a commit the returned AuthData has no confirmation tag yet: the tag
    depends on the confirmed transcript hash, which depends on this signature,
    so the caller computes it next and sets ``confirmation_tag``.
    """
    tbs = framed_content_tbs(wire_format, content, group_context)
    try:
        sig = suite.sign_with_label(sig_priv, _TBS_LABEL, tbs)
    except CryptoError as e:
        raise FramingError(f"cannot sign: {e}", "malformed") from None
    return AuthData(sig, None)


def verify_content(
    suite: CipherSuite, sig_pub: bytes, auth_content: AuthenticatedContent, group_context: bytes | None
) -> bool:
    """True iff the signature over FramedContentTBS verifies under ``sig_pub``.

    The wire format used is the one the content arrived in, so a message
    re-framed from private to public (or back) does not verify. A bad
    signature or malformed key is False; only a missing ``group_context`` for
    a member / new_member_commit sender (a caller bug) raises FramingError.
    """
    tbs = framed_content_tbs(auth_content.wire_format, auth_content.content, group_context)
    return bool(suite.verify_with_label(sig_pub, _TBS_LABEL, tbs, auth_content.auth.signature))


# --------------------------------------------------------------------------
# PublicMessage (s.6.2)


def membership_tag(
    suite: CipherSuite, membership_key: bytes, auth_content: AuthenticatedContent, group_context: bytes
) -> bytes:
    """MAC(membership_key, AuthenticatedContentTBM): proves a member sent it.

    AuthenticatedContentTBM = FramedContentTBS || FramedContentAuthData.
    """
    tbs = framed_content_tbs(auth_content.wire_format, auth_content.content, group_context)
    return suite.mac(membership_key, tbs + _auth_bytes(auth_content.content, auth_content.auth))


def to_public_message(
    suite: CipherSuite,
    auth_content: AuthenticatedContent,
    membership_key: bytes | None,
    group_context: bytes | None,
) -> PublicMessage:
    """Frame signed content as a PublicMessage.

    Member senders get a membership tag (so ``membership_key`` and
    ``group_context`` are required); other senders carry none. Application
    data is refused: RFC 9420 s.6.2 requires it to be encrypted.
    """
    c = auth_content.content
    if auth_content.wire_format != WireFormat.public_message:
        raise FramingError(f"content was signed for {auth_content.wire_format.name}", "malformed")
    if c.content_type == ContentType.application:
        raise FramingError("application data must be sent as a PrivateMessage", "malformed")
    _auth_bytes(c, auth_content.auth)
    tag: bytes | None = None
    if c.sender.sender_type == SenderType.member:
        if membership_key is None or group_context is None:
            raise FramingError("a member's PublicMessage needs the membership key and GroupContext", "malformed")
        tag = membership_tag(suite, membership_key, auth_content, group_context)
    return PublicMessage(c, auth_content.auth, tag)


def from_public_message(
    suite: CipherSuite,
    msg: PublicMessage,
    membership_key: bytes | None,
    group_context: bytes | None,
) -> AuthenticatedContent:
    """Check a PublicMessage's framing and return its AuthenticatedContent.

    With ``group_context`` the group id and epoch must match it. With
    ``membership_key`` a member sender's membership tag is verified; a server
    that is not in the group passes None and skips only that check. The
    signature is not verified here: the caller knows the sender's key and
    calls :func:`verify_content`.
    """
    c = msg.content
    if c.content_type == ContentType.application:
        raise FramingError("application data must not be sent as a PublicMessage", "malformed")
    _auth_bytes(c, msg.auth)
    if group_context is not None:
        gid, epoch = _context_group_epoch(group_context)
        if c.group_id != gid:
            raise FramingError("PublicMessage for another group", "wrongGroup")
        if c.epoch != epoch:
            raise FramingError(f"PublicMessage for epoch {c.epoch}, group is at epoch {epoch}", "wrongEpoch")
    ac = AuthenticatedContent(WireFormat.public_message, c, msg.auth)
    is_member = c.sender.sender_type == SenderType.member
    if is_member != (msg.membership_tag is not None):
        raise FramingError("membership_tag must be present exactly for member senders", "malformed")
    if is_member and membership_key is not None:
        if group_context is None:
            raise FramingError("checking a membership tag needs the GroupContext", "malformed")
        want = membership_tag(suite, membership_key, ac, group_context)
        assert msg.membership_tag is not None
        if not hmac.compare_digest(want, msg.membership_tag):
            raise FramingError("invalid membership tag", "badMembershipTag")
    return ac


# --------------------------------------------------------------------------
# PrivateMessage (s.6.3)


def _content_body(c: FramedContent) -> bytes:
    """The content-type-specific head of PrivateMessageContent."""
    try:
        if c.content_type == ContentType.application:
            if c.application_data is None:
                raise FramingError("application content without application_data", "malformed")
            return encode_opaque(c.application_data)
        if c.content_type == ContentType.proposal:
            if c.proposal is None:
                raise FramingError("proposal content without a proposal", "malformed")
            return c.proposal.encode()
        if c.commit is None:
            raise FramingError("commit content without a commit", "malformed")
        return c.commit.encode()
    except EncodeError as e:
        raise FramingError(f"cannot encode content: {e}", "malformed") from None


def encrypt_private(
    suite: CipherSuite,
    auth_content: AuthenticatedContent,
    secret_tree: SecretTree,
    sender_data_secret: bytes,
    rng: RandomSource,
    padding: int = 0,
) -> PrivateMessage:
    """Encrypt signed content from a member as a PrivateMessage.

    Consumes the next generation of the sender's ratchet in ``secret_tree``
    (application ratchet for application data, handshake ratchet for
    proposals and commits). ``padding`` zero bytes are appended to hide the
    content length. The sender data (leaf, generation, reuse guard) is
    encrypted under a key bound to the first Nh bytes of the ciphertext.
    """
    c = auth_content.content
    if auth_content.wire_format != WireFormat.private_message:
        raise FramingError(f"content was signed for {auth_content.wire_format.name}", "malformed")
    if c.sender.sender_type != SenderType.member or c.sender.leaf_index is None:
        raise FramingError("only members can send PrivateMessages", "malformed")
    if padding < 0:
        raise FramingError(f"negative padding {padding}", "malformed")
    plaintext = _content_body(c) + _auth_bytes(c, auth_content.auth) + bytes(padding)
    leaf = c.sender.leaf_index
    try:
        if c.content_type == ContentType.application:
            generation, key, nonce = secret_tree.next_application(leaf)
        else:
            generation, key, nonce = secret_tree.next_handshake(leaf)
    except SecretTreeError as e:
        raise _secret_tree_error(e) from None
    guard = rng.random_bytes(_REUSE_GUARD_LEN)
    if len(guard) != _REUSE_GUARD_LEN:
        raise FramingError("random source returned a short reuse guard", "malformed")
    try:
        aad = PrivateContentAAD(c.group_id, c.epoch, c.content_type, c.authenticated_data).encode()
        ciphertext = suite.aead_seal(key, _xor_guard(nonce, guard), aad, plaintext)
        sd_key, sd_nonce = sender_data_key_nonce(suite, sender_data_secret, ciphertext)
        sd_aad = SenderDataAAD(c.group_id, c.epoch, c.content_type).encode()
        sender_data = SenderData(leaf, generation, guard).encode()
        encrypted_sender_data = suite.aead_seal(sd_key, sd_nonce, sd_aad, sender_data)
    except (EncodeError, CryptoError) as e:
        raise FramingError(f"cannot encrypt: {e}", "malformed") from None
    return PrivateMessage(
        c.group_id, c.epoch, c.content_type, c.authenticated_data, encrypted_sender_data, ciphertext
    )


def _parse_private_content(content_type: ContentType, plaintext: bytes) -> tuple[
    bytes | None, Proposal | None, Commit | None, AuthData
]:
    """Parse PrivateMessageContent by hand: its layout depends on the content
    type, which travels outside it, and the padding has no length prefix."""
    r = Reader(plaintext)
    app: bytes | None = None
    proposal: Proposal | None = None
    commit: Commit | None = None
    try:
        if content_type == ContentType.application:
            r.path.append("application_data")
            app = opaque.decode(r, {})
        elif content_type == ContentType.proposal:
            r.path.append("Proposal")
            proposal = Proposal.decode_prefix(r)
        else:
            r.path.append("Commit")
            commit = Commit.decode_prefix(r)
        r.path = ["FramedContentAuthData"]
        signature = opaque.decode(r, {})
        tag = opaque.decode(r, {}) if content_type == ContentType.commit else None
    except DecodeError as e:
        raise FramingError(f"malformed PrivateMessageContent: {e}", "malformed") from None
    rest = r.take(r.remaining())
    if any(rest):
        raise FramingError("PrivateMessageContent padding is not all zeros", "badPadding")
    return app, proposal, commit, AuthData(signature, tag)


def decrypt_private(
    suite: CipherSuite,
    msg: PrivateMessage,
    secret_tree: SecretTree,
    sender_data_secret: bytes,
) -> AuthenticatedContent:
    """Decrypt a PrivateMessage of this epoch into AuthenticatedContent.

    The ratchet key is consumed only once the content decrypts: the key is
    first taken from a copy of ``secret_tree``, so a forged or corrupted
    message cannot burn the generation the genuine message will use. A second
    delivery of the same message fails with code ``"replay"``. The signature
    is not checked here (the caller looks up the sender's leaf).
    """
    try:
        sd_key, sd_nonce = sender_data_key_nonce(suite, sender_data_secret, msg.ciphertext)
        sd_aad = SenderDataAAD(msg.group_id, msg.epoch, msg.content_type).encode()
        sd_plain = suite.aead_open(sd_key, sd_nonce, sd_aad, msg.encrypted_sender_data)
    except (CryptoError, EncodeError) as e:
        raise FramingError(f"cannot decrypt sender data: {e}", "undecryptable") from None
    try:
        sd = SenderData.decode(sd_plain)
    except DecodeError as e:
        raise FramingError(f"malformed sender data: {e}", "malformed") from None
    if sd.leaf_index >= secret_tree.n_leaves:
        raise FramingError(
            f"sender leaf {sd.leaf_index} outside a tree of {secret_tree.n_leaves} leaves", "unknownSender"
        )

    def key_for(tree: SecretTree) -> tuple[bytes, bytes]:
        try:
            if msg.content_type == ContentType.application:
                return tree.application_key(sd.leaf_index, sd.generation)
            return tree.handshake_key(sd.leaf_index, sd.generation)
        except SecretTreeError as e:
            raise _secret_tree_error(e) from None

    key, nonce = key_for(secret_tree.copy())
    try:
        aad = PrivateContentAAD(msg.group_id, msg.epoch, msg.content_type, msg.authenticated_data).encode()
        plaintext = suite.aead_open(key, _xor_guard(nonce, sd.reuse_guard), aad, msg.ciphertext)
    except (CryptoError, EncodeError) as e:
        raise FramingError(f"cannot decrypt content: {e}", "undecryptable") from None
    app, proposal, commit, auth = _parse_private_content(msg.content_type, plaintext)
    key_for(secret_tree)  # authentic: now consume the generation for real
    content = FramedContent(
        msg.group_id,
        msg.epoch,
        Sender.member(sd.leaf_index),
        msg.authenticated_data,
        msg.content_type,
        app,
        proposal,
        commit,
    )
    return AuthenticatedContent(WireFormat.private_message, content, auth)


# --------------------------------------------------------------------------
# transcript hashes (s.8.2)


def confirmed_transcript_hash(
    suite: CipherSuite, interim_before: bytes, auth_content: AuthenticatedContent
) -> bytes:
    """Hash(interim_transcript_hash || ConfirmedTranscriptHashInput) for a commit."""
    c = auth_content.content
    if c.content_type != ContentType.commit:
        raise FramingError("only commits enter the transcript hash", "malformed")
    try:
        data = ConfirmedTranscriptHashInput(auth_content.wire_format, c, auth_content.auth.signature).encode()
    except EncodeError as e:
        raise FramingError(f"cannot encode ConfirmedTranscriptHashInput: {e}", "malformed") from None
    return suite.hash(interim_before + data)


def interim_transcript_hash(suite: CipherSuite, confirmed: bytes, confirmation_tag: bytes) -> bytes:
    """Hash(confirmed_transcript_hash || InterimTranscriptHashInput{confirmation_tag})."""
    return suite.hash(confirmed + encode_opaque(confirmation_tag))


def confirmation_tag(suite: CipherSuite, confirmation_key: bytes, confirmed_transcript_hash: bytes) -> bytes:
    """MAC(confirmation_key, confirmed_transcript_hash): proves agreement on the
    new epoch's key schedule and transcript."""
    return suite.mac(confirmation_key, confirmed_transcript_hash)
