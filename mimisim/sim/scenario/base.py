"""The base of every scenario model: unknown keys are errors with a guess,
``null`` means the default, attribute docstrings are the schema's descriptions."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, GetJsonSchemaHandler, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from mimisim.sim.units import format_duration


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

