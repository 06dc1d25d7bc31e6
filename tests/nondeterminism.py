"""A nondeterminism bug, put in for tests only: the workload orders the
online members of a room by ``hash()`` of their URIs, so the member it
picks (and so the whole trace) depends on ``PYTHONHASHSEED``. Iterating a
set of strings that reaches the trace is the same bug in the wild.

``patch(monkeypatch)`` applies it in this process; run as a program
(``python -m tests.nondeterminism``) it applies it and then acts as
``python -m mimisim.check --digests``, the fresh process of the
determinism re-run."""

from __future__ import annotations

import runpy
import sys
from typing import Any

from mimisim.sim import workload


def _patch(setattr_: Any) -> None:
    if not hasattr(workload.Workload, "online_members"):
        raise AssertionError("patch target Workload.online_members is gone: move the nondeterminism bug")
    orig = workload.Workload.online_members

    def online_members(self: Any, room: str) -> list[Any]:
        return sorted(orig(self, room), key=lambda node: hash(node.uri))

    setattr_(workload.Workload, "online_members", online_members)


def patch(monkeypatch: Any) -> None:
    _patch(monkeypatch.setattr)


if __name__ == "__main__":
    _patch(setattr)
    sys.argv = ["mimisim.check", "--digests"]
    runpy.run_module("mimisim.check", run_name="__main__")
