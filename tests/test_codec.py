"""The TLS presentation-language codec: varints, vectors, optionals, selects,
strictness and field-path error messages."""

from __future__ import annotations

import enum

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mimisim.codec import (
    DecodeError,
    EncodeError,
    EnumCodec,
    Fixed,
    Optional,
    Select,
    Struct,
    Vector,
    decode_varint,
    encode_varint,
    field,
    opaque,
    uint8,
    uint16,
    uint32,
    uint64,
)


class Color(enum.IntEnum):
    red = 1
    blue = 2


class Inner(Struct):
    a: int = field(uint16)
    data: bytes = field(opaque)


class Outer(Struct):
    color: Color = field(EnumCodec(Color, uint8))
    red_value: int | None = field(Select("color", {1: uint32, 2: None}))
    items: list[Inner] = field(Vector(Inner))
    maybe: Inner | None = field(Optional(Inner))
    tag: bytes = field(Fixed(4))
    big: int = field(uint64)


@given(st.integers(0, (1 << 30) - 1))
def test_varint_round_trip_minimal(n: int) -> None:
    enc = encode_varint(n)
    assert len(enc) == (1 if n < 64 else 2 if n < 16384 else 4)
    assert decode_varint(enc) == (n, len(enc))


def test_varint_rejects_non_minimal_and_too_large() -> None:
    with pytest.raises(DecodeError, match="non-minimal"):
        decode_varint(bytes([0x40, 0x05]))
    with pytest.raises(DecodeError, match="non-minimal"):
        decode_varint(bytes([0x80, 0x00, 0x00, 0x05]))
    with pytest.raises(DecodeError, match="0b11"):
        decode_varint(bytes([0xC0, 0, 0, 0, 0, 0, 0, 1]))
    with pytest.raises(EncodeError):
        encode_varint(1 << 30)
    with pytest.raises(DecodeError, match="truncated"):
        decode_varint(bytes([0x40]))


inner_st = st.builds(Inner, st.integers(0, 0xFFFF), st.binary(max_size=70))
outer_st = st.builds(
    lambda c, rv, items, maybe, tag, big: Outer(c, rv if c == Color.red else None, items, maybe, tag, big),
    st.sampled_from(Color), st.integers(0, 2**32 - 1), st.lists(inner_st, max_size=5),
    st.none() | inner_st, st.binary(min_size=4, max_size=4), st.integers(0, 2**64 - 1),
)


@given(outer_st)
def test_struct_round_trip_and_strictness(o: Outer) -> None:
    raw = o.encode()
    assert Outer.decode(raw) == o
    with pytest.raises(DecodeError, match="trailing"):
        Outer.decode(raw + b"\x00")
    for n in range(len(raw)):
        with pytest.raises(DecodeError):
            Outer.decode(raw[:n])


def test_errors_name_the_field_path() -> None:
    o = Outer(Color.blue, None, [Inner(1, b"x"), Inner(2, b"yy")], None, b"abcd", 7)
    raw = o.encode()
    # Break the length of items[1].data: claim 0x3f bytes.
    i = raw.index(b"yy") - 1
    bad = raw[:i] + b"\x3f" + raw[i + 1 :]
    with pytest.raises(DecodeError) as e:
        Outer.decode(bad)
    assert e.value.path.startswith("Outer.items")
    with pytest.raises(DecodeError, match=r"Outer\.color: unknown Color value 3"):
        Outer.decode(b"\x03" + raw[1:])
    with pytest.raises(DecodeError, match="optional presence byte"):
        Outer.decode(raw[: -(1 + 4 + 8)] + b"\x02" + raw[-12:])


def test_encode_refuses_bad_values() -> None:
    with pytest.raises(EncodeError):
        Inner(70000, b"").encode()
    with pytest.raises(EncodeError):
        Outer(Color.red, 1, [], None, b"abc", 0).encode()  # Fixed(4)
    with pytest.raises(EncodeError):
        Outer(Color.blue, 5, [], None, b"abcd", 0).encode()  # struct{} case carries a value
    with pytest.raises(EncodeError):
        Outer(3, None, [], None, b"abcd", 0).encode()  # type: ignore[arg-type]
