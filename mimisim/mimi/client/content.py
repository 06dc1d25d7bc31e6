"""MIMI content (draft-ietf-mimi-content) as this client writes and reads it.

See the package docstring for the encoding: a minimal but genuine CBOR
``mimiContent`` with a SinglePart text body, written by
:func:`mimisim.mimi.franking.encode_simple_content`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


_NULL = None  # CBOR null decodes to None


class _CborReader:
    """Strict reader of definite-length CBOR: uints, byte/text strings,
    arrays, maps, null, booleans. Anything else is refused."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ContentError("truncated CBOR")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def item(self, depth: int = 0) -> Any:
        if depth > 16:
            raise ContentError("CBOR nested too deeply")
        ib = self._take(1)[0]
        major, ai = ib >> 5, ib & 0x1F
        if major == 7:
            simple = {20: False, 21: True, 22: _NULL}
            if ai not in simple:
                raise ContentError(f"unsupported CBOR simple value {ai}")
            return simple[ai]
        if ai < 24:
            n = ai
        elif ai in (24, 25, 26, 27):
            n = int.from_bytes(self._take(1 << (ai - 24)), "big")
        else:
            raise ContentError("indefinite or reserved CBOR length")
        if major == 0:
            return n
        if major == 2:
            return self._take(n)
        if major == 3:
            try:
                return self._take(n).decode("utf-8")
            except UnicodeDecodeError:
                raise ContentError("invalid UTF-8 in CBOR text") from None
        if major == 4:
            if n > len(self.data):
                raise ContentError("CBOR array longer than the data")
            return [self.item(depth + 1) for _ in range(n)]
        if major == 5:
            if n > len(self.data):
                raise ContentError("CBOR map longer than the data")
            out: dict[Any, Any] = {}
            for _ in range(n):
                k = self.item(depth + 1)
                if isinstance(k, list | dict) or k in out:
                    raise ContentError("bad or duplicate CBOR map key")
                out[k] = self.item(depth + 1)
            return out
        raise ContentError(f"unsupported CBOR major type {major}")


def encode_mimi_content(c: MimiContent) -> bytes:
    """``mimiContent = [salt, replaces, topicId, expires, inReplyTo,
    mimiExtensions, nestedPart]`` with a SinglePart ``nestedPart``, written by
    :func:`mimisim.mimi.franking.encode_simple_content`."""
    return F.encode_simple_content(c.salt, c.sender_uri, c.room_uri, c.text.encode("utf-8"), c.content_type)


def decode_mimi_content(data: bytes) -> MimiContent:
    """Read a mimiContent with a SinglePart text body; raises ContentError."""
    r = _CborReader(data)
    top = r.item()
    if r.pos != len(data):
        raise ContentError("trailing bytes after mimiContent")
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
