"""Follower-side deduplication of the hub's ``/notify`` requests.

[P] Fanout Messages and Room Events: the hub retries a ``/notify`` until it
gets 201; "If a follower server receives a duplicate request to the
``/notify`` endpoint, in the sense of a request from the same hub server with
the same request body as a previous ``/notify`` request, then the follower
server MUST return a 201 Accepted response. In such cases, the follower
server SHOULD process only the first request". The NOTE that follows
suggests "a rolling list of hashes of recent messages", warns that "it is
valid for the same hub server to send the same payload multiple times", and
offers "an explicit transaction ID" as the alternative.

:class:`NotifyDeduplicator` implements the three strategies the notify-dedup
study compares; the follower answers 201 whatever :meth:`~NotifyDeduplicator.seen`
says, and processes the body only when it returns False.

* ``none`` -- every request is processed: duplicates reach clients.
* ``body_hash`` -- the draft's criterion: SHA-256 of (hub domain, body),
  byte-exact, remembered in a rolling window bounded both by entry count
  and by age in ms. Risks: a retry that arrives after its entry left the
  window (too old, or pushed out by newer bodies) is processed twice; and a
  **legitimate repeat is wrongly dropped** when the hub sends two genuinely
  distinct notifies whose bodies are byte-identical within the window (the
  draft's "accidental collisions"). With MLS payloads this needs the same
  ciphertext twice, so it is rare, but it is exactly what the strategy
  cannot tell apart from a retry.
* ``transaction_id`` -- the hub gives each logical notify an explicit id,
  carried in an HTTP request header (mimisim uses ``Idempotency-Key``, see
  :class:`~mimisim.mimi.transport.MimiRequest.txn_id`) and kept the same on
  every retry; the follower remembers ids (same window bounds) instead of
  bodies. Two distinct notifies with identical bodies get distinct ids and
  are both processed. A request without an id (empty) is always processed:
  there is nothing to match it with, and dropping it could lose a message.

Window memory (:meth:`~NotifyDeduplicator.state_size`) counts what a real
follower must store per entry: the key (32-byte digest or the id's bytes)
plus an 8-byte timestamp.

Durability: :meth:`~NotifyDeduplicator.snapshot` and
:meth:`~NotifyDeduplicator.restore` model a follower whose dedup state
survives a crash; a follower with volatile state restarts with a fresh,
empty deduplicator (:meth:`~NotifyDeduplicator.clear`) and so processes
retries of anything it had already seen.

Deterministic: insertion-ordered dicts only, no sets are iterated, no clock
(``now_ms`` is an argument), no randomness.
"""

from __future__ import annotations

import enum
import hashlib
from collections import OrderedDict
from dataclasses import dataclass

#: Bytes a real implementation stores per entry besides the key (a uint64 ms timestamp).
TIMESTAMP_BYTES = 8


class DedupStrategy(enum.Enum):
    """How a follower recognises a retried ``/notify``."""

    none = "none"
    body_hash = "body_hash"
    transaction_id = "transaction_id"


@dataclass(frozen=True)
class DedupSnapshot:
    """The durable state of a :class:`NotifyDeduplicator`: its settings and
    its window, oldest first, as (key, first-seen ms) pairs."""

    strategy: DedupStrategy
    max_entries: int
    max_age_ms: int
    entries: tuple[tuple[bytes, int], ...]


class NotifyDeduplicator:
    """Remembers recent ``/notify`` requests so a retry is processed once.

    ``strategy`` is a :class:`DedupStrategy` or its name. The window holds
    at most ``max_entries`` keys and forgets a key ``max_age_ms`` after it
    was first seen (an entry is kept while ``now_ms - first_seen <=
    max_age_ms``). A duplicate does not refresh its entry: the window
    measures the age of the first delivery, which bounds how long a hub may
    keep retrying.
    """

    def __init__(
        self,
        strategy: DedupStrategy | str = DedupStrategy.body_hash,
        max_entries: int = 4096,
        max_age_ms: int = 600_000,
    ) -> None:
        self.strategy = DedupStrategy(strategy)
        if max_entries < 0 or max_age_ms < 0:
            raise ValueError("max_entries and max_age_ms must be >= 0")
        self.max_entries = int(max_entries)
        self.max_age_ms = int(max_age_ms)
        self._window: OrderedDict[bytes, int] = OrderedDict()
        self._bytes = 0

    # ------------------------------------------------------------ keys

    def key_of(self, body_or_id: bytes | str, origin: str = "") -> bytes | None:
        """The window key of a request, or None if it is never deduplicated.

        ``body_hash``: SHA-256 over the origin (the hub's domain) and the
        body, so two hubs never collide. ``transaction_id``: the origin and
        the id's bytes; an empty id is None. ``none``: always None.
        """
        data = body_or_id.encode() if isinstance(body_or_id, str) else bytes(body_or_id)
        o = origin.encode()
        if self.strategy is DedupStrategy.none:
            return None
        if self.strategy is DedupStrategy.body_hash:
            h = hashlib.sha256()
            h.update(len(o).to_bytes(2, "big") + o)
            h.update(data)
            return h.digest()
        if not data:
            return None
        return len(o).to_bytes(2, "big") + o + data

    # ------------------------------------------------------------ the question

    def seen(self, body_or_id: bytes | str, now_ms: int, origin: str = "") -> bool:
        """True if this request is a duplicate (answer 201, do not process);
        False if it is new -- it is then recorded.

        ``body_or_id`` is the request body (``body_hash``) or the
        transaction id (``transaction_id``); ``origin`` the hub's domain
        ([P] "from the same hub server").
        """
        self._expire(now_ms)
        key = self.key_of(body_or_id, origin)
        if key is None:
            return False
        if key in self._window:
            return True
        if self.max_entries == 0:
            return False
        self._window[key] = int(now_ms)
        self._bytes += len(key) + TIMESTAMP_BYTES
        while len(self._window) > self.max_entries:
            old, _ = self._window.popitem(last=False)
            self._bytes -= len(old) + TIMESTAMP_BYTES
        return False

    def _expire(self, now_ms: int) -> None:
        """Drop entries older than ``max_age_ms``. First-seen times are
        non-decreasing in insertion order (time only moves forward in a
        run), so the oldest are at the front."""
        horizon = int(now_ms) - self.max_age_ms
        while self._window:
            key, t = next(iter(self._window.items()))
            if t >= horizon:
                break
            self._window.popitem(last=False)
            self._bytes -= len(key) + TIMESTAMP_BYTES

    # ------------------------------------------------------------ for the studies

    def state_size(self) -> tuple[int, int]:
        """(entries, bytes) held in the window: the follower's memory cost."""
        return len(self._window), self._bytes

    def __len__(self) -> int:
        return len(self._window)

    # ------------------------------------------------------------ durability

    def snapshot(self) -> DedupSnapshot:
        """The durable state (immutable; a follower with durable state
        stores it and :meth:`restore`\\ s it after a crash)."""
        return DedupSnapshot(self.strategy, self.max_entries, self.max_age_ms, tuple(self._window.items()))

    @classmethod
    def restore(cls, snapshot: DedupSnapshot) -> NotifyDeduplicator:
        """A deduplicator in the state :meth:`snapshot` recorded."""
        d = cls(snapshot.strategy, snapshot.max_entries, snapshot.max_age_ms)
        for key, t in snapshot.entries:
            d._window[bytes(key)] = int(t)
            d._bytes += len(key) + TIMESTAMP_BYTES
        return d

    def clear(self) -> None:
        """Forget everything: a restart with volatile state."""
        self._window.clear()
        self._bytes = 0

    def __repr__(self) -> str:
        n, b = self.state_size()
        return (
            f"NotifyDeduplicator({self.strategy.value}, max_entries={self.max_entries}, "
            f"max_age_ms={self.max_age_ms}, entries={n}, bytes={b})"
        )
