"""The five studies (shared/DESIGN.md, "The studies") and the generic one, by name.

Each study module exposes the same small interface, so the sweep and plot
commands need no per-study code:

- ``rows(trace, scenario) -> list[dict]``: the run's numbers (one row, or
  one per room for fanout);
- ``GROUP_KEYS``: row columns that split a grid point further (fanout: the
  room's members and providers);
- ``POOLED``: proportions to pool over the runs of a point with a Wilson
  interval, ``metric -> (successes column, trials column)``;
- ``FIGURES``: ``(metric, y label with units, model column or None)``.
"""

from __future__ import annotations

from types import ModuleType

from mimisim.analysis import conflicts, dedup, failover, fanout, generic, leave, mlscost, profiles

STUDIES: dict[str, ModuleType] = {
    "conflicts": conflicts,
    "dedup": dedup,
    "leave": leave,
    "failover": failover,
    "fanout": fanout,
    "mlscost": mlscost,
    "generic": generic,
    "profiles": profiles,
}

#: The study scenarios in scenarios/ and the study each one runs.
SCENARIO_STUDY: dict[str, str] = {
    "epoch-conflicts": "conflicts",
    "notify-dedup": "dedup",
    "leave-latency": "leave",
    "failover": "failover",
    "fanout": "fanout",
    "mimi-vs-ds": "profiles",
    "mls-cost": "mlscost",
}


def study_for(scenario_name: str, explicit: str | None = None) -> str:
    """The study a scenario runs: ``explicit`` if given, else by the scenario's
    name (``epoch-conflicts`` -> conflicts, a name containing a study's name
    -> that study), else ``generic`` (latency, loss, duplicates, retries,
    commits, HTTP exchanges: metrics every run has)."""
    if explicit:
        if explicit not in STUDIES:
            raise ValueError(f"unknown study {explicit!r} (studies: {', '.join(STUDIES)})")
        return explicit
    if scenario_name in SCENARIO_STUDY:
        return SCENARIO_STUDY[scenario_name]
    for scen, study in SCENARIO_STUDY.items():
        if scen in scenario_name or study in scenario_name:
            return study
    return "generic"
