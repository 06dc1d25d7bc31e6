"""The one CBOR (RFC 8949) reader of the MIMI layer, strict.

MIMI content ([CONTENT] "Encoding restrictions") MUST be CBOR in
deterministic serialization (RFC 8949 section 4.2.1). Both readers of it,
the client's (:mod:`mimisim.mimi.client.content`) and franking's
(:func:`mimisim.mimi.franking.franking_fields`), use this module; it keeps
the stricter of the two former readers' checks and adds the
shortest-form rule neither had. :class:`CborReader` refuses, with a
:class:`CborError`:

* truncation: an item, length or string running past the end ("truncated");
* trailing bytes after the top-level item (:func:`decode`, "trailing");
* indefinite lengths (additional information 31, "indefinite") and the
  reserved additional-information values 28-30 ("reserved");
* non-minimal heads: an integer, a length, a tag number or a simple value
  written in a longer form than its value needs ("non-minimal"), the
  shortest-form rule of deterministic CBOR;
* counts that cannot fit: an array or map announcing more items than bytes
  remain ("longer than the input"; every item takes at least one byte);
* nesting deeper than :data:`MAX_DEPTH` containers and tags ("nested too
  deeply"; [CONTENT] allows 4 levels inside extensions and 4 nested parts,
  this bounds recursion on hostile input);
* text strings that are not valid UTF-8;
* map keys other than integers, text strings and byte strings ([CONTENT]
  "Data model restrictions"), integer keys outside +-(2^53 - 1), and
  duplicate keys ("twice");
* simple values other than false, true and null (``undefined`` and the
  unassigned ones);
* bignums (tags 2 and 3) whose value fits in 64 bits: deterministic CBOR
  writes those as plain integers.

Not checked: the order of map keys (many encoders keep insertion order,
[CONTENT] says; a reader gains nothing from refusing it: franks cover the
exact bytes) and the width of floating-point numbers (floats are "strongly
discouraged" in MIMI content and never produced here).

Values: unsigned and negative integers become ``int``, byte strings
``bytes``, text strings ``str``, arrays ``list``, maps ``dict``, tags
:class:`Tag`, ``false``/``true``/``null`` ``False``/``True``/``None``,
floats ``float``. Typed accessors (:meth:`CborReader.text`,
:meth:`CborReader.expect`) refuse a wrong major type.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

#: Containers and tags a CBOR item may nest.
MAX_DEPTH = 16

#: Largest magnitude of an integer map key ([CONTENT]: representable as a double).
MAX_INT_KEY = (1 << 53) - 1

UINT, NINT, BSTR, TSTR, ARRAY, MAP, TAG, SIMPLE = range(8)

_MAJOR_NAMES = ("unsigned integer", "negative integer", "byte string", "text string", "array", "map", "tag",
                "simple value or float")


class CborError(ValueError):
    """Bytes that are not strict, deterministic CBOR of the kind expected."""


@dataclass(frozen=True)
class Tag:
    """A tagged item (major type 6)."""

    number: int
    value: Any


class CborReader:
    """Reads CBOR items from ``data`` at ``pos`` (see the module docstring)."""

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        """The next ``n`` bytes."""
        if n > len(self.data) - self.pos:
            raise CborError("truncated CBOR")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def head(self) -> tuple[int, int]:
        """(major type, argument) of the next item's initial bytes. For major
        type 7 the argument is the simple value, or the raw bits of a float
        (see :meth:`item`)."""
        ib = self.take(1)[0]
        major, ai = ib >> 5, ib & 0x1F
        if ai < 24:
            return major, ai
        if ai <= 27:
            arg = int.from_bytes(self.take(1 << (ai - 24)), "big")
            if major == SIMPLE:
                if ai == 24 and arg < 32:
                    raise CborError(f"non-minimal CBOR simple value {arg}")
                return major, arg
            if arg < (24 if ai == 24 else 1 << (8 << (ai - 25))):
                raise CborError(f"non-minimal CBOR head: {arg} written in {1 << (ai - 24)} bytes")
            return major, arg
        if ai == 31:
            raise CborError("indefinite-length CBOR is not allowed")
        raise CborError(f"reserved CBOR additional information {ai}")

    def count(self, n: int) -> int:
        """``n`` as an item count, refused if the input cannot hold that many."""
        if n > len(self.data) - self.pos:
            raise CborError("CBOR array or map longer than the input")
        return n

    def expect(self, major: int) -> int:
        """The argument of the next head, which must be of ``major`` type."""
        got, arg = self.head()
        if got != major:
            raise CborError(f"expected a CBOR {_MAJOR_NAMES[major]}, got a {_MAJOR_NAMES[got]}")
        return arg

    def text(self) -> str:
        """The next item, which must be a text string."""
        return self._utf8(self.take(self.expect(TSTR)))

    def skip(self, depth: int = 0) -> None:
        """Read (and check) the next item, discarding it."""
        self.item(depth)

    def item(self, depth: int = 0) -> Any:
        """The next item as a Python value; ``depth`` is its nesting level."""
        if depth > MAX_DEPTH:
            raise CborError("CBOR nested too deeply")
        start = self.pos
        major, arg = self.head()
        if major == UINT:
            return arg
        if major == NINT:
            return -1 - arg
        if major == BSTR:
            return self.take(arg)
        if major == TSTR:
            return self._utf8(self.take(arg))
        if major == ARRAY:
            return [self.item(depth + 1) for _ in range(self.count(arg))]
        if major == MAP:
            out: dict[Any, Any] = {}
            for _ in range(self.count(arg)):
                key = self.item(depth + 1)
                if type(key) not in (int, str, bytes):
                    raise CborError("CBOR map keys must be integers or text (or byte) strings")
                if type(key) is int and abs(key) > MAX_INT_KEY:
                    raise CborError(f"CBOR integer map key {key} is not representable as a double")
                if key in out:
                    raise CborError(f"CBOR map key {key!r} appears twice")
                out[key] = self.item(depth + 1)
            return out
        if major == TAG:
            value = self.item(depth + 1)
            if arg in (2, 3) and isinstance(value, bytes) and int.from_bytes(value, "big") < 1 << 64:
                raise CborError("non-minimal CBOR bignum: it fits in a plain integer")
            return Tag(arg, value)
        ai = self.data[start] & 0x1F
        if ai == 25:
            return struct.unpack(">e", arg.to_bytes(2, "big"))[0]
        if ai == 26:
            return struct.unpack(">f", arg.to_bytes(4, "big"))[0]
        if ai == 27:
            return struct.unpack(">d", arg.to_bytes(8, "big"))[0]
        simple = {20: False, 21: True, 22: None}
        if arg not in simple:
            raise CborError(f"unsupported CBOR simple value {arg}")
        return simple[arg]

    def end(self) -> None:
        """Refuse bytes after what was read."""
        if self.pos != len(self.data):
            raise CborError(f"{len(self.data) - self.pos} trailing bytes after the CBOR item")

    @staticmethod
    def _utf8(b: bytes) -> str:
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            raise CborError("invalid UTF-8 in a CBOR text string") from None


def decode(data: bytes) -> Any:
    """The one CBOR item that is all of ``data``."""
    r = CborReader(data)
    out = r.item()
    r.end()
    return out
