"""The resolved-scenario hash: what identifies a run's configuration."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mimisim.sim.scenario.model import Scenario

__all__ = ["resolved_hash"]


def _canonical(scenario: Scenario) -> str:
    return json.dumps(
        scenario.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def resolved_hash(scenario: Scenario) -> str:
    """sha256 (hex) of the resolved scenario as canonical JSON.

    Two files that differ only in spelling (``1s`` vs ``1000ms``, key
    order, a default written out or left implicit, ``alice/ClientA1`` vs the
    client URI) hash the same, because the hash is of the resolved model.
    """
    return hashlib.sha256(_canonical(scenario).encode("utf-8")).hexdigest()


# ====================================================================== sweeps

