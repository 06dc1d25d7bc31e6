"""Checkers for message-protection.json and transcript-hashes.json
(mlswg/mls-implementations).

Each ``check_*`` takes one parsed JSON case and raises :class:`AssertionError`
naming the first mismatch. Both unprotect the vector's messages and protect
the raw values ourselves, so the checks cover the sending and receiving sides.
No file I/O here: the caller loads the JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mimisim.codec import DecodeError
from mimisim.mls import framing
from mimisim.mls.crypto import CipherSuite, DeterministicRandom, get_suite
from mimisim.mls.keyschedule import SecretTree
from mimisim.mls.structs import (
    MLS10,
    AuthenticatedContent,
    Commit,
    ContentType,
    FramedContent,
    GroupContext,
    MLSMessage,
    PrivateMessage,
    Proposal,
    PublicMessage,
    Sender,
    WireFormat,
)

__all__ = ["check_message_protection", "check_transcript_hashes", "CHECKERS"]

Case = Mapping[str, Any]

SENDER_LEAF = 1
"""test-vectors.md: "use the member with LeafIndex 1 as the sender"."""
N_LEAVES = 2
"""test-vectors.md: "Initialize a secret tree for 2 members"."""


def _hex(v: str) -> bytes:
    return bytes.fromhex(v)


def _eq(what: str, got: bytes, want: bytes) -> None:
    if got != want:
        raise AssertionError(f"{what}: got {got.hex()}, want {want.hex()}")


def _sig_priv(suite: CipherSuite, case: Case) -> bytes:
    """The vector's signature private key in our fixed-length form.

    The published P-521 case writes its scalar minimally (65 bytes, the top
    zero byte dropped) while ``CipherSuite`` takes ECDSA scalars at the curve's
    full width, as RFC 9420's suites serialise them; left-pad to the width the
    public key (an uncompressed SEC1 point, 1 + 2 * width bytes) implies.
    """
    priv = _hex(case["signature_priv"])
    if suite.signature_scheme.startswith("ecdsa"):
        width = (len(_hex(case["signature_pub"])) - 1) // 2
        if len(priv) < width:
            priv = bytes(width - len(priv)) + priv
    return priv


def _decode_message(what: str, data: bytes, body_type: type) -> Any:
    try:
        m = MLSMessage.decode(data)
    except DecodeError as e:
        raise AssertionError(f"{what}: does not decode: {e}") from None
    if not isinstance(m.body, body_type):
        raise AssertionError(f"{what}: expected {body_type.__name__}, got {type(m.body).__name__}")
    if m.encode() != data:
        raise AssertionError(f"{what}: does not re-encode to the same bytes")
    return m.body


def _raw(content: FramedContent) -> bytes:
    """The vector's raw value for a content: serialized Proposal/Commit, or the
    application bytes."""
    if content.content_type == ContentType.application:
        assert content.application_data is not None
        return content.application_data
    if content.content_type == ContentType.proposal:
        assert content.proposal is not None
        return content.proposal.encode()
    assert content.commit is not None
    return content.commit.encode()


def _check_unprotected(what: str, ac: AuthenticatedContent, ctx: GroupContext, raw: bytes) -> None:
    c = ac.content
    if c.group_id != ctx.group_id or c.epoch != ctx.epoch:
        raise AssertionError(f"{what}: wrong group id or epoch")
    if c.sender != Sender.member(SENDER_LEAF):
        raise AssertionError(f"{what}: sender {c.sender}, want member {SENDER_LEAF}")
    _eq(f"{what} content", _raw(c), raw)


def _content(ctx: GroupContext, content_type: ContentType, raw: bytes, aad: bytes) -> FramedContent:
    app = raw if content_type == ContentType.application else None
    prop = Proposal.decode(raw) if content_type == ContentType.proposal else None
    commit = Commit.decode(raw) if content_type == ContentType.commit else None
    return FramedContent(ctx.group_id, ctx.epoch, Sender.member(SENDER_LEAF), aad, content_type, app, prop, commit)


def _check_one(
    suite: CipherSuite,
    case: Case,
    ctx: GroupContext,
    name: str,
    content_type: ContentType,
    raw: bytes,
) -> None:
    ctx_bytes = ctx.encode()
    membership_key = _hex(case["membership_key"])
    sig_pub, sig_priv = _hex(case["signature_pub"]), _sig_priv(suite, case)
    enc_secret, sds = _hex(case["encryption_secret"]), _hex(case["sender_data_secret"])
    confirmation_tag: bytes | None = None

    # --- public form: theirs, then ours
    if content_type != ContentType.application:
        what = f"{name}_pub"
        pm = _decode_message(what, _hex(case[what]), PublicMessage)
        try:
            ac = framing.from_public_message(suite, pm, membership_key, ctx_bytes)
        except framing.FramingError as e:
            raise AssertionError(f"{what}: rejected: {e}") from None
        if not framing.verify_content(suite, sig_pub, ac, ctx_bytes):
            raise AssertionError(f"{what}: signature does not verify")
        _check_unprotected(what, ac, ctx, raw)
        confirmation_tag = ac.auth.confirmation_tag

    # --- private form: theirs
    what = f"{name}_priv"
    prm = _decode_message(what, _hex(case[what]), PrivateMessage)
    try:
        ac = framing.decrypt_private(suite, prm, SecretTree(suite, enc_secret, N_LEAVES), sds)
    except framing.FramingError as e:
        raise AssertionError(f"{what}: rejected: {e}") from None
    if not framing.verify_content(suite, sig_pub, ac, ctx_bytes):
        raise AssertionError(f"{what}: signature does not verify")
    _check_unprotected(what, ac, ctx, raw)
    if confirmation_tag is None:
        confirmation_tag = ac.auth.confirmation_tag
    aad = ac.content.authenticated_data

    # --- protect ourselves: public
    content = _content(ctx, content_type, raw, aad)
    auth = framing.sign_content(suite, sig_priv, WireFormat.public_message, content, ctx_bytes)
    auth.confirmation_tag = confirmation_tag
    ac = AuthenticatedContent(WireFormat.public_message, content, auth)
    if content_type == ContentType.application:
        try:
            framing.to_public_message(suite, ac, membership_key, ctx_bytes)
        except framing.FramingError:
            pass
        else:
            raise AssertionError("application data was accepted as a PublicMessage")
    else:
        data = MLSMessage.wrap(framing.to_public_message(suite, ac, membership_key, ctx_bytes)).encode()
        pm = _decode_message(f"our {name} PublicMessage", data, PublicMessage)
        back = framing.from_public_message(suite, pm, membership_key, ctx_bytes)
        if not framing.verify_content(suite, sig_pub, back, ctx_bytes):
            raise AssertionError(f"our {name} PublicMessage: signature does not verify")
        _check_unprotected(f"our {name} PublicMessage", back, ctx, raw)

    # --- protect ourselves: private (fresh secret tree on each side)
    for padding in (0, 17):
        auth = framing.sign_content(suite, sig_priv, WireFormat.private_message, content, ctx_bytes)
        auth.confirmation_tag = confirmation_tag
        ac = AuthenticatedContent(WireFormat.private_message, content, auth)
        rng = DeterministicRandom(b"vectors", f"message-protection/{name}/{padding}")
        sent = framing.encrypt_private(suite, ac, SecretTree(suite, enc_secret, N_LEAVES), sds, rng, padding)
        data = MLSMessage.wrap(sent).encode()
        prm = _decode_message(f"our {name} PrivateMessage", data, PrivateMessage)
        try:
            back = framing.decrypt_private(suite, prm, SecretTree(suite, enc_secret, N_LEAVES), sds)
        except framing.FramingError as e:
            raise AssertionError(f"our {name} PrivateMessage (padding {padding}): rejected: {e}") from None
        if back != ac:
            raise AssertionError(f"our {name} PrivateMessage (padding {padding}): content differs")
        if not framing.verify_content(suite, sig_pub, back, ctx_bytes):
            raise AssertionError(f"our {name} PrivateMessage: signature does not verify")


def check_message_protection(case: Case) -> None:
    """Unprotect the vector's public and private proposal, commit and
    application messages, and protect the raw values ourselves."""
    suite = get_suite(int(case["cipher_suite"]))
    ctx = GroupContext(
        MLS10,
        int(case["cipher_suite"]),
        _hex(case["group_id"]),
        int(case["epoch"]),
        _hex(case["tree_hash"]),
        _hex(case["confirmed_transcript_hash"]),
        [],
    )
    _check_one(suite, case, ctx, "proposal", ContentType.proposal, _hex(case["proposal"]))
    _check_one(suite, case, ctx, "commit", ContentType.commit, _hex(case["commit"]))
    _check_one(suite, case, ctx, "application", ContentType.application, _hex(case["application"]))


def check_transcript_hashes(case: Case) -> None:
    """Confirmation tag and both transcript hashes after one commit."""
    suite = get_suite(int(case["cipher_suite"]))
    try:
        ac = AuthenticatedContent.decode(_hex(case["authenticated_content"]))
    except DecodeError as e:
        raise AssertionError(f"authenticated_content does not decode: {e}") from None
    if ac.content.content_type != ContentType.commit or ac.auth.confirmation_tag is None:
        raise AssertionError("authenticated_content is not a commit")
    confirmed = framing.confirmed_transcript_hash(suite, _hex(case["interim_transcript_hash_before"]), ac)
    _eq("confirmed_transcript_hash_after", confirmed, _hex(case["confirmed_transcript_hash_after"]))
    tag = framing.confirmation_tag(suite, _hex(case["confirmation_key"]), confirmed)
    _eq("confirmation_tag", ac.auth.confirmation_tag, tag)
    _eq(
        "interim_transcript_hash_after",
        framing.interim_transcript_hash(suite, confirmed, ac.auth.confirmation_tag),
        _hex(case["interim_transcript_hash_after"]),
    )


CHECKERS = {
    "message-protection.json": check_message_protection,
    "transcript-hashes.json": check_transcript_hashes,
}
