"""The one strict CBOR reader (mimisim.mimi.cbor): well-formed deterministic
CBOR round-trips; truncation, trailing bytes, non-minimal heads, wrong major
types and the other refusals of its docstring raise CborError, and nothing
else ever escapes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mimisim.mimi import cbor
from mimisim.mimi.cbor import CborError, CborReader, Tag
from tests.hypothesis_profiles import examples

FAST = settings(max_examples=examples(150), deadline=None)


# -------------------------------------------------------------- a reference encoder (deterministic CBOR)


def head(major: int, arg: int, width: int | None = None) -> bytes:
    """The head of an item; ``width`` forces the argument's size in bytes
    (0 = in the initial byte), to write non-minimal forms."""
    if width is None:
        width = next(w for w, lim in ((0, 24), (1, 1 << 8), (2, 1 << 16), (4, 1 << 32), (8, 1 << 64)) if arg < lim)
    if width == 0:
        return bytes([major << 5 | arg])
    ai = {1: 24, 2: 25, 4: 26, 8: 27}[width]
    return bytes([major << 5 | ai]) + arg.to_bytes(width, "big")


def enc(v: Any) -> bytes:
    if v is False:
        return b"\xf4"
    if v is True:
        return b"\xf5"
    if v is None:
        return b"\xf6"
    if isinstance(v, int):
        return head(0, v) if v >= 0 else head(1, -1 - v)
    if isinstance(v, bytes):
        return head(2, len(v)) + v
    if isinstance(v, str):
        b = v.encode("utf-8")
        return head(3, len(b)) + b
    if isinstance(v, list):
        return head(4, len(v)) + b"".join(enc(x) for x in v)
    if isinstance(v, dict):
        return head(5, len(v)) + b"".join(enc(k) + enc(x) for k, x in v.items())
    if isinstance(v, Tag):
        return head(6, v.number) + enc(v.value)
    raise TypeError(v)


u64 = st.integers(0, (1 << 64) - 1)
ints = st.integers(-(1 << 64), (1 << 64) - 1)
keys = st.one_of(st.integers(-cbor.MAX_INT_KEY, cbor.MAX_INT_KEY), st.text(max_size=8), st.binary(max_size=8))
scalars = st.one_of(ints, st.binary(max_size=40), st.text(max_size=40), st.booleans(), st.none())
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(keys, inner, max_size=5),
        st.builds(Tag, st.integers(4, 1000), inner),
    ),
    max_leaves=20,
)


# -------------------------------------------------------------- properties


@FAST
@given(values)
def test_round_trip(v: Any) -> None:
    assert cbor.decode(enc(v)) == v


@FAST
@given(values, st.data())
def test_every_truncation_is_refused(v: Any, data: st.DataObject) -> None:
    b = enc(v)
    cut = data.draw(st.integers(0, len(b) - 1))
    with pytest.raises(CborError):
        cbor.decode(b[:cut])


@FAST
@given(values, st.binary(min_size=1, max_size=8))
def test_trailing_bytes_are_refused(v: Any, extra: bytes) -> None:
    with pytest.raises(CborError, match="trailing"):
        cbor.decode(enc(v) + extra)


@FAST
@given(st.sampled_from([0, 1, 2, 3, 4, 5, 6]), u64, st.data())
def test_non_minimal_heads_are_refused(major: int, arg: int, data: st.DataObject) -> None:
    """An integer, length, count or tag number written wider than it needs."""
    minimal = len(head(major, arg)) - 1
    wider = [w for w in (1, 2, 4, 8) if w > minimal]
    if not wider:
        return  # already 8 bytes: no wider form exists
    width = data.draw(st.sampled_from(wider))
    body = b"\x00" * min(arg, 4) if major in (2, 3, 4, 5, 6) else b""
    with pytest.raises(CborError, match="non-minimal"):
        cbor.decode(head(major, arg, width) + body)


@FAST
@given(values, st.sampled_from([cbor.UINT, cbor.BSTR, cbor.TSTR, cbor.ARRAY, cbor.MAP]))
def test_wrong_major_type_is_refused(v: Any, want: int) -> None:
    b = enc(v)
    r = CborReader(b)
    if b[0] >> 5 == want:
        r.expect(want)
    else:
        with pytest.raises(CborError, match="expected a CBOR"):
            r.expect(want)


@FAST
@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_raise_cbor_error(b: bytes) -> None:
    try:
        cbor.decode(b)
    except CborError:
        pass


# -------------------------------------------------------------- the other refusals, one by one


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x9f\x01\xff", "indefinite"),
        (b"\x5f\x41\x00\xff", "indefinite"),
        (b"\x1c", "reserved"),
        (b"\xf8\x10", "non-minimal"),  # simple value 16 in two bytes
        (b"\x18\x17", "non-minimal"),  # 23 in two bytes
        (b"\x9b" + (1 << 40).to_bytes(8, "big"), "longer than"),
        (b"\xbb" + (1 << 40).to_bytes(8, "big"), "longer than"),
        (b"\x81" * (cbor.MAX_DEPTH + 1) + b"\x00", "deeply"),
        (b"\xc1" * (cbor.MAX_DEPTH + 1) + b"\x00", "deeply"),
        (b"\x62\xc3\x28", "UTF-8"),
        (b"\xa2\x01\x00\x01\x00", "twice"),
        (b"\xa1\x80\x00", "integers or text"),  # an array as a key
        (b"\xa1\xf5\x00", "integers or text"),  # true as a key
        (b"\xa1\x1b" + (1 << 60).to_bytes(8, "big") + b"\x00", "double"),
        (b"\xf7", "simple value"),  # undefined
        (b"\xf0", "simple value"),  # unassigned
        (b"\xc2\x41\x01", "bignum"),
    ],
)
def test_refusals(data: bytes, why: str) -> None:
    with pytest.raises(CborError, match=why):
        cbor.decode(data)


def test_what_is_accepted() -> None:
    assert cbor.decode(b"\x17") == 23 and cbor.decode(b"\x18\x18") == 24
    assert cbor.decode(b"\x20") == -1 and cbor.decode(b"\x38\x63") == -100
    assert cbor.decode(b"\xd8\x20\x63abc") == Tag(32, "abc")
    assert cbor.decode(b"\xf9\x3c\x00") == 1.0 and cbor.decode(b"\xfb\x3f\xf0\x00\x00\x00\x00\x00\x00") == 1.0
    assert cbor.decode(b"\xc2\x49\x01" + bytes(8)) == Tag(2, b"\x01" + bytes(8))
    assert CborReader(b"\x63abc").text() == "abc"
    with pytest.raises(CborError, match="expected a CBOR text string, got a byte string"):
        CborReader(b"\x43abc").text()
