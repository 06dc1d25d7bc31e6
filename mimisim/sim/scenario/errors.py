"""Scenario errors: one line, ``<file>:<line>: <key.path>: <message>``.

:class:`ScenarioError` is what every part of the package raises for a bad
scenario (YAML syntax, schema, cross-checks, overrides, generators), so the
CLI needs one ``except``; :func:`_message` rewrites pydantic's error records
into the wording of the rest of the package.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic_core import ErrorDetails


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


_INPUT_TYPES = (str, int, float, bool, dict, list)


def _message(err: ErrorDetails | dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
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

