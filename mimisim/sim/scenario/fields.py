"""Field types: quantities with units, probabilities, names, domains, capabilities.

Each is an ``Annotated`` alias written out in full (rather than built by a
factory) so that mypy sees the value type (``float`` milliseconds for a
:data:`Duration`) and pydantic sees the validator, the JSON serializer
(which writes the unit back, so a dumped scenario validates again) and the
JSON Schema. The validators are ``PlainValidator``: the parsed value is
taken as is, with no second coercion to the annotated type.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, PlainValidator, ValidationInfo, WithJsonSchema

from mimisim.mimi import wire as W
from mimisim.mimi.identity import UriError, parse
from mimisim.sim.scenario.errors import _describe
from mimisim.sim.units import (
    UnitError,
    format_bandwidth,
    format_duration,
    format_rate,
    format_size,
    parse_bandwidth,
    parse_duration,
    parse_rate,
    parse_size,
)


def _unitless(v: Any, info: ValidationInfo, unit: str) -> Any:
    """A bare number gets the canonical unit (ms, /s, B, B/s) when the scenario
    is built in Python; only files (validation context ``strict_units``)
    must write units, because only there is a bare number a guess."""
    if (
        isinstance(v, int | float)
        and not isinstance(v, bool)
        and not (info.context or {}).get("strict_units")
    ):
        return (str(int(v)) if isinstance(v, int) else repr(float(v))) + unit
    return v


def _duration(v: Any, info: ValidationInfo) -> float:
    return parse_duration(_unitless(v, info, "ms"))


def _rate(v: Any, info: ValidationInfo) -> float:
    return parse_rate(_unitless(v, info, "/s"))


def _size(v: Any, info: ValidationInfo) -> int:
    return parse_size(_unitless(v, info, "B"))


def _bandwidth(v: Any, info: ValidationInfo) -> float:
    return parse_bandwidth(_unitless(v, info, "B/s"))


# ``UnitError`` is a ``ValueError``, so pydantic reports it at the field's
# location with our message.
_NUM_RE = r"^\s*[+]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*"

Duration = Annotated[
    float,
    PlainValidator(_duration),
    PlainSerializer(format_duration, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _NUM_RE + r"(ns|us|\u00b5s|ms|s|sec|min|h|d)\s*$",
            "examples": ["40ms"],
            "description": "a duration with its unit: ns, us, ms, s, min, h, d",
        }
    ),
]
"""Milliseconds once parsed; written with a unit (``40ms``, ``2s``, ``1min``)."""

Rate = Annotated[
    float,
    PlainValidator(_rate),
    PlainSerializer(format_rate, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _NUM_RE + r"/\s*(ms|s|sec|min|h|d)\s*$",
            "examples": ["0.5/s"],
            "description": "events per time unit: 0.5/s, 30/min, 2/h",
        }
    ),
]
"""Events per second once parsed (``0.5/s``, ``30/min``)."""

Size = Annotated[
    int,
    PlainValidator(_size),
    PlainSerializer(format_size, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _NUM_RE + r"(B|kB|KB|MB|GB|KiB|MiB|GiB|bit|kbit|Kbit|Mbit|Gbit)\s*$",
            "examples": ["64KiB"],
            "description": "a size: B, kB, MB, GB, KiB, MiB, GiB, bit, kbit, Mbit, Gbit",
        }
    ),
]
"""Bytes once parsed (``200B``, ``64KiB``)."""

Bandwidth = Annotated[
    float,
    PlainValidator(_bandwidth),
    PlainSerializer(format_bandwidth, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _NUM_RE
            + r"((B|kB|KB|MB|GB|KiB|MiB|GiB|bit|kbit|Kbit|Mbit|Gbit)/\s*(s|sec)|bps|kbps|Kbps|Mbps|Gbps)\s*$",
            "examples": ["10Mbit/s"],
            "description": "bytes or bits per second: 10Mbit/s, 1MB/s, 100Mbps",
        }
    ),
]
"""Bytes per second once parsed (``10Mbit/s``, ``1MB/s``)."""


def _positive_duration(v: Any, info: ValidationInfo) -> float:
    ms = parse_duration(_unitless(v, info, "ms"))
    if ms <= 0:
        raise UnitError(f"must be a duration greater than 0, got '{v}'")
    return ms


PositiveDuration = Annotated[
    float,
    PlainValidator(_positive_duration),
    PlainSerializer(format_duration, when_used="json"),
    WithJsonSchema(
        {"type": "string", "pattern": _NUM_RE + r"(ns|us|ms|s|sec|min|h|d)\s*$", "examples": ["2s"]}
    ),
]


def _probability(v: Any) -> float:
    """A number in [0, 1]; ``'5%'`` is accepted as 0.05 because that is how
    loss rates are usually quoted."""
    if isinstance(v, str) and v.strip().endswith("%"):
        try:
            p = float(v.strip()[:-1]) / 100.0
        except ValueError:
            raise ValueError(f"expected a probability in [0, 1] or a percentage, got '{v}'") from None
    elif isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"expected a probability in [0, 1], got {_describe(v)}")
    else:
        p = float(v)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"a probability must be in [0, 1], got {v}")
    return p


Probability = Annotated[
    float,
    PlainValidator(_probability),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": 1},
                {"type": "string", "pattern": r"^\d+(\.\d*)?%$"},
            ]
        }
    ),
]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.~-]*$")


def _name(v: Any) -> str:
    if not isinstance(v, str) or not _NAME_RE.match(v):
        raise ValueError(f"expected a name of letters, digits, '_', '.', '~' or '-', got {_describe(v)}")
    return v


Name = Annotated[str, BeforeValidator(_name), WithJsonSchema({"type": "string", "pattern": _NAME_RE.pattern})]


def _domain(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected a provider domain like 'a.example', got {_describe(v)}")
    try:
        u = parse("mimi://" + v)
    except UriError:
        u = None
    if u is None or u.kind or not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", v):
        raise ValueError(f"expected a lower-case provider domain like 'a.example', got '{v}'")
    return v


Domain = Annotated[
    str, BeforeValidator(_domain), WithJsonSchema({"type": "string", "examples": ["a.example"]})
]

_CAPABILITIES = sorted(W.Capability.__members__)


def _capability(v: Any) -> str:
    if not isinstance(v, str) or v not in W.Capability.__members__:
        hint = difflib.get_close_matches(str(v), _CAPABILITIES, n=1)
        did = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise ValueError(f"unknown room-policy capability '{v}'{did}")
    return v


Capability = Annotated[
    str, BeforeValidator(_capability), WithJsonSchema({"type": "string", "enum": _CAPABILITIES})
]


# ====================================================================== base model

