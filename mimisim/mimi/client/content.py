"""MIMI content (draft-ietf-mimi-content) as this client writes and reads it.

See the package docstring for the encoding: a minimal but genuine CBOR
``mimiContent`` with a SinglePart text body, written by
:func:`mimisim.mimi.franking.encode_simple_content`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from mimisim.mimi import cbor
from mimisim.mimi import franking as F

# ==========================================================================
# MIMI content (draft-ietf-mimi-content), minimal CBOR

TEXT_PLAIN = "text/plain;charset=utf-8"
DISPOSITION_RENDER = 1
CARDINALITY_SINGLE = 1
SALT_LEN = 16


ContentError = F.ContentError  # bytes that are not a mimiContent this client can read


@dataclass(frozen=True)
class MimiContent:
    """The fields of a ``mimiContent`` this client writes and reads."""

    salt: bytes
    sender_uri: str
    room_uri: str
    text: str
    content_type: str = TEXT_PLAIN


def message_id(sender_uri: str, room_uri: str, content: bytes, salt: bytes) -> bytes:
    """The content's MessageId (draft-ietf-mimi-content s.3.3, "Message ID"):
    ``0x01 || SHA-256(len16(senderUri) || senderUri || len16(roomUri) ||
    roomUri || content || salt)[0..30]``. The salt is chosen once per
    message, so a resubmission of the same message, even re-encrypted in
    another epoch, keeps its id."""
    s, r = sender_uri.encode("utf-8"), room_uri.encode("utf-8")
    h = hashlib.sha256(len(s).to_bytes(2, "big") + s + len(r).to_bytes(2, "big") + r + content + salt).digest()
    return b"\x01" + h[:31]


def content_id(mid: bytes) -> str:
    """The trace's ``content_id``: the first 8 bytes of the hash in hex."""
    return mid[1:9].hex()


def encode_mimi_content(c: MimiContent) -> bytes:
    """``mimiContent = [salt, replaces, topicId, expires, inReplyTo,
    mimiExtensions, nestedPart]`` with a SinglePart ``nestedPart``, written by
    :func:`mimisim.mimi.franking.encode_simple_content`."""
    return F.encode_simple_content(c.salt, c.sender_uri, c.room_uri, c.text.encode("utf-8"), c.content_type)


def decode_mimi_content(data: bytes) -> MimiContent:
    """Read a mimiContent with a SinglePart text body; raises ContentError.

    The bytes must be strict CBOR (:func:`mimisim.mimi.cbor.decode`, the one
    reader franking uses too); the checks here are about the shape this
    client can show: a 16-byte salt, the sender and room URIs in the
    extensions map, a SinglePart whose content is UTF-8 text."""
    try:
        top = cbor.decode(data)
    except cbor.CborError as e:
        raise ContentError(str(e)) from None
    if not isinstance(top, list) or len(top) != 7:
        raise ContentError("mimiContent is a 7-element array")
    salt, _replaces, _topic, _expires, _reply, ext, nested = top
    if not isinstance(salt, bytes) or len(salt) != SALT_LEN:
        raise ContentError("salt must be a 16-byte bstr")
    if not isinstance(ext, dict):
        raise ContentError("mimiExtensions must be a map")
    sender, room = ext.get(1), ext.get(2)
    if not isinstance(sender, str) or not isinstance(room, str):
        raise ContentError("senderUri (1) and roomUri (2) are required for franking")
    if not isinstance(nested, list) or len(nested) != 5 or nested[2] != CARDINALITY_SINGLE:
        raise ContentError("only a SinglePart nestedPart is supported")
    ctype, body = nested[3], nested[4]
    if not isinstance(ctype, str) or not isinstance(body, bytes):
        raise ContentError("SinglePart needs a tstr contentType and a bstr content")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ContentError("text content is not UTF-8") from None
    return MimiContent(salt, sender, room, text, ctype)
