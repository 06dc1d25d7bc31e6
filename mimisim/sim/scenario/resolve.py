"""The two steps around the cross-checks that change a scenario.

A validated scenario is fully resolved: the simulator and the run's manifest
see no implicit default and no client written as ``user/device``. Two
steps do that, kept apart from the checks (:mod:`.checks`), which only read:

1. :func:`fill_defaults`, before the checks: defaults that depend on other
   sections (the access profile ``default`` exists, a room's pending-proposal
   strategy comes from ``protocol.pending_proposals``, a room's creator is
   the first joined client of its first participant, a crash's ``state`` is
   its provider's). The checks then see the scenario as it will run.
2. :func:`resolve_references`, after the checks passed: every client
   reference becomes the full client URI
   (``mimi://a.example/d/alice/ClientA1``). It runs after the checks so
   that an error names the client as the file wrote it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mimisim.mimi.identity import client_uri
from mimisim.sim.scenario.faults import CrashFault, OfflineFault, PartitionFault
from mimisim.sim.scenario.network import AccessProfile

if TYPE_CHECKING:
    from mimisim.sim.scenario.model import Scenario

__all__ = ["fill_defaults", "resolve_references"]


def fill_defaults(sc: Scenario) -> None:
    """Fill in the defaults that depend on other sections (in place)."""
    if "default" not in sc.network.access:
        sc.network.access["default"] = AccessProfile()
    for r in sc.rooms.values():
        if r.policy.pending_proposals is None:
            r.policy.pending_proposals = sc.protocol.pending_proposals.model_copy()
        if r.participants and r.created_by is None:
            first = next(iter(r.participants))
            user = sc.users.get(first)
            joined = [d for d, c in user.clients.items() if c.joined] if user is not None else []
            if user is not None and joined:
                r.created_by = client_uri(user.provider, first, joined[0])
    for f in sc.faults.schedule:
        if isinstance(f, CrashFault) and f.state is None and f.node in sc.providers:
            f.state = sc.providers[f.node].state


def _is_provider_name(sc: Scenario, node: str) -> bool:
    return node in sc.providers or ("." in node and "/" not in node and not node.startswith("mimi://"))


def resolve_references(sc: Scenario) -> None:
    """Rewrite every client reference as its URI (in place); the checks have
    made sure that each one names a client."""
    resolve = sc._resolve_client
    for r in sc.rooms.values():
        if r.participants and r.created_by is not None:
            r.created_by = resolve(r.created_by)
    for step in sc.workload.script:
        step.client = resolve(step.client)
    for a in sc.adversaries.clients:
        a.client = resolve(a.client)
    for s in sc.adversaries.compromises:
        s.client = resolve(s.client)
    for f in sc.faults.schedule:
        if isinstance(f, PartitionFault):
            for group in f.groups:
                for j, node in enumerate(group):
                    if not _is_provider_name(sc, node):
                        group[j] = resolve(node)
        elif isinstance(f, OfflineFault):
            f.client = resolve(f.client)
    rf = sc.faults.random
    if rf is not None and rf.offline is not None and rf.offline.clients is not None:
        rf.offline.clients = [resolve(c) for c in rf.offline.clients]
