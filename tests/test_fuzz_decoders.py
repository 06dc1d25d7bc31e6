"""Fuzzing every decoder with hypothesis: arbitrary bytes and single-bit
flips of valid encodings, for every MIMI wire struct and every endpoint's
request and response body. A decoder either returns a value (that encodes
again) or raises ``DecodeError``; never any other exception. (Endpoints fed
mutated valid bodies through a provider, with its state digest unchanged, are
fuzzed in tests/test_mimi_provider.py.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mimisim.codec import DecodeError, EncodeError
from mimisim.mimi import wire as W
from mimisim.mimi.endpoints import Endpoint
from mimisim.mls import structs as M
from tests.hypothesis_profiles import examples

try:  # tests/ is on sys.path (rootdir-relative import mode, no __init__.py)
    from strategies import default_builder
except ImportError:  # pragma: no cover - if tests/ becomes a package
    from tests.strategies import default_builder

BUILDER = default_builder()
FAST = settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.too_slow])
STRUCTS = {**W.WIRE_STRUCTS, "RatchetTreeOption": M.RatchetTreeOption, "PartialGroupInfo": M.PartialGroupInfo,
           "MLSMessage": M.MLSMessage}


def _survives(decode: Callable[[bytes], Any], data: bytes) -> None:
    """Decode ``data``: a value that encodes again, or DecodeError; nothing else."""
    try:
        value = decode(data)
    except DecodeError:
        return
    if hasattr(value, "encode"):
        try:
            value.encode()
        except EncodeError:  # a decoded value outside the encoder's stricter domain: still no crash
            pass


@pytest.mark.parametrize("name", sorted(STRUCTS))
@FAST
@given(data=st.binary(max_size=300))
def test_struct_decoders_on_arbitrary_bytes(name: str, data: bytes) -> None:
    _survives(STRUCTS[name].decode, data)


@pytest.mark.parametrize("name", sorted(W.WIRE_STRUCTS))
@FAST
@given(data=st.data())
def test_struct_decoders_on_bit_flips(name: str, data: st.DataObject) -> None:
    cls = W.WIRE_STRUCTS[name]
    encoded = bytearray(data.draw(BUILDER.struct(cls), label=name).encode())
    if not encoded:
        return
    i = data.draw(st.integers(0, len(encoded) * 8 - 1), label="bit")
    encoded[i // 8] ^= 1 << (i % 8)
    _survives(cls.decode, bytes(encoded))


ENDPOINTS = [e for e in Endpoint if e.spec.request is not None or e.spec.response is not None]


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
@FAST
@given(data=st.binary(max_size=300))
def test_endpoint_bodies_on_arbitrary_bytes(endpoint: Endpoint, data: bytes) -> None:
    if endpoint.spec.request is not None:
        _survives(endpoint.decode_request, data)
    if endpoint.spec.response is not None:
        _survives(endpoint.decode_response, data)


def test_every_endpoint_has_a_decoder_under_fuzz() -> None:
    assert {e.name for e in ENDPOINTS} >= {"KEY_MATERIAL", "UPDATE", "NOTIFY", "SUBMIT_MESSAGE", "GROUP_INFO",
                                           "REQUEST_CONSENT", "UPDATE_CONSENT", "IDENTIFIER_QUERY", "REPORT_ABUSE"}
