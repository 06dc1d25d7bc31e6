"""Scenario files: the schema, the loader, overrides, sweeps.

A scenario is one YAML file that says everything a run needs: providers,
users and their clients, rooms, the network, the workload, faults, protocol
options and outputs (shared/DESIGN.md, "Scenarios"). This module turns such
a file into a validated, fully resolved :class:`Scenario`.

Why the loader works so hard on error messages: scenario files are written
by hand, by people who did not write the simulator. A pydantic traceback
naming ``network -> default -> latency -> constant -> value`` is no help;
``quickstart.yaml:23: network.default.latency.value: expected a duration
like '40ms' or '2s', got '40'`` is. So every problem, whether pydantic finds
it (types, units, ranges, unknown keys) or the cross-field checks do
(references to providers, users, clients, rooms), becomes one
:class:`ScenarioError` whose ``str()`` is one line: ``<file>:<line>:
<key.path>: <message>``. Line numbers come from the YAML node tree, which
the loader keeps beside the data; the error's key path is walked down that
tree.

Conventions:

- Units everywhere (:mod:`mimisim.sim.units`): durations are milliseconds
  (``float``) once parsed, rates events per second, sizes bytes, bandwidth
  bytes per second. Dumping with ``model_dump(mode="json")`` writes them
  back with units (``"40ms"``), so a resolved scenario validates again to
  the same object (that dump is what :func:`resolved_hash` hashes).
- Identifiers: providers by domain (``a.example``), users and rooms by name
  (``alice``, ``clubhouse``), clients by ``user/device`` (``alice/ClientA1``),
  the bare device name when it is unique, or the full client URI. After
  validation every client reference is the full client URI
  (``mimi://a.example/d/alice/ClientA1``, see :mod:`mimisim.mimi.identity`),
  so the simulator never resolves names itself.
- Bare numbers: a file must write every quantity with its unit (the
  loader validates with the context ``strict_units``). A scenario built in
  Python (``Scenario.model_validate(dict)``) may give bare numbers, read in
  the canonical units (ms, per second, bytes, bytes per second), because
  there the caller's code, not a reader's guess, fixes the unit.
- Defaults are filled in: a room without a pending-proposal strategy gets
  ``protocol.pending_proposals``, a crash without ``state`` gets its
  provider's, the access profile ``default`` exists. The resolved scenario
  is what the run and its manifest record.
- Key paths (``--set`` overrides, sweep grids, error messages) are dotted;
  a key that itself contains dots (a domain, a link ``a.example>b.example``)
  is matched greedily against the keys present, or written in brackets:
  ``providers[a.example].state``; list items by index: ``faults.schedule.0.at``.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    PlainSerializer,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from mimisim.mimi import wire as W
from mimisim.mimi.identity import UriError, client_uri, parse, room_uri, user_uri
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

__all__ = [
    "Scenario",
    "ScenarioError",
    "ClientInfo",
    "load_scenario",
    "load_scenario_text",
    "json_schema",
    "resolved_hash",
    "expand_sweep",
    "apply_override",
    "parse_key_path",
    "format_key_path",
    "DEFAULT_ROLES",
]


# ====================================================================== errors


class ScenarioError(Exception):
    """A scenario that cannot be loaded: one line, ``<file>:<line>: <key.path>: <message>``.

    Raised by :func:`load_scenario` for YAML syntax errors, schema violations
    and failed cross-field checks alike, so callers (the CLI) need one
    ``except``. ``problems`` holds every problem found, sorted by line; the
    message is the first of them (what a user fixes first). When a
    :class:`Scenario` is validated from Python data rather than a file, the
    cross-field checks raise it without file and line.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        path: str = "",
        loc: tuple[Any, ...] = (),
        problems: Sequence[ScenarioError] = (),
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.path = path
        self.loc = loc
        self.problems: list[ScenarioError] = list(problems) or [self]
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = f"{self.file}:{self.line}: " if self.line is not None else f"{self.file}: "
        path = f"{self.path}: " if self.path else ""
        return (where + path + self.message).replace("\n", " ")


def _problems(items: list[tuple[tuple[Any, ...], str]]) -> ScenarioError:
    """The cross-field checks' findings as one (location-less) error."""
    errs = [ScenarioError(msg, loc=loc, path=format_key_path(loc)) for loc, msg in items]
    return ScenarioError(errs[0].message, loc=errs[0].loc, path=errs[0].path, problems=errs)


# ====================================================================== key paths

_SIMPLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def format_key_path(loc: Iterable[Any]) -> str:
    """``('providers', 'a.example', 'cost')`` -> ``providers[a.example].cost``.

    Keys that would be ambiguous in a dotted path (dots, brackets, spaces)
    go in brackets; list indices too (``faults.schedule[0].at``). The result
    is accepted by :func:`parse_key_path`, so an error's path can be pasted
    into ``--set``.
    """
    out = ""
    for item in loc:
        if isinstance(item, int) or not _SIMPLE_KEY.match(str(item)):
            out += f"[{item}]"
        else:
            out += ("." if out else "") + str(item)
    return out


def parse_key_path(path: str) -> list[tuple[str, bool]]:
    """Split ``a.b[c.d].0`` into tokens ``[('a', False), ('b', False), ('c.d', True), ('0', False)]``.

    The flag says the token was bracketed (a literal key). Unbracketed tokens
    may later be re-joined with dots when the data has such a key
    (:func:`apply_override`).
    """
    tokens: list[tuple[str, bool]] = []
    i, n, cur = 0, len(path), ""
    while i < n:
        c = path[i]
        if c == ".":
            if cur:
                tokens.append((cur, False))
            elif not tokens or not tokens[-1][1]:
                raise ValueError(f"empty key in path '{path}'")
            cur = ""
        elif c == "[":
            if cur:
                tokens.append((cur, False))
                cur = ""
            j = path.find("]", i)
            if j < 0:
                raise ValueError(f"unclosed '[' in path '{path}'")
            key = path[i + 1 : j].strip().strip("'\"")
            if not key:
                raise ValueError(f"empty key in path '{path}'")
            tokens.append((key, True))
            i = j
        else:
            cur += c
        i += 1
    if cur:
        tokens.append((cur, False))
    elif not tokens or (path.endswith(".")):
        raise ValueError(f"empty key in path '{path}'")
    return tokens


def _match_key(mapping: dict[Any, Any], tokens: list[tuple[str, bool]], i: int) -> tuple[Any, int]:
    """The key of ``mapping`` that tokens[i:] start with, and how many tokens it spans."""
    text, literal = tokens[i]
    if not literal:
        run = 1
        while i + run < len(tokens) and not tokens[i + run][1]:
            run += 1
        for span in range(run, 0, -1):
            cand = ".".join(t for t, _ in tokens[i : i + span])
            for key in mapping:
                if key == cand or (not isinstance(key, str) and str(key) == cand):
                    return key, span
    for key in mapping:
        if not isinstance(key, str) and str(key) == text:
            return key, 1
    return text, 1


def apply_override(data: dict[str, Any], path: str, value: Any) -> tuple[Any, ...]:
    """Set ``path`` in the raw scenario ``data`` to ``value`` (in place).

    Missing intermediate mappings are created, so any key the schema knows
    can be set even when the file leaves it at its default. Returns the key
    tuple actually set (dotted keys resolved), which error messages use to
    say that a bad value came from an override. Raises ``ValueError`` when
    the path runs through something that is not a mapping or list.
    """
    tokens = parse_key_path(path)
    cur: Any = data
    resolved: list[Any] = []
    i = 0
    while i < len(tokens):
        if isinstance(cur, dict):
            key, span = _match_key(cur, tokens, i)
            i += span
            resolved.append(key)
            if i == len(tokens):
                cur[key] = value
                return tuple(resolved)
            if cur.get(key) is None:
                cur[key] = {}
            cur = cur[key]
        elif isinstance(cur, list) and tokens[i][0] in cur and all(isinstance(x, str) for x in cur):
            # A shorthand list of names (``clients: [phone, laptop]``)
            # addressed by name: expand it to the mapping it stands for.
            as_map: dict[str, Any] = {x: {} for x in cur}
            parent = _get(data, resolved)
            parent[resolved[-1]] = as_map
            cur = as_map
        elif isinstance(cur, list):
            text = tokens[i][0]
            if not re.fullmatch(r"\d+", text) or int(text) >= len(cur):
                where = format_key_path(resolved)
                raise ValueError(f"{where} is a list of {len(cur)} items; '{text}' is not an index into it")
            idx = int(text)
            i += 1
            resolved.append(idx)
            if i == len(tokens):
                cur[idx] = value
                return tuple(resolved)
            if cur[idx] is None:
                cur[idx] = {}
            cur = cur[idx]
        else:
            where = format_key_path(resolved)
            raise ValueError(f"cannot set '{path}': {where} is {_describe(cur)}, not a mapping")
    raise ValueError(f"empty path '{path}'")


def _get(data: Any, keys: Sequence[Any]) -> Any:
    """The container holding the last of ``keys`` (the parent of that value)."""
    for k in keys[:-1]:
        data = data[k]
    return data


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"the text '{value}'"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


# ====================================================================== field types


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


def _unit_type(parse: Any, fmt: Any, unit: str, pattern: str, example: str, what: str) -> Any:
    """An ``Annotated`` float/int that must be written with a unit.

    ``UnitError`` is a ``ValueError``, so pydantic reports it at the field's
    location with our message; the serializer writes the unit back in JSON
    mode so a dumped scenario loads again.
    """

    def validate(v: Any, info: ValidationInfo) -> Any:
        return parse(_unitless(v, info, unit))

    return Annotated[
        Any,
        BeforeValidator(validate),
        PlainSerializer(fmt, when_used="json"),
        WithJsonSchema({"type": "string", "pattern": pattern, "examples": [example], "description": what}),
    ]


_NUM_RE = r"^\s*[+]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*"
Duration = _unit_type(
    parse_duration,
    format_duration,
    "ms",
    _NUM_RE + r"(ns|us|\u00b5s|ms|s|sec|min|h|d)\s*$",
    "40ms",
    "a duration with its unit: ns, us, ms, s, min, h, d",
)
Rate = _unit_type(
    parse_rate,
    format_rate,
    "/s",
    _NUM_RE + r"/\s*(ms|s|sec|min|h|d)\s*$",
    "0.5/s",
    "events per time unit: 0.5/s, 30/min, 2/h",
)
Size = _unit_type(
    parse_size,
    format_size,
    "B",
    _NUM_RE + r"(B|kB|KB|MB|GB|KiB|MiB|GiB|bit|kbit|Kbit|Mbit|Gbit)\s*$",
    "64KiB",
    "a size: B, kB, MB, GB, KiB, MiB, GiB, bit, kbit, Mbit, Gbit",
)
Bandwidth = _unit_type(
    parse_bandwidth,
    format_bandwidth,
    "B/s",
    _NUM_RE + r"((B|kB|KB|MB|GB|KiB|MiB|GiB|bit|kbit|Kbit|Mbit|Gbit)/\s*(s|sec)|bps|kbps|Kbps|Mbps|Gbps)\s*$",
    "10Mbit/s",
    "bytes or bits per second: 10Mbit/s, 1MB/s, 100Mbps",
)


def _positive_duration(v: Any, info: ValidationInfo) -> float:
    ms = parse_duration(_unitless(v, info, "ms"))
    if ms <= 0:
        raise UnitError(f"must be a duration greater than 0, got '{v}'")
    return ms


PositiveDuration = Annotated[
    Any,
    BeforeValidator(_positive_duration),
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
    Any,
    BeforeValidator(_probability),
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


@dataclass(frozen=True, eq=False)  # eq=False: hashable by identity (Annotated metadata is hashed)
class _OrShorthand:
    """JSON Schema metadata: the field also accepts a shorthand form (which a
    ``BeforeValidator`` expands), so editors do not flag ``latency: 40ms``."""

    alternative: dict[str, Any]

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        return {"anyOf": [handler(core_schema), self.alternative]}


def _allows_none(annotation: Any) -> bool:
    return annotation is None or type(None) in get_args(annotation)


class _Model(BaseModel):
    """Every scenario model: unknown keys are errors, attribute docstrings are
    the JSON Schema's descriptions (what an editor shows on hover)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=False)

    @model_validator(mode="before")
    @classmethod
    def _check_keys(cls, data: Any) -> Any:
        """Report the first unknown key by name, with a guess at what was meant.

        Pydantic's own ``extra_forbidden`` error says neither which keys would
        have been right nor stops at the first one; a typo in a required key
        would also show up as a second, confusing "missing" error. A key
        given as ``null`` where the schema has a default means the default.
        """
        if data is None:
            return {}
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        for key in data:
            if key not in fields:
                allowed = list(fields)
                hint = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
                extra = f" (did you mean '{hint[0]}'?)" if hint else f" (allowed: {', '.join(allowed)})"
                raise PydanticCustomError(
                    "unknown_key", "unknown key '{key}'{extra}", {"key": str(key), "extra": extra}
                )
        drop = [
            k
            for k, v in data.items()
            if v is None and not fields[k].is_required() and not _allows_none(fields[k].annotation)
        ]
        if drop:
            data = {k: v for k, v in data.items() if k not in drop}
        return data


# ====================================================================== distributions


def _check_order(low_name: str, info: ValidationInfo, high: float | None, strict: bool = False) -> None:
    low = info.data.get(low_name)
    if low is None or high is None:
        return
    if high < low or (strict and high == low):
        rel = "greater than" if strict else "at least"
        raise ValueError(f"must be {rel} {low_name} ({format_duration(low)}), got {format_duration(high)}")


class Constant(_Model):
    """Always the same value."""

    kind: Literal["constant"]
    value: Duration


class Uniform(_Model):
    """Uniform on [low, high]."""

    kind: Literal["uniform"]
    low: Duration
    high: Duration

    @field_validator("high")
    @classmethod
    def _order(cls, v: float, info: ValidationInfo) -> float:
        _check_order("low", info, v)
        return v


class TruncNormal(_Model):
    """Normal(mean, sd) conditioned on low <= x <= high (mean and sd of the untruncated normal)."""

    kind: Literal["truncnormal"]
    mean: Duration
    sd: PositiveDuration
    low: Duration = 0.0
    high: Duration | None = None
    """Upper bound; none means unbounded."""

    @field_validator("high")
    @classmethod
    def _order(cls, v: float | None, info: ValidationInfo) -> float | None:
        _check_order("low", info, v, strict=True)
        return v


class LogNormal(_Model):
    """exp(N(ln median, sigma^2)): parametrised by the median, what a latency measurement reports."""

    kind: Literal["lognormal"]
    median: PositiveDuration
    sigma: float = Field(ge=0)
    """Shape: the standard deviation of ln(x). 0 gives a constant."""


class Exponential(_Model):
    """Exponential with the given mean."""

    kind: Literal["exponential"]
    mean: PositiveDuration


class Pareto(_Model):
    """Type I Pareto: P(X > x) = (scale/x)^shape for x >= scale; heavy-tailed."""

    kind: Literal["pareto"]
    scale: PositiveDuration
    shape: float = Field(gt=0)
    """Tail index alpha: the mean is infinite for shape <= 1, the variance for shape <= 2."""


class Empirical(_Model):
    """Resampling from measured values: inline ``samples`` or a ``file`` of numbers in ms."""

    kind: Literal["empirical"]
    samples: list[Duration] | None = None
    """Measured values, each with its unit."""
    file: str | None = None
    """A text or CSV file of values in milliseconds, relative to the scenario file."""

    @field_validator("file")
    @classmethod
    def _file_exists(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return v
        base = (info.context or {}).get("base_dir")
        p = Path(v) if base is None or Path(v).is_absolute() else Path(base) / v
        if not p.is_file():
            raise ValueError(f"no such file: '{v}' (looked for {p})")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> Empirical:
        if (self.samples is None) == (self.file is None):
            raise ValueError("give exactly one of 'samples' and 'file'")
        if self.samples is not None and not self.samples:
            raise ValueError("'samples' must not be empty")
        return self


def _dist_shorthand(v: Any) -> Any:
    """``latency: 40ms`` is short for ``{kind: constant, value: 40ms}``."""
    if isinstance(v, str | int | float) and not isinstance(v, bool):
        return {"kind": "constant", "value": v}
    return v


Distribution = Annotated[
    Constant | Uniform | TruncNormal | LogNormal | Exponential | Pareto | Empirical,
    Field(discriminator="kind"),
    BeforeValidator(_dist_shorthand),
    _OrShorthand({"type": "string", "description": "a constant duration, e.g. 40ms"}),
]
"""A distribution of non-negative durations. Build a sampler from
``dist_to_dict(d)`` with ``mimisim.sim.links.LatencyModel.from_dict``."""


def dist_to_dict(dist: BaseModel, base_dir: str | Path | None = None) -> dict[str, Any]:
    """A distribution as plain numbers in ms (the form ``LatencyModel.from_dict`` takes).

    ``truncnormal`` without ``high`` gets ``inf``; an ``empirical`` file is
    made absolute against ``base_dir`` (the scenario's folder).
    """
    d = dist.model_dump(exclude_none=True)
    if d.get("kind") == "truncnormal" and "high" not in d:
        d["high"] = float("inf")
    if d.get("kind") == "empirical" and "file" in d and base_dir is not None:
        d["file"] = str(Path(base_dir) / d["file"])
    return d


# ====================================================================== loss


class NoLoss(_Model):
    """Nothing is lost."""

    kind: Literal["none"]


class Bernoulli(_Model):
    """Each message lost independently with probability p."""

    kind: Literal["bernoulli"]
    p: Probability


class GilbertElliott(_Model):
    """Bursty loss: a good/bad Markov chain stepping once per message; loss_good/loss_bad per state."""

    kind: Literal["gilbert_elliott"]
    p_good_to_bad: Probability
    p_bad_to_good: Probability
    loss_good: Probability = 0.0
    loss_bad: Probability = 1.0

    @model_validator(mode="after")
    def _moves(self) -> GilbertElliott:
        if self.p_good_to_bad + self.p_bad_to_good <= 0:
            raise ValueError(
                "p_good_to_bad and p_bad_to_good cannot both be 0 (the chain must be able to move)"
            )
        return self


def _loss_shorthand(v: Any) -> Any:
    """``loss: 0.01`` (or ``1%``) is short for ``{kind: bernoulli, p: 0.01}``."""
    if (isinstance(v, int | float) and not isinstance(v, bool)) or (
        isinstance(v, str) and v.strip().endswith("%")
    ):
        return {"kind": "bernoulli", "p": v}
    return v


Loss = Annotated[
    NoLoss | Bernoulli | GilbertElliott,
    Field(discriminator="kind"),
    BeforeValidator(_loss_shorthand),
    _OrShorthand(
        {"type": ["number", "string"], "description": "a Bernoulli loss probability, e.g. 0.01 or 1%"}
    ),
]


# ====================================================================== network

_FIELD_MAP = {
    "duplicate": "duplicate_prob",
    "reorder": "reorder_prob",
    "reorder_extra": "reorder_extra_ms",
    "bandwidth": "bandwidth_bps",
    "queue_limit": "queue_limit_bytes",
}


class LinkSpec(_Model):
    """One direction of a link (mimisim.sim.links.LinkModel): what happens to a message on it."""

    latency: Distribution = Field(default_factory=lambda: Constant(kind="constant", value=0.0))
    """One-way propagation delay: a distribution (``{kind: lognormal, median: 40ms, sigma: 0.3}``) or a constant (``40ms``)."""
    jitter: Duration = 0.0
    """Uniform +-jitter added to each latency draw (clipped at 0); independent draws reorder messages."""
    loss: Loss = Field(default_factory=lambda: NoLoss(kind="none"))
    """Loss model: ``{kind: bernoulli, p: 0.01}``, ``{kind: gilbert_elliott, ...}``, or a probability."""
    duplicate: Probability = 0.0
    """Probability that a second copy of a message arrives."""
    reorder: Probability = 0.0
    """Probability that a message is held back by ``reorder_extra`` (forced reordering)."""
    reorder_extra: Duration = 0.0
    """How long a reordered message is held back."""
    bandwidth: Bandwidth | None = None
    """Serialisation rate (``10Mbit/s``); none means unlimited (no queue)."""
    queue_limit: Size | None = None
    """FIFO queue limit in bytes (with a bandwidth); tail drop beyond it; none means unlimited."""

    def to_link_dict(self, base_dir: str | Path | None = None) -> dict[str, Any]:
        """Plain numbers in the form ``mimisim.sim.links.LinkModel.from_dict`` takes."""
        lat = dist_to_dict(self.latency, base_dir)
        if self.jitter:
            lat["jitter_ms"] = self.jitter
        out: dict[str, Any] = {"latency": lat, "loss": self.loss.model_dump()}
        for ours, theirs in _FIELD_MAP.items():
            out[theirs] = getattr(self, ours)
        return out


class LinkOverride(_Model):
    """A partial link model: the keys given replace the default link's."""

    latency: Distribution | None = None
    jitter: Duration | None = None
    loss: Loss | None = None
    duplicate: Probability | None = None
    reorder: Probability | None = None
    reorder_extra: Duration | None = None
    bandwidth: Bandwidth | None = None
    queue_limit: Size | None = None

    def apply(self, base: LinkSpec) -> LinkSpec:
        """``base`` with the keys this override sets replaced."""
        update = {k: getattr(self, k) for k in sorted(self.model_fields_set) if getattr(self, k) is not None}
        return base.model_copy(update=update)


class Outages(_Model):
    """A client that drops off its access link now and then (a phone in a tunnel)."""

    every: Distribution
    """Time online between outages."""
    lasting: Distribution
    """Length of each outage."""


class AccessProfile(LinkSpec):
    """A client access link: the link keys apply to both directions (uplink = client to provider)."""

    downlink: LinkOverride | None = None
    """What differs on the provider-to-client direction."""
    outages: Outages | None = None
    """Random offline periods of clients with this profile."""


class NetworkSpec(_Model):
    """Providers form a full mesh of links; each client has an access link to its own provider."""

    default: LinkSpec = Field(default_factory=LinkSpec)
    """The link model of every provider-to-provider direction not overridden."""
    links: dict[str, LinkOverride] = Field(default_factory=dict)
    """Per-link overrides: ``a.example>b.example`` (one direction) or ``a.example<>b.example`` (both)."""
    access: dict[Name, AccessProfile] = Field(default_factory=dict)
    """Client access profiles by name; ``default`` (a perfect link unless defined) is what clients get."""


def parse_link_key(key: str) -> tuple[str, str, bool]:
    """``'a.example<>b.example'`` -> ``('a.example', 'b.example', True)`` (both directions)."""
    if "<>" in key:
        a, _, b = key.partition("<>")
        both = True
    elif ">" in key:
        a, _, b = key.partition(">")
        both = False
    else:
        raise ValueError(f"expected a link like 'a.example>b.example' or 'a.example<>b.example', got '{key}'")
    a, b = a.strip(), b.strip()
    if not a or not b or ">" in b or "<" in a + b:
        raise ValueError(f"expected a link like 'a.example>b.example' or 'a.example<>b.example', got '{key}'")
    return a, b, both


# ====================================================================== providers


class CostModel(_Model):
    """Simulated processing time of a provider: fixed per request plus per byte and per crypto operation."""

    per_request: Duration = 0.0
    per_byte: Duration = 0.0
    """Per byte of request body (``2ns`` is 2 ms per MB)."""
    per_signature: Duration = 0.0
    """Per signature made or verified."""
    per_hpke: Duration = 0.0
    """Per HPKE seal or open."""


class Standby(_Model):
    """A standby that takes over the hub's domain when the hub fails over."""

    replication: Literal["sync", "lag"] = "sync"
    """``sync``: the standby has everything the hub acknowledged; ``lag``: state arrives after a delay."""
    lag: Distribution | None = Field(default=None, validate_default=True)
    """Replication delay per state change (required with ``replication: lag``)."""
    takeover: Duration = 0.0
    """Time from the failover until the standby answers for the hub's domain."""

    @field_validator("lag")
    @classmethod
    def _lag(cls, v: Any, info: ValidationInfo) -> Any:
        mode = info.data.get("replication")
        if mode == "lag" and v is None:
            raise ValueError(
                "replication 'lag' needs a lag distribution (e.g. {kind: exponential, mean: 200ms})"
            )
        if mode == "sync" and v is not None:
            raise ValueError("a lag only applies to replication 'lag'")
        return v


class ProviderSpec(_Model):
    """One provider (the key is its domain)."""

    cost: CostModel = Field(default_factory=CostModel)
    state: Literal["durable", "volatile"] = "durable"
    """What survives a crash: ``durable`` keeps everything (the notify outbox is resent on restart);
    ``volatile`` loses what lives in memory (notify outbox, queued deliveries, the dedup window) but keeps
    rooms and key material (docs/simulator.md, "Crashes and failover")."""
    standby: Standby | None = None
    """Hub failover target; needed by ``failover`` faults."""


# ====================================================================== users and clients


class OfflineWindow(_Model):
    """A period in which a client is offline."""

    start: Duration
    end: Duration | None = None
    """End of the window; none means until the end of the run."""

    @field_validator("end")
    @classmethod
    def _order(cls, v: float | None, info: ValidationInfo) -> float | None:
        _check_order("start", info, v, strict=True)
        return v


class ClientSpec(_Model):
    """One client (device) of a user (the key is its device name)."""

    access: Name = "default"
    """Access profile name (``network.access``)."""
    joined: bool = True
    """Whether the client is in its user's rooms from the start; ``false``: a later device that
    joins by external commit (script action ``join_room``)."""
    offline: list[OfflineWindow] = Field(default_factory=list)
    """Its online/offline schedule: the windows it is offline."""


def _clients_shorthand(v: Any) -> Any:
    """``clients: [ClientA1, ClientA2]`` is short for a mapping of defaults."""
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return {x: {} for x in v}
    return v


class UserSpec(_Model):
    """One user (the key is the user name, unique in the scenario)."""

    provider: Domain
    clients: Annotated[
        dict[Name, ClientSpec],
        BeforeValidator(_clients_shorthand),
        _OrShorthand({"type": "array", "items": {"type": "string"}, "description": "device names"}),
    ] = Field(min_length=1)
    """Device name -> client; the client URI is ``mimi://<provider>/d/<user>/<device>``."""


# ====================================================================== rooms and policy


class RoleSpec(_Model):
    """A role of the room policy's role-based access control (draft-ietf-mimi-room-policy)."""

    index: int = Field(ge=0)
    """role_index; 0 means not a participant, 1 is reserved for the role named 'banned'."""
    capabilities: list[Capability] = Field(default_factory=list)
    role_changes: dict[int, list[int]] = Field(default_factory=dict)
    """authorized_role_changes: from role index -> target role indices."""
    min_participants: int = Field(default=0, ge=0)
    max_participants: int | None = Field(default=None, ge=0)
    min_active_participants: int = Field(default=0, ge=0)
    max_active_participants: int | None = Field(default=None, ge=0)


_ORDINARY = [
    "canAddParticipant", "canRemoveParticipant", "canAddOwnClient", "canRemoveOwnClient", "canRemoveSelf",
    "canSendMessage", "canReceiveMessage", "canCopyMessage", "canReportAbuse", "canReplyToMessage",
    "canReactToMessage", "canDeleteOwnReaction", "canEditOwnMessage", "canDeleteOwnMessage", "canStartTopic",
    "canReplyInTopic", "canEditOwnTopic", "canUploadImage", "canUploadVideo", "canUploadAudio",
    "canUploadAttachment", "canDownloadImage", "canDownloadVideo", "canDownloadAudio", "canDownloadAttachment",
    "canSendLink", "canSendLinkPreview", "canFollowLink", "canCopyLink", "canChangeRoomName",
    "canChangeRoomAvatar", "canChangeRoomSubject", "canChangeRoomMood",
]  # fmt: skip
_ADMIN = [*_ORDINARY, "canBan", "canUnBan", "canKick", "canChangeUserRole", "canDeleteOtherMessage",
          "canEditOtherTopic", "canChangeRoomDescription"]  # fmt: skip
_SUPER = [*_ADMIN, "canChangeRoomMembershipStyle", "canChangePreauthorizedUserList", "canDestroyRoom"]

#: The draft's "cooperatively administered room" example (draft-ietf-mimi-room-policy,
#: "Role examples"), without the policy_enforcer role; capabilities the draft
#: marks reserved (canChangeOwnName ...) and voice capabilities the registry
#: lacks are left out. The default of every room's ``policy.roles``.
DEFAULT_ROLES: dict[str, dict[str, Any]] = {
    "no_role": {"index": 0, "capabilities": [], "max_active_participants": 0},
    "banned": {"index": 1, "capabilities": [], "max_active_participants": 0},
    "ordinary_user": {"index": 2, "capabilities": _ORDINARY, "role_changes": {0: [2], 2: [0]}},
    "group_admin": {
        "index": 3,
        "capabilities": _ADMIN,
        "min_participants": 1,
        "role_changes": {0: [1, 2, 3], 1: [0, 2, 3], 2: [0, 1, 3], 3: [0, 1, 2]},
    },
    "super_admin": {
        "index": 4,
        "capabilities": _SUPER,
        "role_changes": {i: [j for j in range(5) if j != i] for i in range(5)},
    },
}


def _default_roles() -> dict[str, RoleSpec]:
    return {name: RoleSpec.model_validate(spec) for name, spec in DEFAULT_ROLES.items()}


class PendingProposals(_Model):
    """What members do when the hub holds proposals a commit must include (e.g. a leave)."""

    strategy: Literal["immediate_commit", "random_delay"] = "immediate_commit"
    """``immediate_commit``: a member commits them at once; ``random_delay``: each member waits a
    uniform delay in [min_delay, max_delay] and commits unless someone else did."""
    min_delay: Duration = 0.0
    max_delay: Duration = 0.0

    @field_validator("max_delay")
    @classmethod
    def _order(cls, v: float, info: ValidationInfo) -> float:
        _check_order("min_delay", info, v)
        return v


class RoomPolicy(_Model):
    """The room's policy: roles and how pending proposals get committed."""

    roles: dict[Name, RoleSpec] = Field(default_factory=_default_roles)
    """Role name -> role; default: the draft's cooperatively administered room."""
    creator_role: Name = "group_admin"
    """Role of the user who creates the room."""
    default_role: Name = "ordinary_user"
    """Role of users added without an explicit role."""
    pending_proposals: PendingProposals | None = None
    """Default: ``protocol.pending_proposals``."""

    @field_validator("roles")
    @classmethod
    def _roles(cls, v: dict[str, RoleSpec]) -> dict[str, RoleSpec]:
        seen: dict[int, str] = {}
        for name, role in v.items():
            if role.index in seen:
                raise ValueError(f"roles '{seen[role.index]}' and '{name}' share index {role.index}")
            seen[role.index] = name
            if role.index == 1 and name != "banned":
                raise ValueError(f"role index 1 is reserved for the role named 'banned', not '{name}'")
        return v

    @field_validator("creator_role", "default_role")
    @classmethod
    def _known_role(cls, v: str, info: ValidationInfo) -> str:
        roles = info.data.get("roles")
        if roles is not None:
            _check_active_role(v, roles)
        return v


def _check_active_role(name: str, roles: dict[str, RoleSpec]) -> None:
    if name not in roles:
        raise ValueError(f"unknown role '{name}' (roles: {', '.join(roles)})")
    if roles[name].index in (0, 1):
        raise ValueError(f"role '{name}' (index {roles[name].index}) is not an active participant role")


class RoomSpec(_Model):
    """One room (the key is its name; its URI is ``mimi://<hub>/r/<name>``)."""

    hub: Domain
    """The hub provider."""
    policy: RoomPolicy = Field(default_factory=RoomPolicy)
    participants: dict[str, Name] = Field(default_factory=dict)
    """Initial participants: user -> role name. Empty: the room is created by a script ``create_room``."""
    created_by: str | None = None
    """Client that creates the MLS group of a room with initial participants; default: the first
    joined client of the first participant."""


# ====================================================================== workload


class _StartStop(_Model):
    """A period of activity within the run: [start, stop)."""

    start: Duration = 0.0
    stop: Duration | None = None
    """Default: the end of the run."""

    @field_validator("stop")
    @classmethod
    def _order(cls, v: float | None, info: ValidationInfo) -> float | None:
        _check_order("start", info, v, strict=True)
        return v


class _Activity(_StartStop):
    rate: Rate
    """Poisson rate (``0.5/s``), per ``per``."""
    rooms: list[str] | None = None
    """Rooms it applies to; default all."""


class MessageActivity(_Activity):
    """Application messages; the sender is a random online member client."""

    per: Literal["room", "client"] = "room"
    size: Size = 100
    """Plaintext content size."""


class CommitActivity(_Activity):
    """Update (path-only) commits, the epoch-conflict study's driver."""

    per: Literal["room", "client"] = "room"


class MembershipActivity(_Activity):
    """Adds, removes or leaves of users, per room."""

    per: Literal["room"] = "room"
    users: list[str] | None = None
    """Candidate users (adds: users not in the room; removes, leaves: participants); default all."""


class DeviceActivity(_StartStop):
    """New devices of existing users joining all their user's rooms by external commit."""

    rate: Rate
    per: Literal["user", "scenario"] = "scenario"
    users: list[str] | None = None
    access: Name = "default"
    """Access profile of the new clients."""


class Backoff(_Model):
    """Exponential backoff: attempt n waits min(cap, base * factor^(n-1)), then jitter."""

    base: Duration = 100.0
    factor: float = Field(default=2.0, ge=1.0)
    cap: Duration = 30_000.0
    jitter: Literal["none", "full", "equal"] = "full"
    """``full``: uniform in [0, wait]; ``equal``: wait/2 + uniform in [0, wait/2]; ``none``: wait."""

    @field_validator("cap")
    @classmethod
    def _order(cls, v: float, info: ValidationInfo) -> float:
        _check_order("base", info, v)
        return v


class WrongEpochRetry(_Model):
    """What a client does when the hub answers its commit with ``wrongEpoch``."""

    max_attempts: int = Field(default=5, ge=1)
    """Attempts in all, the first included."""
    backoff: Backoff = Field(default_factory=lambda: Backoff(base=50.0, cap=2_000.0))
    mode: Literal["rebuild", "immediate", "abandon"] = "rebuild"
    """``rebuild``: catch up to the hub's currentEpoch, wait the backoff, recreate the commit with
    the same intent; ``immediate``: recreate it after the backoff against whatever epoch the client
    has (it may be refused again); ``abandon``: drop the intent (Update commits) and carry on."""


ScriptAction = Literal["create_room", "add_user", "remove_user", "leave", "send", "update", "join_room"]


class ScriptStep(_Model):
    """One action at a fixed time (the draft's example flow, step by step)."""

    at: Duration
    client: str
    """Acting client: ``user/device``, a unique device name, or its URI."""
    action: ScriptAction
    room: str
    user: str | None = None
    """add_user / remove_user: the target user."""
    role: Name | None = None
    """create_room / add_user: the role (default: the policy's creator_role / default_role)."""
    size: Size | None = None
    """send: plaintext size (default: workload.messages.size or 100B)."""
    text: str | None = None
    """send: the message text (its length is the size)."""


class Workload(_Model):
    """What clients do: Poisson activities and/or a fixed script."""

    messages: MessageActivity | None = None
    updates: CommitActivity | None = None
    adds: MembershipActivity | None = None
    removes: MembershipActivity | None = None
    leaves: MembershipActivity | None = None
    new_devices: DeviceActivity | None = None
    script: list[ScriptStep] = Field(default_factory=list)
    retry: WrongEpochRetry = Field(default_factory=WrongEpochRetry)


# ====================================================================== faults


class _Timed(_Model):
    at: Duration


class _Windowed(_Timed):
    duration: Duration | None = None
    """How long it lasts; none means until the end of the run."""


class CrashFault(_Timed):
    """A provider stops; it restarts after ``duration`` (or at a ``restart`` fault)."""

    kind: Literal["crash"]
    node: Domain
    state: Literal["durable", "volatile"] | None = None
    """Default: the provider's ``state``."""
    duration: Duration | None = None


class RestartFault(_Timed):
    """A crashed provider starts again."""

    kind: Literal["restart"]
    node: Domain


class FailoverFault(_Timed):
    """The hub crashes and its standby takes over its domain."""

    kind: Literal["failover"]
    hub: Domain


class PartitionFault(_Windowed):
    """Nodes in different groups cannot talk; unnamed providers form one more group,
    clients go with their provider unless named."""

    kind: Literal["partition"]
    groups: list[list[str]] = Field(min_length=1)


class DegradeFault(_Windowed):
    """Links get slower and lossier for a while."""

    kind: Literal["degrade"]
    links: list[str] | Literal["all"] = "all"
    """``a.example<>b.example`` pairs (both directions), or ``all``."""
    latency_factor: float = Field(default=1.0, ge=0)
    extra_latency: Duration = 0.0
    extra_loss: Probability = 0.0


class OfflineFault(_Windowed):
    """A client goes offline."""

    kind: Literal["offline"]
    client: str


Fault = Annotated[
    CrashFault | RestartFault | FailoverFault | PartitionFault | DegradeFault | OfflineFault,
    Field(discriminator="kind"),
]


class RandomCrash(_Model):
    rate: Rate
    duration: Distribution
    """Downtime."""
    nodes: list[Domain] | None = None
    """Default: every provider."""
    state: Literal["durable", "volatile"] | None = None


class RandomFailover(_Model):
    rate: Rate
    hubs: list[Domain] | None = None
    """Default: every provider with a standby."""


class RandomPartition(_Model):
    rate: Rate
    duration: Distribution


class RandomDegrade(_Model):
    rate: Rate
    duration: Distribution
    links: list[str] | Literal["all"] = "all"
    latency_factor: float = Field(default=1.0, ge=0)
    extra_latency: Duration = 0.0
    extra_loss: Probability = 0.0


class RandomOffline(_Model):
    rate: Rate
    duration: Distribution
    clients: list[str] | None = None
    """Default: every client."""


class RandomFaults(_Model):
    """Each kind is a Poisson process at ``rate`` over the whole scenario, picking a target uniformly."""

    seed: int | None = Field(default=None, ge=0)
    """Default: derived from the run's seed (stream ``faults.random``)."""
    start: Duration = 0.0
    stop: Duration | None = None
    crash: RandomCrash | None = None
    failover: RandomFailover | None = None
    partition: RandomPartition | None = None
    degrade: RandomDegrade | None = None
    offline: RandomOffline | None = None


class Faults(_Model):
    schedule: list[Fault] = Field(default_factory=list)
    """Fixed faults, each with ``kind`` and ``at``."""
    random: RandomFaults | None = None


# ====================================================================== adversaries

FollowerAttack = Literal["replay_notify", "spoof_from", "tamper", "withhold_fanout"]
ClientAttack = Literal["non_member_submit", "forged_signature", "after_removal", "reuse_key_package",
                       "stale_epoch"]


class _Attacker(_StartStop):
    rate: Rate
    """Poisson rate of attempts; each attempt takes the next attack of ``attacks`` in turn."""


class FollowerAdversary(_Attacker):
    """A provider that turns against a room it follows (``mimisim.sim.adversary``): it replays
    old ``/notify`` bodies to another follower, claims another provider's ``From``, sends
    tampered commits to the hub, and withholds a commit's fanout from its own clients."""

    provider: Domain
    room: Name
    attacks: list[FollowerAttack] = Field(
        default_factory=lambda: ["replay_notify", "spoof_from", "tamper", "withhold_fanout"], min_length=1)


class ClientAdversary(_Attacker):
    """A malicious client: submits to a room it is not in, forges signatures, acts after its
    user was removed, republishes a used KeyPackage, commits on a stale epoch."""

    client: str
    """``user/device``, a unique device name, or its URI."""
    room: Name
    attacks: list[ClientAttack] = Field(
        default_factory=lambda: ["non_member_submit", "forged_signature", "after_removal", "reuse_key_package",
                                 "stale_epoch"], min_length=1)


class MalformedAdversary(_Attacker):
    """A provider that sends malformed bodies (random bytes, truncated valid bodies) to every
    endpoint of every other provider, in turn."""

    provider: Domain


class Adversaries(_Model):
    """Malicious actors; the trace records each attempt (``adversary.attempt``) and its outcome
    (``adversary.rejected`` / ``adversary.accepted`` / ``adversary.unanswered``)."""

    followers: list[FollowerAdversary] = Field(default_factory=list)
    clients: list[ClientAdversary] = Field(default_factory=list)
    malformed: list[MalformedAdversary] = Field(default_factory=list)

    def any(self) -> bool:
        return bool(self.followers or self.clients or self.malformed)


# ====================================================================== protocol, outputs, sweep


class Dedup(_Model):
    """How a follower recognises a retried /notify."""

    strategy: Literal["none", "body_hash", "transaction_id"] = "body_hash"
    window_entries: int = Field(default=4096, ge=1)
    window_age: Duration = 600_000.0


class RetryPolicy(_Model):
    max_attempts: int | None = Field(default=None, ge=1)
    """Attempts in all; none means until success."""
    backoff: Backoff = Field(default_factory=Backoff)
    honour_retry_after: bool = True
    """Wait at least a 503/429 response's Retry-After."""


class RequestPolicy(_Model):
    timeout: PositiveDuration = 5_000.0
    retry: RetryPolicy = Field(default_factory=RetryPolicy)


class Protocol(_Model):
    suite: int = Field(default=1, ge=1, le=7)
    """MLS cipher suite (RFC 9420)."""
    dedup: Dedup = Field(default_factory=Dedup)
    notify: RequestPolicy = Field(default_factory=lambda: RequestPolicy(timeout=2_000.0))
    """The hub's /notify fanout: retried until 201 by default."""
    requests: RequestPolicy = Field(
        default_factory=lambda: RequestPolicy(
            retry=RetryPolicy(max_attempts=3, backoff=Backoff(base=200.0, cap=5_000.0))
        )
    )
    """Other provider-to-provider requests (/update, /submit, /keyMaterial, /groupInfo)."""
    pending_proposals: PendingProposals = Field(default_factory=PendingProposals)
    """Default for rooms whose policy does not say."""


class Outputs(_Model):
    dir: str = "results"
    """Results go to ``<dir>/<name>/seed-<n>/``."""
    trace: bool = True
    tables: list[str] = Field(default_factory=lambda: ["all"])
    plots: list[str] = Field(default_factory=lambda: ["all"])
    progress: Literal["auto", "always", "never"] = "auto"


class Sweep(_Model):
    """A grid of overrides times seeds."""

    grid: dict[str, list[Any]] = Field(default_factory=dict)
    """Dotted key path -> values; runs are the cartesian product, the first key slowest."""
    seeds: int | list[int] = 1
    """N seeds (seed, seed+1, ...) or an explicit list."""

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in v.items():
            if not values:
                raise ValueError(f"'{key}' has no values")
            try:
                parse_key_path(key)
            except ValueError as e:
                raise ValueError(str(e)) from None
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: int | list[int]) -> int | list[int]:
        if isinstance(v, int) and v < 1:
            raise ValueError(f"seeds must be at least 1, got {v}")
        if isinstance(v, list) and (not v or any(s < 0 for s in v) or len(set(v)) != len(v)):
            raise ValueError("seeds must be a non-empty list of distinct non-negative integers")
        return v


# ====================================================================== the scenario


@dataclass(frozen=True)
class ClientInfo:
    """A client as the simulator needs it, derived from ``users``."""

    uri: str
    user: str
    device: str
    provider: str
    spec: ClientSpec


class Scenario(_Model):
    """A mimisim scenario: everything one run needs besides the seed."""

    name: Name
    """Names the results folder."""
    description: str = ""
    seed: int = Field(default=0, ge=0)
    duration: PositiveDuration
    """Simulated time of the run."""
    epoch_base_ms: int = Field(default=1_700_000_000_000, ge=0)
    """Wall-clock milliseconds at simulated time 0 (wire timestamps are epoch_base_ms + now)."""
    providers: dict[Domain, ProviderSpec] = Field(min_length=1)
    """Provider domain -> provider."""
    users: dict[Name, UserSpec] = Field(default_factory=dict)
    rooms: dict[Name, RoomSpec] = Field(default_factory=dict)
    network: NetworkSpec = Field(default_factory=NetworkSpec)
    workload: Workload = Field(default_factory=Workload)
    faults: Faults = Field(default_factory=Faults)
    adversaries: Adversaries = Field(default_factory=Adversaries)
    """Malicious followers, clients and senders of malformed bodies (none by default)."""
    protocol: Protocol = Field(default_factory=Protocol)
    outputs: Outputs = Field(default_factory=Outputs)
    sweep: Sweep | None = None

    _source: str | None = PrivateAttr(default=None)
    _raw: dict[str, Any] | None = PrivateAttr(default=None)
    _node: Any = PrivateAttr(default=None)
    _overrides: list[tuple[tuple[Any, ...], str]] = PrivateAttr(default_factory=list)

    # ---------------------------------------------------------------- helpers

    @property
    def source(self) -> str | None:
        """The file it was loaded from, if any."""
        return self._source

    @property
    def overrides(self) -> list[str]:
        """The ``--set`` overrides (and sweep values) applied at load, for the run's manifest."""
        return [note for _, note in self._overrides]

    @property
    def base_dir(self) -> Path:
        """Folder relative paths in the scenario (empirical samples) are read from."""
        return Path(self._source).resolve().parent if self._source else Path.cwd()

    def clients(self) -> list[ClientInfo]:
        """Every client, sorted by URI (a stable order for the simulator)."""
        out = [
            ClientInfo(client_uri(u.provider, user, device), user, device, u.provider, spec)
            for user, u in self.users.items()
            for device, spec in u.clients.items()
        ]
        return sorted(out, key=lambda c: c.uri)

    def client(self, ref: str) -> ClientInfo:
        """Look a client up by URI, ``user/device`` or unique device name."""
        uri = self._resolve_client(ref)
        return next(c for c in self.clients() if c.uri == uri)

    def user_uri(self, user: str) -> str:
        return user_uri(self.users[user].provider, user)

    def room_uri(self, room: str) -> str:
        return room_uri(self.rooms[room].hub, room)

    def link(self, src: str, dst: str) -> LinkSpec:
        """The effective link model of the direction ``src -> dst`` between providers."""
        spec = self.network.default
        both: list[LinkOverride] = []
        one: list[LinkOverride] = []
        for key, override in self.network.links.items():
            a, b, bidir = parse_link_key(key)
            if (a, b) == (src, dst) or (bidir and (b, a) == (src, dst)):
                (both if bidir else one).append(override)
        for o in both + one:  # a one-way override is more specific
            spec = o.apply(spec)
        return spec

    def access(self, profile: str) -> tuple[LinkSpec, LinkSpec]:
        """An access profile as (uplink, downlink) link models."""
        p = self.network.access[profile]
        up = LinkSpec.model_construct(**{k: getattr(p, k) for k in LinkSpec.model_fields})
        down = p.downlink.apply(up) if p.downlink else up
        return up, down

    def counts(self) -> tuple[int, int, int]:
        """(providers, clients, rooms)."""
        return len(self.providers), sum(len(u.clients) for u in self.users.values()), len(self.rooms)

    # ---------------------------------------------------------------- cross-field checks

    def _resolve_client(self, ref: str) -> str:
        if ref.startswith("mimi://"):
            try:
                u = parse(ref)
            except UriError as e:
                raise ValueError(str(e)) from None
            if u.kind != "d":
                raise ValueError(f"'{ref}' is not a client URI (mimi://<domain>/d/<user>/<device>)")
            user, device = u.path
            spec = self.users.get(user)
            if spec is None or spec.provider != u.domain or device not in spec.clients:
                raise ValueError(f"unknown client '{ref}'")
            return ref
        if "/" in ref:
            user, _, device = ref.partition("/")
            if user not in self.users:
                raise ValueError(f"unknown user '{user}' in client '{ref}'")
            if device not in self.users[user].clients:
                raise ValueError(
                    f"user '{user}' has no client '{device}' (clients: {', '.join(self.users[user].clients)})"
                )
            return client_uri(self.users[user].provider, user, device)
        hits = [(user, spec) for user, spec in self.users.items() if ref in spec.clients]
        if not hits:
            raise ValueError(f"unknown client '{ref}' (write user/device, e.g. 'alice/{ref}')")
        if len(hits) > 1:
            raise ValueError(
                f"client name '{ref}' is ambiguous (users {', '.join(u for u, _ in hits)}); write user/device"
            )
        user, spec = hits[0]
        return client_uri(spec.provider, user, ref)

    @model_validator(mode="after")
    def _cross_check(self) -> Scenario:
        """References between sections, and the resolution of defaults.

        Raises :class:`ScenarioError` (not a ``ValueError``) so that the
        location of each problem is its own key path rather than the root.
        """
        problems: list[tuple[tuple[Any, ...], str]] = []

        def bad(loc: tuple[Any, ...], msg: str) -> None:
            problems.append((loc, msg))

        providers = self.providers
        end = self.duration

        def known_provider(loc: tuple[Any, ...], domain: str, what: str = "provider") -> bool:
            if domain not in providers:
                bad(loc, f"unknown {what} '{domain}' (providers: {', '.join(providers)})")
                return False
            return True

        def client_ref(loc: tuple[Any, ...], ref: str) -> str:
            try:
                return self._resolve_client(ref)
            except ValueError as e:
                bad(loc, str(e))
                return ref

        def known_user(loc: tuple[Any, ...], user: str) -> bool:
            if user not in self.users:
                bad(loc, f"unknown user '{user}' (users: {', '.join(self.users) or 'none'})")
                return False
            return True

        def known_room(loc: tuple[Any, ...], room: str) -> bool:
            if room not in self.rooms:
                bad(loc, f"unknown room '{room}' (rooms: {', '.join(self.rooms) or 'none'})")
                return False
            return True

        def before_end(loc: tuple[Any, ...], at: float) -> None:
            if at >= end:
                bad(
                    loc,
                    f"{format_duration(at)} is not before the end of the run (duration {format_duration(end)})",
                )

        def link_pair(loc: tuple[Any, ...], key: str, *, undirected: bool) -> tuple[str, str, bool] | None:
            try:
                a, b, both = parse_link_key(key)
            except ValueError as e:
                bad(loc, str(e))
                return None
            if undirected and not both:
                bad(loc, f"degradations apply to both directions; write '{a}<>{b}'")
                return None
            if known_provider(loc, a) and known_provider(loc, b):
                if a == b:
                    bad(loc, f"a link joins two different providers, got '{key}'")
                    return None
                return a, b, both
            return None

        # access profiles: 'default' always exists
        if "default" not in self.network.access:
            self.network.access["default"] = AccessProfile()

        # users and clients
        for user, spec in self.users.items():
            known_provider(("users", user, "provider"), spec.provider)
            for device, c in spec.clients.items():
                if c.access not in self.network.access:
                    bad(
                        ("users", user, "clients", device, "access"),
                        f"unknown access profile '{c.access}' (profiles: {', '.join(self.network.access)})",
                    )
                for i, w in enumerate(c.offline):
                    before_end(("users", user, "clients", device, "offline", i, "start"), w.start)

        # network links
        # A direction may have one two-way and one (more specific) one-way override.
        seen_dirs: dict[tuple[str, str, bool], str] = {}
        for key in self.network.links:
            pair = link_pair(("network", "links", key), key, undirected=False)
            if pair is None:
                continue
            a, b, both = pair
            for src, dst in [(a, b), (b, a)] if both else [(a, b)]:
                prev = seen_dirs.get((src, dst, both))
                if prev is not None:
                    bad(("network", "links", key), f"the direction {src}>{dst} is already set by '{prev}'")
                seen_dirs[(src, dst, both)] = key

        # rooms
        pending_default = self.protocol.pending_proposals
        created_by_script = {s.room for s in self.workload.script if s.action == "create_room"}
        for room, r in self.rooms.items():
            known_provider(("rooms", room, "hub"), r.hub, "hub provider")
            if r.policy.pending_proposals is None:
                r.policy.pending_proposals = pending_default.model_copy()
            for user, role in r.participants.items():
                if known_user(("rooms", room, "participants", user), user):
                    try:
                        _check_active_role(role, r.policy.roles)
                    except ValueError as e:
                        bad(("rooms", room, "participants", user), str(e))
            if r.participants:
                if room in created_by_script:
                    bad(
                        ("rooms", room, "participants"),
                        "a room created by a script 'create_room' starts without participants",
                    )
                if r.created_by is None:
                    first = next(iter(r.participants))
                    if first in self.users:
                        joined = [d for d, c in self.users[first].clients.items() if c.joined]
                        if joined:
                            r.created_by = client_uri(self.users[first].provider, first, joined[0])
                        else:
                            bad(
                                ("rooms", room, "participants", first),
                                f"user '{first}' has no joined client to create the room",
                            )
                else:
                    r.created_by = client_ref(("rooms", room, "created_by"), r.created_by)
                    uri = r.created_by
                    if uri.startswith("mimi://") and parse(uri).path[0] not in r.participants:
                        bad(
                            ("rooms", room, "created_by"),
                            f"'{uri}' does not belong to a participant of the room",
                        )
            elif room not in created_by_script:
                bad(
                    ("rooms", room),
                    "a room without participants must be created by a script step 'action: create_room'",
                )

        # workload
        wl = self.workload
        for section in ("messages", "updates", "adds", "removes", "leaves"):
            act = getattr(wl, section)
            if act is None:
                continue
            for i, room in enumerate(act.rooms or []):
                known_room(("workload", section, "rooms", i), room)
            for i, user in enumerate(getattr(act, "users", None) or []):
                known_user(("workload", section, "users", i), user)
            before_end(("workload", section, "start"), act.start)
        if wl.new_devices is not None:
            for i, user in enumerate(wl.new_devices.users or []):
                known_user(("workload", "new_devices", "users", i), user)
            if wl.new_devices.access not in self.network.access:
                bad(
                    ("workload", "new_devices", "access"), f"unknown access profile '{wl.new_devices.access}'"
                )
        creates: dict[str, int] = {}
        for i, step in enumerate(wl.script):
            loc = ("workload", "script", i)
            before_end((*loc, "at"), step.at)
            step.client = client_ref((*loc, "client"), step.client)
            room_ok = known_room((*loc, "room"), step.room)
            needs_user = step.action in ("add_user", "remove_user")
            if needs_user and step.user is None:
                bad((*loc, "user"), f"action '{step.action}' needs the target 'user'")
            elif not needs_user and step.user is not None:
                bad((*loc, "user"), f"action '{step.action}' takes no 'user'")
            elif step.user is not None:
                known_user((*loc, "user"), step.user)
            if step.role is not None and step.action not in ("create_room", "add_user"):
                bad((*loc, "role"), f"action '{step.action}' takes no 'role'")
            elif step.role is not None and room_ok:
                try:
                    _check_active_role(step.role, self.rooms[step.room].policy.roles)
                except ValueError as e:
                    bad((*loc, "role"), str(e))
            if step.action != "send" and (step.size is not None or step.text is not None):
                bad(
                    (*loc, "size" if step.size is not None else "text"),
                    f"action '{step.action}' sends no message",
                )
            if step.action == "create_room":
                if step.room in creates:
                    bad(
                        (*loc, "room"),
                        f"room '{step.room}' is already created by script step {creates[step.room]}",
                    )
                creates.setdefault(step.room, i)
            if step.action == "join_room" and step.client.startswith("mimi://"):
                user, device = parse(step.client).path
                if self.users[user].clients[device].joined:
                    bad(
                        (*loc, "client"),
                        f"'{step.client}' is joined from the start; a device that joins later has 'joined: false'",
                    )

        # adversaries
        adv = self.adversaries
        for kind in ("followers", "clients", "malformed"):
            for i, a in enumerate(getattr(adv, kind)):
                loc = ("adversaries", kind, i)
                before_end((*loc, "start"), a.start)
                if kind != "clients":
                    known_provider((*loc, "provider"), a.provider)
                else:
                    a.client = client_ref((*loc, "client"), a.client)
                if kind != "malformed":
                    known_room((*loc, "room"), a.room)
                if kind == "followers" and a.room in self.rooms and a.provider == self.rooms[a.room].hub:
                    bad((*loc, "provider"), f"'{a.provider}' is the hub of '{a.room}', not a follower")

        # faults
        for i, f in enumerate(self.faults.schedule):
            loc = ("faults", "schedule", i)
            before_end((*loc, "at"), f.at)
            if isinstance(f, CrashFault | RestartFault):
                if known_provider((*loc, "node"), f.node) and isinstance(f, CrashFault) and f.state is None:
                    f.state = providers[f.node].state
            elif isinstance(f, FailoverFault):
                if known_provider((*loc, "hub"), f.hub) and providers[f.hub].standby is None:
                    bad(
                        (*loc, "hub"),
                        f"provider '{f.hub}' has no standby to fail over to (set providers[{f.hub}].standby)",
                    )
            elif isinstance(f, PartitionFault):
                seen: dict[str, int] = {}
                for g, group in enumerate(f.groups):
                    for j, node in enumerate(group):
                        nloc = (*loc, "groups", g, j)
                        if node in providers:
                            name = node
                        elif "." in node and "/" not in node and not node.startswith("mimi://"):
                            known_provider(nloc, node)
                            continue
                        else:
                            name = client_ref(nloc, node)
                            group[j] = name
                        if name in seen and seen[name] != g:
                            bad(nloc, f"'{node}' is in two partition groups")
                        seen[name] = g
            elif isinstance(f, DegradeFault):
                if f.links != "all":
                    for j, key in enumerate(f.links):
                        link_pair((*loc, "links", j), key, undirected=True)
            elif isinstance(f, OfflineFault):
                f.client = client_ref((*loc, "client"), f.client)
        rf = self.faults.random
        if rf is not None:
            base = ("faults", "random")
            if rf.stop is not None and rf.stop <= rf.start:
                bad((*base, "stop"), "must be after start")
            if rf.crash is not None:
                for j, node in enumerate(rf.crash.nodes or []):
                    known_provider((*base, "crash", "nodes", j), node)
            if rf.failover is not None:
                hubs = rf.failover.hubs
                if hubs is None and not any(p.standby for p in providers.values()):
                    bad((*base, "failover"), "no provider has a standby to fail over to")
                for j, hub in enumerate(hubs or []):
                    if known_provider((*base, "failover", "hubs", j), hub) and providers[hub].standby is None:
                        bad((*base, "failover", "hubs", j), f"provider '{hub}' has no standby")
            if rf.degrade is not None and rf.degrade.links != "all":
                for j, key in enumerate(rf.degrade.links):
                    link_pair((*base, "degrade", "links", j), key, undirected=True)
            if rf.offline is not None and rf.offline.clients is not None:
                rf.offline.clients = [
                    client_ref((*base, "offline", "clients", j), c) for j, c in enumerate(rf.offline.clients)
                ]

        if problems:
            raise _problems(problems)
        return self


# ====================================================================== YAML with line numbers


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys (PyYAML silently keeps the
    last one, which hides typos) and keeps the node tree, whose start marks
    give each key's line."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise ScenarioError(
                    "a mapping key must be a scalar", line=key_node.start_mark.line + 1, file=self.name
                ) from None
            if key in seen:
                raise ScenarioError(
                    f"duplicate key '{key}' (first at line {seen[key]})",
                    file=self.name,
                    line=key_node.start_mark.line + 1,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str, file: str) -> tuple[Any, yaml.Node | None]:
    loader = _LineLoader(text)
    loader.name = file
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        what = e.problem or "invalid YAML"
        ctx = ""
        if e.context and e.context != e.problem:
            cm = e.context_mark
            at = f" at line {cm.line + 1}" if cm is not None and e.problem_mark is not None else ""
            ctx = f" ({e.context}{at})"
        raise ScenarioError(f"YAML syntax error: {what}{ctx}", file=file, line=line) from None
    except yaml.YAMLError as e:
        raise ScenarioError(f"YAML syntax error: {e}", file=file) from None
    finally:
        loader.dispose()
    return data, node


def _child(node: yaml.Node | None, item: Any) -> tuple[yaml.Node | None, int | None]:
    """The value node under ``item`` and the line of its key (or item)."""
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == str(item):
                return v, k.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode) and isinstance(item, int) and 0 <= item < len(node.value):
        v = node.value[item]
        return v, v.start_mark.line + 1
    return None, None


def _locate(loc: Sequence[Any], data: Any, node: yaml.Node | None) -> tuple[tuple[Any, ...], int, int]:
    """Map a validation location to (key path as written, line number, how
    many of the path's keys are in the file).

    The data walk decides the path: a loc item that is a key (or index) of
    the data at that point is part of the path; one that is not is a union
    tag pydantic inserted (``constant`` in ``latency.constant.value``) and is
    skipped, unless it is the last item (a missing key). The node walk
    follows the same items for the line, and stops where an override put
    keys the file does not have (the line stays at the nearest ancestor).
    """
    path: list[Any] = []
    line = node.start_mark.line + 1 if node is not None else 1
    depth = 0
    for idx, item in enumerate(loc):
        last = idx == len(loc) - 1
        if isinstance(data, dict) and item in data:
            data = data[item]
        elif isinstance(data, dict) and isinstance(item, str) and any(str(k) == item for k in data):
            data = next(v for k, v in data.items() if str(k) == item)
        elif isinstance(data, list) and isinstance(item, int) and 0 <= item < len(data):
            data = data[item]
        elif last:
            path.append(item)
            break
        else:
            continue
        path.append(item)
        node, key_line = _child(node, item)
        if key_line is not None:
            line = key_line
            depth = len(path)
    return tuple(path), line, depth


_INPUT_TYPES = (str, int, float, bool, dict, list)


def _message(err: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """A pydantic error as (our message, extra loc items)."""
    typ = err["type"]
    msg: str = err["msg"]
    ctx = err.get("ctx") or {}
    inp = err.get("input")
    if typ == "unknown_key":
        return msg, (ctx["key"],)
    if typ == "missing":
        return "missing required key", ()
    if typ == "value_error":
        return re.sub(r"^Value error, ", "", msg), ()
    if typ == "assertion_error":
        return re.sub(r"^Assertion failed, ", "", msg), ()
    if typ == "union_tag_invalid":
        disc = str(ctx.get("discriminator", "kind")).strip("'")
        tag = ctx.get("tag")
        return f"unknown {disc} '{tag}' (expected one of {ctx.get('expected_tags')})", (disc,)
    if typ == "union_tag_not_found":
        disc = str(ctx.get("discriminator", "kind")).strip("'")
        return f"missing required key '{disc}'", (disc,)
    if typ in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping, got {_describe(inp)}", ()
    if typ == "list_type":
        return f"expected a list, got {_describe(inp)}", ()
    if typ in ("too_short", "too_long"):
        return msg.replace("List", "the list").replace("Dictionary", "the mapping"), ()
    out = msg.replace("Input should be", "expected")
    if isinstance(inp, _INPUT_TYPES):
        out += f", got {_describe(inp)}"
    return out, ()


def _convert(
    exc: ValidationError | ScenarioError,
    file: str,
    data: Any,
    node: yaml.Node | None,
    overrides: Sequence[tuple[tuple[Any, ...], str]] = (),
    prefix: tuple[Any, ...] = (),
) -> ScenarioError:
    """A validation failure as a located, one-line ScenarioError (the first by line)."""
    found: list[ScenarioError] = []
    if isinstance(exc, ValidationError):
        raw = [(tuple(e["loc"]), e) for e in exc.errors(include_url=False)]
        items = []
        for loc, e in raw:
            msg, extra = _message(e)
            items.append((loc + extra, msg))
    else:
        items = [(p.loc, p.message) for p in exc.problems]
    for loc, msg in items:
        path, line, depth = _locate(loc, data, node)
        for opath, text in overrides:
            # The override set this key, a key inside it, or created the
            # (missing from the file) part of the path where the error is.
            common = next(
                (i for i, (a, b) in enumerate(zip(path, opath, strict=False)) if a != b),
                min(len(path), len(opath)),
            )
            if path and (common == min(len(path), len(opath)) or common > depth):
                msg += f" (from {text})"
                break
        found.append(ScenarioError(msg, file=file, line=line, path=format_key_path(prefix + path), loc=path))
    found.sort(key=lambda e: e.line or 0)
    first = found[0]
    return ScenarioError(
        first.message, file=file, line=first.line, path=first.path, loc=first.loc, problems=found
    )


# ====================================================================== loading


def _context(base_dir: Path) -> dict[str, Any]:
    """Validation context of files: relative paths resolve against the file's
    folder, and every quantity must carry its unit."""
    return {"base_dir": base_dir, "strict_units": True}


def _parse_override(text: str) -> tuple[str, Any]:
    key, eq, value = text.partition("=")
    key = key.strip()
    if not eq or not key:
        raise ScenarioError(f"--set {text}: expected key.path=value")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as e:
        raise ScenarioError(f"--set {text}: the value is not valid YAML ({str(e).splitlines()[0]})") from None
    return key, parsed


def _validate(
    data: Any,
    file: str,
    node: yaml.Node | None,
    base_dir: Path,
    overrides: Sequence[tuple[tuple[Any, ...], str]] = (),
) -> Scenario:
    try:
        return Scenario.model_validate(data, context=_context(base_dir))
    except (ValidationError, ScenarioError) as e:
        raise _convert(e, file, data, node, overrides) from None


def load_scenario_text(
    text: str, file: str = "<scenario>", overrides: Sequence[str] = (), base_dir: Path | None = None
) -> Scenario:
    """:func:`load_scenario` for text already in memory (``file`` names it in errors)."""
    data, node = _load_yaml(text, file)
    if not isinstance(data, dict):
        line = node.start_mark.line + 1 if node is not None else 1
        raise ScenarioError(
            f"a scenario is a mapping of keys (name, duration, providers, ...), got {_describe(data)}",
            file=file,
            line=line,
        )
    applied: list[tuple[tuple[Any, ...], str]] = []
    for text_ in overrides:
        try:
            key, value = _parse_override(text_)
        except ScenarioError as e:
            raise ScenarioError(e.message, file=file) from None
        try:
            applied.append((apply_override(data, key, value), f"--set {text_}"))
        except ValueError as e:
            raise ScenarioError(f"--set {text_}: {e}", file=file) from None
    base = base_dir if base_dir is not None else Path.cwd()
    scenario = _validate(copy.deepcopy(data), file, node, base, applied)
    scenario._source = None
    scenario._raw = data
    scenario._node = node
    scenario._overrides = applied
    if scenario.sweep is not None:
        _check_grid(scenario, file, base)
    return scenario


def load_scenario(path: str | Path, overrides: Sequence[str] = ()) -> Scenario:
    """Read, override, validate and resolve a scenario file.

    ``overrides`` are ``key.path=value`` strings (the value is YAML:
    ``80ms``, ``0.1``, ``[a, b]``), applied to the file's data before
    validation, so an override is checked exactly like the file. Any problem
    raises :class:`ScenarioError` (one line: file, line, key path, message).
    """
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ScenarioError(f"cannot read: {e.strerror or e}", file=file) from None
    except UnicodeDecodeError as e:
        raise ScenarioError(f"not UTF-8 text ({e.reason} at byte {e.start})", file=file) from None
    scenario = load_scenario_text(text, file, overrides, base_dir=Path(path).resolve().parent)
    scenario._source = file
    return scenario


def json_schema() -> dict[str, Any]:
    """The JSON Schema of scenario files, for editors (YAML language servers)."""
    schema = Scenario.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "mimisim scenario"
    return schema


def _canonical(scenario: Scenario) -> str:
    return json.dumps(
        scenario.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def resolved_hash(scenario: Scenario) -> str:
    """sha256 (hex) of the resolved scenario as canonical JSON.

    Two files that differ only in spelling (``1s`` vs ``1000ms``, key
    order, a default written out or left implicit, ``alice/ClientA1`` vs the
    client URI) hash the same, because the hash is of the resolved model.
    """
    return hashlib.sha256(_canonical(scenario).encode("utf-8")).hexdigest()


# ====================================================================== sweeps


def _sweep_seeds(scenario: Scenario) -> list[int]:
    assert scenario.sweep is not None
    s = scenario.sweep.seeds
    return list(range(scenario.seed, scenario.seed + s)) if isinstance(s, int) else list(s)


def _raw_of(scenario: Scenario) -> dict[str, Any]:
    return copy.deepcopy(scenario._raw) if scenario._raw is not None else scenario.model_dump(mode="json")


def _check_grid(scenario: Scenario, file: str, base: Path) -> None:
    """Validate each grid value on its own, so that a bad one is reported at
    its own line in the sweep block (rather than once per run, later)."""
    assert scenario.sweep is not None
    for key, values in scenario.sweep.grid.items():
        for i, value in enumerate(values):
            data = _raw_of(scenario)
            data.pop("sweep", None)
            try:
                apply_override(data, key, value)
                Scenario.model_validate(data, context=_context(base))
                continue
            except (ValidationError, ScenarioError) as e:
                inner = _convert(e, file, data, None)
                why = f"{inner.path}: {inner.message}" if inner.path else inner.message
            except ValueError as e:
                why = str(e)
            loc = ("sweep", "grid", key, i)
            _, line, _ = _locate(loc, scenario._raw, scenario._node)
            raise ScenarioError(why, file=file, line=line, path=format_key_path(loc))


def expand_sweep(scenario: Scenario) -> list[tuple[dict[str, Any], int, Scenario]]:
    """The runs of a sweep: ``(params, seed, scenario)`` for every grid point and seed.

    ``params`` maps each grid key to its value at that point; the scenario
    has the point's overrides applied, ``seed`` set and no ``sweep`` block,
    so its :func:`resolved_hash` identifies the run. Order: the cartesian
    product of the grid in the file's key order (the last key fastest), and
    for each point every seed. A scenario without a sweep is one run.
    """
    if scenario.sweep is None:
        return [({}, scenario.seed, scenario)]
    file = scenario._source or "<scenario>"
    base = scenario.base_dir
    keys = list(scenario.sweep.grid)
    value_lists = [scenario.sweep.grid[k] for k in keys]
    seeds = _sweep_seeds(scenario)
    out: list[tuple[dict[str, Any], int, Scenario]] = []
    for combo in itertools.product(*value_lists) if keys else [()]:
        params = dict(zip(keys, combo, strict=True))
        for seed in seeds:
            data = _raw_of(scenario)
            data.pop("sweep", None)
            applied = [(apply_override(data, k, v), f"sweep {k}={v}") for k, v in params.items()]
            data["seed"] = seed
            point = _validate(data, file, scenario._node, base, applied)
            point._source = scenario._source
            point._raw = data
            point._node = scenario._node
            point._overrides = [*scenario._overrides, *applied]
            out.append((dict(params), seed, point))
    return out
