"""Checks of command-line arguments, shared by every ``mimisim`` command.

Why one module: the commands grew one by one (run, check, sweep, plot) and
each parsed ``--seed``, ``--workers`` and ``--out`` its own way, so a bad
value surfaced as a Python traceback from deep inside (an ``OverflowError``
from the random streams, a ``ValueError`` from the process pool, a
``NotADirectoryError`` after the whole run). Here each argument is checked
once, before any work, and a bad one becomes a :class:`UserError`: one line,
exit status 2 (shared/DESIGN.md).

The argparse ``type=`` functions raise ``argparse.ArgumentTypeError``, which
the parser turns into ``mimisim <command>: argument --seed: ...``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from mimisim.sim.rng import MAX_SEED, check_seed

__all__ = ["MAX_SEED", "UserError", "check_seed", "count", "nonneg_int", "seed", "workers", "writable_dir",
           "writable_file"]


class UserError(Exception):
    """Bad input from the user: the CLI prints ``str(e)`` (one line) and exits 2."""


def _int(text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def seed(text: str) -> int:
    """``--seed``/``--start``: an integer in 0..2**63-1."""
    n = _int(text)
    try:
        return check_seed(n)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def count(text: str) -> int:
    """A count that must be at least 1 (``--seeds``, ``--shrink-runs``)."""
    n = _int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def nonneg_int(text: str) -> int:
    n = _int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {n}")
    return n


def workers(text: str) -> int | None:
    """``--workers``: N >= 1 local processes, or 0 for one per CPU (returned as None)."""
    n = _int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (one per CPU) or a number of processes, got {n}")
    return None if n == 0 else n


def _first_existing(p: Path) -> Path:
    p = p.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def writable_dir(path: str | Path, what: str) -> Path:
    """A folder we can create (or write into): not under a file, writable.
    Checked before a run, so a bad ``--out`` fails in a second rather than
    after the whole run."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"{what} {path}: is a file, not a folder")
    base = _first_existing(p)
    if not base.is_dir():
        raise UserError(f"{what} {path}: {base} is a file, so no folder can be made under it")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: {base} is not writable")
    # os.access says yes to root for /proc and /sys: make (and remove) a probe folder there
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".mimisim-probe-", dir=base))
    except OSError as e:
        raise UserError(f"{what} {path}: no folder can be made in {base} ({e.strerror or e})") from None
    return p


def writable_file(path: str | Path, what: str) -> Path:
    """A file we can write: not a folder, its folder creatable and writable."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{what} {path}: is a folder, not a file")
    try:
        writable_dir(p.parent, what)
    except UserError as e:
        raise UserError(f"{what} {path}: cannot write there ({str(e).split(': ', 1)[1]})") from None
    return p
