"""mimisim: a deterministic discrete-event simulator of the IETF MIMI protocol.

``mimisim.run(scenario, seed=..., overrides=[...])`` runs a scenario and
returns its trace and tables as pandas DataFrames; ``mimisim.load(folder)``
reads a results folder back. Both live in :mod:`mimisim.api`, imported on
first use so that ``import mimisim`` stays cheap for the protocol core.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load", "run"]


def __getattr__(name: str) -> Any:
    if name in ("run", "load", "RunResult"):
        from mimisim import api

        return getattr(api, name)
    raise AttributeError(f"module 'mimisim' has no attribute {name!r}")
