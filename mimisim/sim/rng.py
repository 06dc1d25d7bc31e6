"""Named random streams derived from one root seed.

Every component of a run (a link direction, a workload generator, a client's
key material) draws from its own stream, derived from the run's root seed
and the component's *name*, so adding a component never shifts the draws of
the others, and a run replays exactly in any process (no dependence on
``PYTHONHASHSEED`` or creation order).
"""

from __future__ import annotations

import hashlib

import numpy as np

from mimisim.mls.crypto import DeterministicRandom

#: The largest root seed. The protocol cores' randomness takes the seed as 8
#: unsigned bytes (0..2**64-1), but seeds also land in int64 table columns
#: (sweep runs, check reports, Parquet), so the range is that of int64.
MAX_SEED = 2**63 - 1


def check_seed(value: object, what: str = "seed") -> int:
    """``value`` if it is a valid root seed (an int in 0..:data:`MAX_SEED`), else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise ValueError(f"{what} must be an integer in 0..{MAX_SEED} (2**63-1), got {value!r}")
    return value


def _name_words(name: str) -> list[int]:
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return [int.from_bytes(digest[i : i + 4], "big") for i in range(0, 32, 4)]


def stream(root_seed: int, name: str) -> np.random.Generator:
    """A numpy Generator for the component ``name`` of run ``root_seed``."""
    ss = np.random.SeedSequence([root_seed & 0xFFFFFFFF, root_seed >> 32, *_name_words(name)])
    return np.random.Generator(np.random.PCG64(ss))


def protocol_random(root_seed: int, name: str) -> DeterministicRandom:
    """The injected randomness for a protocol core (keys, nonces, salts)."""
    return DeterministicRandom(root_seed.to_bytes(8, "big", signed=False), "mimisim/" + name)
