"""A nondeterminism bug, put in for tests only: the workload orders the
online members of a room by a hash of their URIs salted with
``PYTHONHASHSEED``, so the member it picks (and so the whole trace) depends
on that variable, as iterating a set of strings that reaches the trace does
in the wild.

Why not ``hash()`` itself: the test process's own hash seed is random (it is
fixed when the interpreter starts, before the test sets the variable), and
with rooms of a few members the random order matched the re-run's often
enough to make the test flaky (a 1 in n! chance per room). A CRC of the
variable's value plus the URI changes between the two processes exactly as
the check changes the variable (its value + 1), and the same way every time.

``patch(monkeypatch)`` applies it in this process; run as a program
(``python -m tests.nondeterminism``) it applies it and then acts as
``python -m mimisim.check --digests``, the fresh process of the
determinism re-run."""

from __future__ import annotations

import os
import runpy
import sys
import zlib
from typing import Any

from mimisim.sim import workload


def _patch(setattr_: Any) -> None:
    if not hasattr(workload.Workload, "online_members"):
        raise AssertionError("patch target Workload.online_members is gone: move the nondeterminism bug")
    orig = workload.Workload.online_members

    def online_members(self: Any, room: str) -> list[Any]:
        salt = os.environ.get("PYTHONHASHSEED", "")
        return sorted(orig(self, room), key=lambda node: zlib.crc32(f"{salt}:{node.uri}".encode()))

    setattr_(workload.Workload, "online_members", online_members)


def patch(monkeypatch: Any) -> None:
    _patch(monkeypatch.setattr)


if __name__ == "__main__":
    _patch(setattr)
    sys.argv = ["mimisim.check", "--digests"]
    runpy.run_module("mimisim.check", run_name="__main__")
