"""The switch for sharing pure work between simulated members (issue 14).

Simulated members of a room live in one process and repeat the same pure
computations on the same inputs: verifying the same signature over the same
bytes, for instance. With sharing on, such results are memoised by their
exact inputs in bounded caches, so the work is done once per process; each
member still takes its own decisions from the result, and the metered
operation counts (:func:`mimisim.mls.crypto.metered`) still count every
logical operation, so the providers' cost model and every trace are the same
with sharing on or off (``tests/test_sharing.py`` proves it on the scenarios).

Default: on, unless the environment variable ``MIMISIM_SHARING`` is ``0``,
``off`` or ``false`` when this module is first imported. Set :data:`enabled`
(or use :func:`sharing`) to change it at run time; this module reads no clock
and draws nothing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["enabled", "sharing", "is_enabled"]

#: Whether pure results are shared (see the module docstring).
enabled: bool = os.environ.get("MIMISIM_SHARING", "on").strip().lower() not in ("0", "off", "false", "no")


def is_enabled() -> bool:
    return enabled


@contextlib.contextmanager
def sharing(on: bool) -> Iterator[None]:
    """Run a block with sharing switched ``on`` or off, then restore the previous setting."""
    global enabled
    before = enabled
    enabled = on
    try:
        yield
    finally:
        enabled = before
