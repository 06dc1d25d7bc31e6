"""Rate limiting for the ds profile ([DS] Rate-limiting and spam prevention).

"For DSRequests, the DS can rate-limit on a per group-level, per-DS level
(...), or even based on individual clients. For DSFanoutRequests, rate-limiting
or blocking can happen based on the identity of the sending DS, or (...) on a
per-group basis." Each of those is a token bucket here; a request is admitted
only if every bucket that applies to it has a token (then each gives one), and
otherwise answered ``rate_limited`` with the wait until all of them would
admit it (the Retry-After of docs/ds-choices.md C5).

Sans-IO: the time arrives as an argument (milliseconds of the owner's clock).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Rate:
    """``per_second`` tokens refilled per second, at most ``burst`` stored."""

    per_second: float
    burst: int = 1

    def __post_init__(self) -> None:
        if not (self.per_second > 0 and self.burst >= 1):
            raise ValueError(f"a rate needs per_second > 0 and burst >= 1, got {self}")


@dataclass
class TokenBuckets:
    """One bucket per key, all with the same rate; a new key starts full."""

    rate: Rate
    state: dict[Hashable, tuple[float, float]] = field(default_factory=dict)

    def _level(self, key: Hashable, now_ms: float) -> float:
        tokens, last = self.state.get(key, (float(self.rate.burst), now_ms))
        return min(float(self.rate.burst), tokens + max(0.0, now_ms - last) * self.rate.per_second / 1000.0)

    def wait_ms(self, key: Hashable, now_ms: float) -> int:
        """0 if a token is there now, else the whole milliseconds until one is."""
        missing = 1.0 - self._level(key, now_ms)
        return 0 if missing <= 1e-9 else math.ceil(missing * 1000.0 / self.rate.per_second - 1e-6)

    def take(self, key: Hashable, now_ms: float) -> None:
        self.state[key] = (self._level(key, now_ms) - 1.0, now_ms)


@dataclass
class Limiter:
    """Named bucket families ("client", "ds", "group", ...) with their rates."""

    rates: dict[str, Rate]
    buckets: dict[str, TokenBuckets] = field(default_factory=dict)

    def admit(self, keys: Sequence[tuple[str, Hashable]], now_ms: float) -> int:
        """0 and one token taken from each applicable bucket, or the Retry-After
        in ms (nothing taken). Families without a configured rate do not limit."""
        applicable = [(fam, k) for fam, k in keys if fam in self.rates]
        for fam, _ in applicable:
            self.buckets.setdefault(fam, TokenBuckets(self.rates[fam]))
        wait = max((self.buckets[fam].wait_ms(k, now_ms) for fam, k in applicable), default=0)
        if wait:
            return wait
        for fam, k in applicable:
            self.buckets[fam].take(k, now_ms)
        return 0
