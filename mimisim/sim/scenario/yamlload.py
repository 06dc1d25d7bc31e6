"""YAML with line numbers, and validation errors located in the file.

The loader keeps the YAML node tree beside the data: :func:`_locate` walks
an error's key path down both to find the line of the key as written, so
that every problem becomes ``<file>:<line>: <key.path>: <message>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mimisim.sim.scenario.errors import ScenarioError, _message
from mimisim.sim.scenario.generate import map_generated
from mimisim.sim.scenario.keypath import format_key_path
from mimisim.sim.scenario.model import Scenario


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


def _convert(
    exc: ValidationError | ScenarioError,
    file: str,
    data: Any,
    node: yaml.Node | None,
    overrides: Sequence[tuple[tuple[Any, ...], str]] = (),
    prefix: tuple[Any, ...] = (),
    generated: Mapping[tuple[Any, ...], tuple[Any, ...]] | None = None,
) -> ScenarioError:
    """A validation failure as a located, one-line ScenarioError (the first by line).

    ``generated`` (from the validation context, :mod:`.generate`) moves a
    problem inside a generated user or room to its generator's line.
    """
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
        if generated:
            loc, msg = map_generated(loc, msg, generated)
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


def _validate(
    data: Any,
    file: str,
    node: yaml.Node | None,
    base_dir: Path,
    overrides: Sequence[tuple[tuple[Any, ...], str]] = (),
) -> Scenario:
    context = _context(base_dir)
    try:
        return Scenario.model_validate(data, context=context)
    except (ValidationError, ScenarioError) as e:
        raise _convert(e, file, data, node, overrides, generated=context.get("generated")) from None

