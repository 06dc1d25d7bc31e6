"""TLS presentation language (RFC 8446 s.3) with MLS variable-length vectors.

Wire structs are declared once, as dataclasses whose fields carry their codec,
and are encoded and decoded generically::

    class KDFLabel(Struct):
        length: int = field(uint16)
        label: bytes = field(opaque)
        context: bytes = field(opaque)

    KDFLabel(32, b"MLS 1.0 x", b"").encode()
    KDFLabel.decode(data)            # strict: consumes every byte

Why hand-written: no maintained PyPI library speaks RFC 9420's varint-length
vectors (s.2.1.2) with strict decoding (minimal encodings, no trailing bytes)
and field-path error messages; `construct` is close but slow and its errors do
not name a struct path. The codec is small and has no I/O.

A struct class that sets ``_keep_wire = True`` keeps the exact bytes it was
decoded from and re-encodes to them without walking its fields (large
commits are hashed and verified several times). Assigning any field drops
the cache; mutating a nested value in place is not tracked, so decoded
objects of such classes are treated as immutable.

A struct class that sets ``_share_decoded = True`` (a top-level message that
many simulated members decode from the same bytes and treat as immutable)
is decoded once per process for given bytes while :mod:`mimisim.sharing` is
on: :meth:`Struct.decode` returns the same object for equal bytes from a
bounded cache (by entries and by bytes held). Decode errors are not cached.
Such objects must never be mutated by their users; the sharing-off test
(``tests/test_sharing.py``) is the guard.

Decoding is strict. Truncation, trailing bytes, non-minimal or too-large
varints, unknown values of closed enums and malformed optionals all raise
:class:`DecodeError`, whose message names the field path (``Commit.path.nodes[2]``).
"""

from __future__ import annotations

import dataclasses
import enum
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Self, TypeVar, dataclass_transform

from mimisim import sharing

__all__ = [
    "DecodeError",
    "EncodeError",
    "Reader",
    "Codec",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "opaque",
    "Opaque",
    "Fixed",
    "Vector",
    "Optional",
    "EnumCodec",
    "Select",
    "Lazy",
    "Raw",
    "field",
    "encode_varint",
    "decode_varint",
    "encode_opaque",
    "Struct",
]

MAX_VARINT = (1 << 30) - 1


class DecodeError(ValueError):
    """Bytes that are not a valid encoding; ``path`` names the failing field."""

    def __init__(self, message: str, path: str = "") -> None:
        self.reason = message
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class EncodeError(ValueError):
    """A value that cannot be encoded (wrong type, out of range, too long)."""


# --------------------------------------------------------------------------
# varints


def encode_varint(n: int) -> bytes:
    """RFC 9420 s.2.1.2 variable-length integer, always the minimal form."""
    if n < 0x40:
        if n < 0:
            raise EncodeError(f"varint cannot be negative: {n}")
        return bytes((n,))
    if n < 0x4000:
        return (0x4000 | n).to_bytes(2, "big")
    if n <= MAX_VARINT:
        return (0x80000000 | n).to_bytes(4, "big")
    raise EncodeError(f"varint too large: {n}")


def encode_opaque(data: bytes) -> bytes:
    """``opaque data<V>``: varint length prefix then the bytes."""
    return encode_varint(len(data)) + bytes(data)


def decode_varint(data: bytes, pos: int = 0) -> tuple[int, int]:
    """Decode one varint at ``pos``; returns (value, new_pos). Strict."""
    if pos >= len(data):
        raise DecodeError("truncated varint")
    first = data[pos]
    prefix = first >> 6
    if prefix == 0:
        return first, pos + 1
    if prefix == 1:
        if pos + 2 > len(data):
            raise DecodeError("truncated varint")
        v = ((first & 0x3F) << 8) | data[pos + 1]
        if v < 0x40:
            raise DecodeError("non-minimal varint")
        return v, pos + 2
    if prefix == 2:
        if pos + 4 > len(data):
            raise DecodeError("truncated varint")
        v = int.from_bytes(data[pos : pos + 4], "big") & 0x3FFFFFFF
        if v < 0x4000:
            raise DecodeError("non-minimal varint")
        return v, pos + 4
    raise DecodeError("invalid varint prefix 0b11")


# --------------------------------------------------------------------------
# reader


class Reader:
    """A cursor over bytes that tracks the field path for error messages."""

    __slots__ = ("data", "pos", "end", "path")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = bytes(data)
        self.pos = pos
        self.end = len(self.data) if end is None else end
        self.path: list[str] = []

    def fail(self, message: str) -> DecodeError:
        return DecodeError(message, self.path_str())

    def path_str(self) -> str:
        out = ""
        for p in self.path:
            out += p if p.startswith("[") or not out else "." + p
        return out

    def take(self, n: int) -> bytes:
        if self.pos + n > self.end:
            raise self.fail(f"truncated: need {n} bytes, have {self.end - self.pos}")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def varint(self) -> int:
        # Inline (no slicing): this runs for every length prefix of every message.
        data, pos, end = self.data, self.pos, self.end
        if pos >= end:
            raise self.fail("truncated varint")
        first = data[pos]
        prefix = first >> 6
        if prefix == 0:
            self.pos = pos + 1
            return first
        if prefix == 1:
            if pos + 2 > end:
                raise self.fail("truncated varint")
            v = ((first & 0x3F) << 8) | data[pos + 1]
            if v < 0x40:
                raise self.fail("non-minimal varint")
            self.pos = pos + 2
            return v
        if prefix == 2:
            if pos + 4 > end:
                raise self.fail("truncated varint")
            v = int.from_bytes(data[pos : pos + 4], "big") & 0x3FFFFFFF
            if v < 0x4000:
                raise self.fail("non-minimal varint")
            self.pos = pos + 4
            return v
        raise self.fail("invalid varint prefix 0b11")

    def remaining(self) -> int:
        return self.end - self.pos

    def done(self) -> None:
        if self.pos != self.end:
            raise self.fail(f"{self.end - self.pos} trailing bytes")


# --------------------------------------------------------------------------
# codecs


class Codec:
    """Encodes one value to bytes and decodes it from a :class:`Reader`."""

    def encode(self, value: Any, out: bytearray) -> None:
        raise NotImplementedError

    def decode(self, r: Reader, ctx: Mapping[str, Any]) -> Any:
        raise NotImplementedError


class _UInt(Codec):
    def __init__(self, width: int) -> None:
        self.width = width
        self.limit = 1 << (8 * width)

    def encode(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, int) or not 0 <= value < self.limit:
            raise EncodeError(f"uint{8 * self.width} out of range: {value!r}")
        out += int(value).to_bytes(self.width, "big")

    def decode(self, r: Reader, ctx: Mapping[str, Any]) -> int:
        return int.from_bytes(r.take(self.width), "big")

    def __repr__(self) -> str:
        return f"uint{8 * self.width}"


uint8 = _UInt(1)
uint16 = _UInt(2)
uint32 = _UInt(4)
uint64 = _UInt(8)


class Opaque(Codec):
    """``opaque x<V>`` (varint length) with optional bounds on the length."""

    def __init__(self, min_len: int = 0, max_len: int = MAX_VARINT) -> None:
        self.min_len = min_len
        self.max_len = max_len

    def encode(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise EncodeError(f"opaque expects bytes, got {type(value).__name__}")
        if not self.min_len <= len(value) <= self.max_len:
            raise EncodeError(f"opaque length {len(value)} outside [{self.min_len}, {self.max_len}]")
        out += encode_varint(len(value))
        out += value

    def decode(self, r: Reader, ctx: Mapping[str, Any]) -> bytes:
        n = r.varint()
        if not self.min_len <= n <= self.max_len:
            raise r.fail(f"length {n} outside [{self.min_len}, {self.max_len}]")
        pos = r.pos
        if pos + n > r.end:
            raise r.fail(f"truncated: need {n} bytes, have {r.end - pos}")
        r.pos = pos + n
        return r.data[pos : pos + n]


opaque = Opaque()


class Fixed(Codec):
    """``opaque x[n]``: exactly n bytes, no prefix."""

    def __init__(self, n: int) -> None:
        self.n = n

    def encode(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, (bytes, bytearray)) or len(value) != self.n:
            raise EncodeError(f"fixed opaque[{self.n}] got {value!r}")
        out += value

    def decode(self, r: Reader, ctx: Mapping[str, Any]) -> bytes:
        return r.take(self.n)


class Raw(Codec):
    """The rest of the enclosing buffer, unframed (for already-encoded bodies)."""

    def encode(self, value: Any, out: bytearray) -> None:
        out += value

    def decode(self, r: Reader, ctx: Mapping[str, Any]) -> bytes:
        return r.take(r.remaining())


class Vector(Codec):
    """``T x<V>``: a varint byte length, then elements until it is consumed."""

    def __init__(self, elem: Any, max_items: int | None = None) -> None:
        self._elem = elem
        self.max_items = max_items

    @property
    def elem(self) -> Codec:
        return as_codec(self._elem)

    def encode(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, (list, tuple)):
            raise EncodeError(f"vector expects a list, got {type(value).__name__}")
        if self.max_items is not None and len(value) > self.max_items:
            raise EncodeError(f"vector has {len(value)} items, max {self.max_items}")
        body = bytearray()
        elem = self.elem
        for v in value:
            elem.encode(v, body)
        out += encode_varint(len(body))
        out += body

    def decode(self, r: Reader, ctx: Mapping[str, Any]) -> list[Any]:
        n = r.varint()
        if r.pos + n > r.end:
            raise r.fail(f"truncated: vector of {n} bytes, have {r.end - r.pos}")
        saved_end = r.end
        r.end = r.pos + n
        elem = self.elem
        items: list[Any] = []
        try:
            while r.pos < r.end:
                r.path.append(f"[{len(items)}]")
                items.append(elem.decode(r, {}))
                r.path.pop()
                if self.max_items is not None and len(items) > self.max_items:
                    raise r.fail(f"more than {self.max_items} items")
        finally:
            r.end = saved_end
        return items


class Optional(Codec):
    """``optional<T>``: uint8 presence flag (0 or 1), then T when present."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def encode(self, value: Any, out: bytearray) -> None:
        if value is None:
            out.append(0)
        else:
            out.append(1)
            as_codec(self._inner).encode(value, out)

    def decode(self, r: Reader, ctx: Mapping[str, Any]) -> Any:
        flag = r.take(1)[0]
        if flag == 0:
            return None
        if flag != 1:
            raise r.fail(f"optional presence byte must be 0 or 1, got {flag}")
        return as_codec(self._inner).decode(r, {})


E = TypeVar("E", bound=enum.IntEnum)


class EnumCodec(Codec):
    """An integer enum; ``closed=True`` rejects values the enum does not name."""

    def __init__(self, enum_cls: type[enum.IntEnum], width: _UInt = uint16, closed: bool = True) -> None:
        self.enum_cls = enum_cls
        self.width = width
        self.closed = closed
        self._values = {int(m) for m in enum_cls}

    def encode(self, value: Any, out: bytearray) -> None:
        if self.closed and int(value) not in self._values:
            raise EncodeError(f"unknown {self.enum_cls.__name__} value {value!r}")
        self.width.encode(int(value), out)

    def decode(self, r: Reader, ctx: Mapping[str, Any]) -> Any:
        v = self.width.decode(r, ctx)
        if v in self._values:
            return self.enum_cls(v)
        if self.closed:
            raise r.fail(f"unknown {self.enum_cls.__name__} value {v}")
        return v


class Select(Codec):
    """``select (tag) { case x: T; ... }`` keyed on an earlier field's value.

    A case mapped to ``None`` carries no bytes (``struct {}``). A tag with no
    case is a decode error unless ``default`` is given.
    """

    def __init__(self, tag_field: str, cases: Mapping[Any, Any], default: Any = ...) -> None:
        self.tag_field = tag_field
        self.cases = {int(k): v for k, v in cases.items()}
        self.default = default

    def _case(self, tag: Any) -> Any:
        c = self.cases.get(int(tag), self.default)
        return c

    def encode(self, value: Any, out: bytearray) -> None:  # pragma: no cover - struct handles
        raise EncodeError("Select must be encoded inside a struct")

    def encode_with(self, tag: Any, value: Any, out: bytearray) -> None:
        c = self._case(tag)
        if c is ...:
            raise EncodeError(f"no case for tag {tag!r}")
        if c is None:
            if value is not None:
                raise EncodeError(f"tag {tag!r} carries no value, got {value!r}")
            return
        as_codec(c).encode(value, out)

    def decode(self, r: Reader, ctx: Mapping[str, Any]) -> Any:
        tag = ctx[self.tag_field]
        c = self._case(tag)
        if c is ...:
            raise r.fail(f"no case for {self.tag_field}={int(tag)}")
        if c is None:
            return None
        return as_codec(c).decode(r, ctx)


class Lazy(Codec):
    """A codec resolved on first use (for structs declared later)."""

    def __init__(self, thunk: Callable[[], Any]) -> None:
        self.thunk = thunk
        self._resolved: Codec | None = None

    def _get(self) -> Codec:
        if self._resolved is None:
            self._resolved = as_codec(self.thunk())
        return self._resolved

    def encode(self, value: Any, out: bytearray) -> None:
        self._get().encode(value, out)

    def decode(self, r: Reader, ctx: Mapping[str, Any]) -> Any:
        return self._get().decode(r, ctx)


def as_codec(x: Any) -> Codec:
    if isinstance(x, Codec):
        return x
    c = getattr(x, "_codec", None)
    if c is not None:
        return c
    raise TypeError(f"not a codec: {x!r}")


# --------------------------------------------------------------------------
# structs


class _StructCodec(Codec):
    """The codec of one :class:`Struct` subclass: its wire fields in order."""

    def __init__(self, cls: type[Struct], keep_wire: bool = False) -> None:
        self.cls = cls
        self.fields: list[tuple[str, Any]] = []
        self.keep_wire = keep_wire
        # A struct that defines ``_check`` is checked on encode as well as on
        # decode, so that encode refuses exactly the values decode rejects.
        self.check = any("_check" in vars(c) for c in cls.__mro__)
        self._resolved_fields: list[tuple[str, Codec]] | None = None

    def encode(self, value: Any, out: bytearray) -> None:
        cls = self.cls
        if not isinstance(value, cls):
            raise EncodeError(f"expected {cls.__name__}, got {type(value).__name__}")
        if self.check:
            err = value._check()  # type: ignore[attr-defined]  # present: self.check says so
            if err:
                raise EncodeError(f"{cls.__name__}: {err}")
        self.encode_unchecked(value, out)

    def encode_unchecked(self, value: Any, out: bytearray) -> None:
        """Encode the fields without running ``_check`` (tests build invalid bodies with it)."""
        cls = self.cls
        wire = value.__dict__.get("_wire")
        if wire is not None:
            out += wire
            return
        for name, c in self._resolved():
            v = getattr(value, name)
            try:
                if isinstance(c, Select):
                    c.encode_with(getattr(value, c.tag_field), v, out)
                else:
                    c.encode(v, out)
            except EncodeError as e:
                raise EncodeError(f"{cls.__name__}.{name}: {e}") from None

    def _resolved(self) -> list[tuple[str, Codec]]:
        rf = self._resolved_fields
        if rf is None:
            rf = self._resolved_fields = [(n, as_codec(c)) for n, c in self.fields]
        return rf

    def decode(self, r: Reader, ctx: Mapping[str, Any]) -> Any:
        values: dict[str, Any] = {}
        start = r.pos
        path = r.path
        top = not path
        if top:
            path.append(self.cls.__name__)
        try:
            for name, c in self._resolved():
                path.append(name)
                values[name] = c.decode(r, values)
                path.pop()
            obj = self.cls(**values)
            if self.check:
                err = obj._check()  # type: ignore[attr-defined]  # present: self.check says so
                if err:
                    raise r.fail(err)
        finally:
            if top:
                del path[:]
        if self.keep_wire:
            obj.__dict__["_wire"] = r.data[start : r.pos]
        return obj


T = TypeVar("T")


def field(codec: Any, **kwargs: Any) -> Any:
    """A struct field carrying its wire codec (keyword arguments as :func:`dataclasses.field`)."""
    return dataclasses.field(metadata={"codec": codec}, **kwargs)


#: Shared decodes (see the module docstring): (class, bytes) -> object, least recently used first.
_SHARED: OrderedDict[tuple[type, bytes], Any] = OrderedDict()
_SHARED_MAX_ENTRIES = 2048
_SHARED_MAX_BYTES = 64 << 20
_shared_bytes = 0


def _shared_decode(cls: type[Struct], data: bytes) -> Any:
    global _shared_bytes
    key = (cls, bytes(data))
    hit = _SHARED.get(key)
    if hit is not None:
        _SHARED.move_to_end(key)
        return hit
    obj = cls._decode_strict(data)
    _SHARED[key] = obj
    _shared_bytes += len(data)
    while len(_SHARED) > _SHARED_MAX_ENTRIES or _shared_bytes > _SHARED_MAX_BYTES:
        (_, old), _ = _SHARED.popitem(last=False)
        _shared_bytes -= len(old)
    return obj


def _setattr_dropping_wire(self: Any, name: str, value: Any) -> None:
    self.__dict__.pop("_wire", None)
    object.__setattr__(self, name, value)


@dataclass_transform(field_specifiers=(field, dataclasses.field))
class Struct:
    """Base of every wire struct: a dataclass whose fields encode in declaration order.

    Subclassing (rather than a decorator that attaches ``encode``/``decode``
    at run time) is what lets a type checker see the generated ``__init__``,
    the fields, and the methods below. Each subclass becomes a dataclass when
    it is created; class keywords ``frozen``, ``eq`` and ``order`` are passed
    on to :func:`dataclasses.dataclass`. Fields declared with :func:`field`
    are on the wire; other dataclass fields are derived values, not encoded.

    A subclass may define ``_check(self) -> str | None``: an invariant the
    field codecs cannot express. A non-empty result is a decode error and is
    refused on encode.
    """

    _codec: ClassVar[_StructCodec]
    _keep_wire: ClassVar[bool] = False
    _share_decoded: ClassVar[bool] = False

    def __init_subclass__(
        cls, *, frozen: bool = False, eq: bool = True, order: bool = False, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(cls, frozen=frozen, eq=eq, order=order)
        sc = _StructCodec(cls, cls._keep_wire)
        if cls._keep_wire:
            cls.__setattr__ = _setattr_dropping_wire  # type: ignore[method-assign]  # drops the cached wire bytes
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]  # cls is a dataclass from the line above
            if "codec" in f.metadata:
                sc.fields.append((f.name, f.metadata["codec"]))
        cls._codec = sc

    def encode(self) -> bytes:
        out = bytearray()
        type(self)._codec.encode(self, out)
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """Decode ``data``, which must hold exactly one value (no trailing bytes)."""
        if cls._share_decoded and sharing.enabled:
            shared: Self = _shared_decode(cls, data)
            return shared
        return cls._decode_strict(data)

    @classmethod
    def _decode_strict(cls, data: bytes) -> Self:
        r = Reader(data)
        v: Self = cls._codec.decode(r, {})
        if r.pos != r.end:
            raise DecodeError(f"{r.end - r.pos} trailing bytes", cls.__name__)
        return v

    @classmethod
    def decode_prefix(cls, r: Reader) -> Self:
        """Decode one value at the reader's position and advance past it."""
        v: Self = cls._codec.decode(r, {})
        return v


def encode_vector(items: Sequence[Any], elem: Any) -> bytes:
    out = bytearray()
    Vector(elem).encode(list(items), out)
    return bytes(out)
