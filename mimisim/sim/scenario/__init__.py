"""Scenario files: the schema, the loader, overrides, sweeps (a package).

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

The package, by what each module holds (``from mimisim.sim.scenario import
X`` works for every public name of every module):

- :mod:`.errors` -- :class:`ScenarioError` and the wording of pydantic's errors;
- :mod:`.keypath` -- key paths and ``--set`` overrides;
- :mod:`.fields` -- unit types (:data:`Duration`, :data:`Rate`, :data:`Size`,
  :data:`Bandwidth`), probabilities, names, domains;
- :mod:`.base` -- the base model (unknown keys, ``null`` means default);
- :mod:`.distributions`, :mod:`.network`, :mod:`.parties`, :mod:`.workload`,
  :mod:`.faults`, :mod:`.protocol`, :mod:`.model` -- the schema, section by section;
- :mod:`.generate` -- ``generate:`` blocks for many users and rooms, expanded
  before validation;
- :mod:`.resolve` -- filling in cross-section defaults (before the checks) and
  client references as URIs (after them);
- :mod:`.checks` -- the cross-field checks, one function per section;
- :mod:`.yamlload`, :mod:`.load` -- YAML with line numbers, located errors, loading;
- :mod:`.sweep`, :mod:`.hashing` -- sweep expansion and the resolved-scenario hash.
"""

from __future__ import annotations

from mimisim.sim.scenario.distributions import (
    Bernoulli,
    Constant,
    Distribution,
    Empirical,
    Exponential,
    GilbertElliott,
    LogNormal,
    Loss,
    NoLoss,
    Pareto,
    TruncNormal,
    Uniform,
    dist_to_dict,
)
from mimisim.sim.scenario.errors import ScenarioError
from mimisim.sim.scenario.faults import (
    Adversaries,
    ClientAdversary,
    ClientAttack,
    CrashFault,
    DegradeFault,
    FailoverFault,
    Fault,
    Faults,
    FollowerAdversary,
    FollowerAttack,
    MalformedAdversary,
    OfflineFault,
    PartitionFault,
    RandomCrash,
    RandomDegrade,
    RandomFailover,
    RandomFaults,
    RandomOffline,
    RandomPartition,
    RestartFault,
    StateCompromise,
)
from mimisim.sim.scenario.fields import (
    Bandwidth,
    Capability,
    Domain,
    Duration,
    Name,
    PositiveDuration,
    Probability,
    Rate,
    Size,
)
from mimisim.sim.scenario.hashing import resolved_hash
from mimisim.sim.scenario.keypath import apply_override, format_key_path, parse_key_path
from mimisim.sim.scenario.load import json_schema, load_scenario, load_scenario_text
from mimisim.sim.scenario.model import ClientInfo, Scenario
from mimisim.sim.scenario.network import (
    AccessProfile,
    LinkOverride,
    LinkSpec,
    NetworkSpec,
    Outages,
    parse_link_key,
)
from mimisim.sim.scenario.parties import (
    DEFAULT_ROLES,
    ClientSpec,
    CostModel,
    OfflineWindow,
    PendingProposals,
    ProviderSpec,
    RoleSpec,
    RoomPolicy,
    RoomSpec,
    Standby,
    UserSpec,
)
from mimisim.sim.scenario.protocol import Dedup, Outputs, Protocol, RequestPolicy, RetryPolicy, Sweep
from mimisim.sim.scenario.sweep import expand_sweep
from mimisim.sim.scenario.workload import (
    Backoff,
    CommitActivity,
    DeviceActivity,
    MembershipActivity,
    MessageActivity,
    ScriptAction,
    ScriptStep,
    Workload,
    WrongEpochRetry,
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
    "parse_link_key",
    "dist_to_dict",
    "DEFAULT_ROLES",
    # field types
    "Bandwidth", "Capability", "Domain", "Duration", "Name", "PositiveDuration", "Probability", "Rate", "Size",
    # schema models
    "AccessProfile", "Adversaries", "Backoff", "Bernoulli", "ClientAdversary", "ClientAttack", "ClientSpec",
    "CommitActivity", "Constant", "CostModel", "CrashFault", "Dedup", "DegradeFault", "DeviceActivity",
    "Distribution", "Empirical", "Exponential", "FailoverFault", "Fault", "Faults", "FollowerAdversary",
    "FollowerAttack", "GilbertElliott", "LinkOverride", "LinkSpec", "LogNormal", "Loss", "MalformedAdversary", "StateCompromise",
    "MembershipActivity", "MessageActivity", "NetworkSpec", "NoLoss", "OfflineFault", "OfflineWindow",
    "Outages", "Outputs", "Pareto", "PartitionFault", "PendingProposals", "Protocol", "ProviderSpec",
    "RandomCrash", "RandomDegrade", "RandomFailover", "RandomFaults", "RandomOffline", "RandomPartition",
    "RequestPolicy", "RestartFault", "RetryPolicy", "RoleSpec", "RoomPolicy", "RoomSpec", "ScriptAction",
    "ScriptStep", "Standby", "Sweep", "TruncNormal", "Uniform", "UserSpec", "Workload", "WrongEpochRetry",
]  # fmt: skip
