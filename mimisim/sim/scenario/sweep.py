"""Sweeps: a grid of overrides times seeds, each point a validated scenario."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mimisim.sim.scenario.errors import ScenarioError
from mimisim.sim.scenario.keypath import apply_override, format_key_path
from mimisim.sim.scenario.model import Scenario
from mimisim.sim.scenario.yamlload import _context, _convert, _locate, _validate

__all__ = ["expand_sweep"]


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
            context = _context(base)
            try:
                apply_override(data, key, value)
                Scenario.model_validate(data, context=context)
                continue
            except (ValidationError, ScenarioError) as e:
                inner = _convert(e, file, data, None, generated=context.get("generated"))
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
