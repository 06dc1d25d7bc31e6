"""Fault files: an explicit fault schedule to replay (``mimisim run --faults FILE``).

A fault file is the *expanded* schedule of a run, the value
:func:`mimisim.sim.faults.expand` computes from a scenario and a seed and a
run's ``manifest.json`` records under ``faults``; ``mimisim check`` writes
one when it shrinks a failure. Replaying it runs the scenario with exactly
these faults instead of the ones the scenario and seed would expand to.

The format (JSON or YAML; ``mimisim schema --faults`` prints its JSON Schema):
a list of faults, or a mapping with a ``faults`` list (so a ``manifest.json``
can be given as it is). Each fault is a mapping:

- ``kind``: ``crash | restart | failover | partition | degrade | offline``;
- ``at_ms``: when it starts, simulated milliseconds (0 <= at_ms < duration);
- ``end_ms``: when it ends (> at_ms), or null: instantaneous (restart,
  failover) or until the end of the run;
- ``node``: the provider (crash, restart, failover: the hub, which needs a
  standby) or the client (offline: ``user/device``, a unique device name or
  the client URI);
- ``state``: crash only, ``durable | volatile`` (null: the provider's own);
- ``groups``: partition only, lists of providers and clients;
- ``links``: degrade only, ``all`` or ``[[a.example, b.example], ...]``;
  ``latency_factor`` (>= 0), ``extra_latency_ms`` (>= 0), ``extra_loss``
  (0..1);
- ``id`` (default ``F<index>``) and ``origin`` (``schedule | random |
  outage | client``, default ``schedule``): bookkeeping the trace shows.

It is checked like a scenario: every problem is one line,
``<file>:<line>: <key path>: <message>`` (a :class:`ScenarioError`), and
references are resolved against the scenario the run uses.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mimisim.sim.faults import FaultEvent, FaultPlan
from mimisim.sim.scenario import Scenario, ScenarioError, format_key_path

__all__ = ["FaultEntry", "fault_file_schema", "load_fault_file", "parse_fault_file"]


class FaultEntry(BaseModel):
    """One fault of a fault file (the fields of a manifest's ``faults`` items)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    id: str | None = None
    """The fault's id in the trace (``detail`` of its rows); default ``F<index>``."""
    kind: Literal["crash", "restart", "failover", "partition", "degrade", "offline"]
    """What happens."""
    at_ms: float = Field(ge=0)
    """When it starts (simulated ms, before the scenario's duration)."""
    end_ms: float | None = None
    """When it ends (simulated ms, after at_ms); null: instantaneous or until the end of the run."""
    node: str = ""
    """crash/restart/failover: the provider (the hub for failover); offline: the client."""
    state: Literal["durable", "volatile"] | None = None
    """crash: what the provider keeps over the crash; null: its own setting."""
    groups: list[list[str]] = Field(default_factory=list)
    """partition: the sides, lists of providers and clients."""
    links: Literal["all"] | list[list[str]] = "all"
    """degrade: ``all`` or provider pairs ``[a.example, b.example]`` (both directions)."""
    latency_factor: float = Field(default=1.0, ge=0)
    """degrade: link latency multiplied by this."""
    extra_latency_ms: float = Field(default=0.0, ge=0)
    """degrade: latency added (ms)."""
    extra_loss: float = Field(default=0.0, ge=0, le=1)
    """degrade: loss probability added."""
    origin: Literal["schedule", "random", "outage", "client"] = "schedule"
    """Where the fault came from when the schedule was expanded."""



#: Keys of a scenario's ``faults.schedule`` entries and what a fault file calls them.
_SCENARIO_SPELLING = {"at": "at_ms", "duration": "end_ms", "hub": "node", "client": "node",
                      "extra_latency": "extra_latency_ms"}


def _unknown_key(key: str) -> str:
    """The message for a key a fault has not, with what was probably meant."""
    if key in _SCENARIO_SPELLING:
        return (f"unknown key '{key}': this is a scenario's faults.schedule spelling; a fault file says "
                f"'{_SCENARIO_SPELLING[key]}' (times in ms; format: mimisim schema --faults)")
    hint = difflib.get_close_matches(key, list(FaultEntry.model_fields), n=1, cutoff=0.6)
    extra = f" (did you mean '{hint[0]}'?)" if hint else f" (keys: {', '.join(FaultEntry.model_fields)})"
    return f"unknown key '{key}'{extra}"


def fault_file_schema() -> dict[str, Any]:
    """JSON Schema of fault files (``mimisim schema --faults``)."""
    item = FaultEntry.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "mimisim fault file",
        "description": "An explicit fault schedule for `mimisim run --faults FILE`: a list of faults (or a "
                       "manifest.json, whose `faults` list is used). Times are simulated milliseconds.",
        "type": "array",
        "items": item,
    }


# ---------------------------------------------------------------- reading with line numbers


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int:
    """The line of the deepest part of ``loc`` present in the YAML node tree."""
    line = node.start_mark.line + 1 if node is not None else 1
    for item in loc:
        nxt = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(item):
                    line, nxt = k.start_mark.line + 1, v
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(item, int) and 0 <= item < len(node.value):
            nxt = node.value[item]
            line = nxt.start_mark.line + 1
        if nxt is None:
            break
        node = nxt
    return line


def _parse(text: str, file: str) -> tuple[Any, yaml.Node | None]:
    """The data and its YAML node tree (JSON is read by ``json`` for its
    error messages, then composed as YAML for the line numbers)."""
    data: Any
    if file.endswith(".json") or text.lstrip().startswith(("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            msg = e.msg[0].lower() + e.msg[1:]
            raise ScenarioError(f"not valid JSON: {msg} (column {e.colno})", file=file, line=e.lineno) from None
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            node = None  # valid JSON PyYAML cannot read: lines fall back to 1
        return data, node
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise ScenarioError(f"YAML syntax error: {e.problem or e}", file=file,
                            line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as e:
        raise ScenarioError(f"YAML syntax error: {e}", file=file) from None
    return data, node


def _describe(v: Any) -> str:
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    if v is None:
        return "nothing"
    return f"{type(v).__name__} {v!r}"


def parse_fault_file(text: str, scenario: Scenario, file: str = "<faults>") -> FaultPlan:
    """Check a fault file's text against ``scenario`` and return its plan."""
    data, node = _parse(text, file)
    prefix: tuple[Any, ...] = ("faults",)
    items = data
    if isinstance(data, dict):
        if "faults" not in data:
            keys = ", ".join(str(k) for k in list(data)[:5])
            raise ScenarioError(
                f"expected a list of faults (or a manifest.json with a 'faults' list), got a mapping "
                f"with keys {keys}", file=file, line=_line_of(node, ()))
        items = data["faults"]
        node_items = None
        if isinstance(node, yaml.MappingNode):
            node_items = next((v for k, v in node.value if getattr(k, "value", None) == "faults"), None)
        node = node_items
    if not isinstance(items, list):
        raise ScenarioError(f"expected a list of faults, got {_describe(items)}", file=file,
                            line=_line_of(node, ()), path="faults" if isinstance(data, dict) else "")

    def fail(loc: tuple[Any, ...], msg: str) -> ScenarioError:
        return ScenarioError(msg, file=file, line=_line_of(node, loc), path=format_key_path(prefix + loc))

    duration = float(scenario.duration)
    out: list[FaultEvent] = []
    for i, raw in enumerate(items):
        if not isinstance(raw, dict):
            raise fail((i,), f"expected a mapping (a fault), got {_describe(raw)}")
        for key in raw:
            if key not in FaultEntry.model_fields:
                raise fail((i, key), _unknown_key(str(key)))
        try:
            e = FaultEntry.model_validate(raw)
        except ValidationError as err:
            first = err.errors(include_url=False)[0]
            loc = tuple(x for x in first["loc"] if x not in ("list[list[str]]", "literal['all']"))
            msg = first["msg"].removeprefix("Value error, ").replace("Input should be", "expected")
            if first["type"] == "missing":
                msg = "missing required key"
            elif first["type"] not in ("value_error",) and "input" in first:
                msg += f", got {_describe(first['input'])}"
            raise fail((i, *loc), msg) from None
        out.append(_resolve(e, i, scenario, duration, fail))
    return FaultPlan(out)


def _resolve(e: FaultEntry, i: int, scn: Scenario, duration: float, fail: Any) -> FaultEvent:
    """Cross-checks against the scenario; client names become URIs."""
    providers = scn.providers
    if e.at_ms >= duration:
        raise fail((i, "at_ms"), f"{e.at_ms:g} ms is not before the end of the run ({duration:g} ms)")
    if e.end_ms is not None and e.end_ms <= e.at_ms:
        raise fail((i, "end_ms"), f"must be after at_ms ({e.at_ms:g}), got {e.end_ms:g}")

    def provider(node: str, loc: tuple[Any, ...]) -> str:
        if node not in providers:
            raise fail(loc, f"unknown provider '{node}' (providers: {', '.join(providers)})")
        return node

    def client(ref: str, loc: tuple[Any, ...]) -> str:
        try:
            return scn.client(ref).uri
        except ValueError as err:
            raise fail(loc, str(err)) from None

    node = e.node
    groups: tuple[tuple[str, ...], ...] = ()
    links: tuple[tuple[str, str], ...] | Literal["all"] = "all"
    if e.kind in ("crash", "restart", "failover"):
        if not node:
            raise fail((i, "node"), f"a {e.kind} needs 'node' (a provider)")
        provider(node, (i, "node"))
        if e.kind == "failover" and providers[node].standby is None:
            raise fail((i, "node"), f"provider '{node}' has no standby to fail over to")
    elif e.kind == "offline":
        if not node:
            raise fail((i, "node"), "an offline fault needs 'node' (a client)")
        node = client(node, (i, "node"))
    elif e.kind == "partition":
        if not e.groups:
            raise fail((i, "groups"), "a partition needs 'groups' (lists of providers and clients)")
        resolved = []
        for g, group in enumerate(e.groups):
            names = [n if n in providers else client(n, (i, "groups", g, j)) for j, n in enumerate(group)]
            resolved.append(tuple(sorted(names)))
        groups = tuple(resolved)
    if e.kind == "degrade" and e.links != "all":
        pairs = []
        for j, pair in enumerate(e.links):
            if len(pair) != 2:
                raise fail((i, "links", j), f"expected a pair of providers, got {len(pair)} name(s)")
            pairs.append((provider(pair[0], (i, "links", j, 0)), provider(pair[1], (i, "links", j, 1))))
        links = tuple(pairs)
    end = None if e.end_ms is None else min(e.end_ms, duration)
    return FaultEvent(id=e.id or f"F{i}", kind=e.kind, at_ms=e.at_ms, end_ms=end, node=node, state=e.state,
                      groups=groups, links=links, latency_factor=e.latency_factor,
                      extra_latency_ms=e.extra_latency_ms, extra_loss=e.extra_loss, origin=e.origin)


def load_fault_file(path: str | Path, scenario: Scenario) -> FaultPlan:
    """Read and check a fault file (``mimisim run --faults FILE``); any problem
    is a one-line :class:`ScenarioError`."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ScenarioError(f"cannot read the fault file: {e.strerror or e}", file=file) from None
    except UnicodeDecodeError as e:
        raise ScenarioError(f"not UTF-8 text ({e.reason} at byte {e.start})", file=file) from None
    return parse_fault_file(text, scenario, file)
