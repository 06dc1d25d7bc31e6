"""Key paths: ``providers[a.example].state``, ``faults.schedule.0.at``.

The one syntax of ``--set`` overrides, sweep grids and error messages:
:func:`format_key_path` writes what :func:`parse_key_path` reads, so a
path from an error message can be pasted into ``--set``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import yaml

from mimisim.sim.scenario.errors import ScenarioError, _describe

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

