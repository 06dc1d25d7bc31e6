"""Loading scenario files: read, override, validate, resolve; and the JSON Schema."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic.json_schema import models_json_schema

from mimisim.sim.scenario.errors import ScenarioError, _describe
from mimisim.sim.scenario.generate import GENERATE, RoomGenerator, UserGenerator
from mimisim.sim.scenario.keypath import _parse_override, apply_override
from mimisim.sim.scenario.model import Scenario
from mimisim.sim.scenario.sweep import _check_grid
from mimisim.sim.scenario.yamlload import _load_yaml, _validate

__all__ = ["json_schema", "load_scenario", "load_scenario_text"]


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
    _add_generators(schema)
    return schema


def _add_generators(schema: dict[str, Any]) -> None:
    """The ``generate`` key of ``users`` and ``rooms`` (:mod:`.generate`).

    It is expanded before validation, so the models do not declare it; the
    schema does, and takes it out of the names the entries may have.
    """
    _, defs = models_json_schema(
        [(UserGenerator, "validation"), (RoomGenerator, "validation")], ref_template="#/$defs/{model}"
    )
    schema["$defs"].update(defs.get("$defs", {}))
    for section, model in (("users", UserGenerator), ("rooms", RoomGenerator)):
        prop = schema["properties"][section]
        (pattern, entry), = prop["patternProperties"].items()
        prop["patternProperties"] = {f"^(?!{GENERATE}$)" + pattern.lstrip("^"): entry}
        ref = {"$ref": f"#/$defs/{model.__name__}"}
        prop["properties"] = {
            GENERATE: {
                "anyOf": [ref, {"type": "array", "items": ref, "minItems": 1}],
                "description": f"Generated {section}: one generator or a list of them, expanded in place "
                f"before validation (the name '{GENERATE}' is reserved).",
            }
        }

