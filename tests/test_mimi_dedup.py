"""Follower-side /notify deduplication ([P] Fanout Messages and Room Events)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mimisim.mimi.dedup import TIMESTAMP_BYTES, DedupSnapshot, DedupStrategy, NotifyDeduplicator
from tests.hypothesis_profiles import examples

FAST = settings(max_examples=examples(150), deadline=None)
HUB = "a.example"


def test_none_processes_everything():
    d = NotifyDeduplicator("none")
    assert not d.seen(b"x", 0, HUB) and not d.seen(b"x", 1, HUB)
    assert d.state_size() == (0, 0)


def test_body_hash_drops_byte_identical_retries():
    d = NotifyDeduplicator(DedupStrategy.body_hash, max_entries=10, max_age_ms=1000)
    assert not d.seen(b"body", 0, HUB)
    assert d.seen(b"body", 10, HUB)
    assert not d.seen(b"body2", 20, HUB)
    assert not d.seen(b"body", 20, "b.example")  # another hub's body is another request
    assert d.state_size() == (3, 3 * (32 + TIMESTAMP_BYTES))
    assert len(d) == 3


def test_body_hash_wrongly_drops_a_legitimate_repeat():
    """The risk the draft's NOTE names: two distinct notifies with the same bytes."""
    d = NotifyDeduplicator("body_hash")
    assert not d.seen(b"same payload", 0, HUB)
    assert d.seen(b"same payload", 5, HUB)  # a genuinely new notify, dropped
    t = NotifyDeduplicator("transaction_id")
    assert not t.seen("txn-1", 0, HUB) and not t.seen("txn-2", 5, HUB)  # distinct ids: both processed
    assert t.seen("txn-1", 6, HUB)


def test_transaction_id():
    d = NotifyDeduplicator("transaction_id", max_entries=4, max_age_ms=100)
    assert not d.seen(b"k1", 0, HUB)
    assert d.seen("k1", 1, HUB)  # str and bytes ids are the same id
    assert not d.seen("k1", 1, "b.example")
    assert not d.seen("", 2, HUB) and not d.seen("", 3, HUB)  # no id: always processed
    n, size = d.state_size()
    key = 2 + len(HUB) + len(b"k1")  # origin length, origin, id
    assert n == 2 and size == 2 * (key + TIMESTAMP_BYTES)
    assert d.key_of("", HUB) is None and d.key_of("x", HUB) is not None


def test_window_bounded_by_count():
    d = NotifyDeduplicator("body_hash", max_entries=2, max_age_ms=10**9)
    for b in (b"1", b"2", b"3"):
        assert not d.seen(b, 0, HUB)
    assert d.state_size()[0] == 2
    assert not d.seen(b"1", 1, HUB)  # pushed out of the window: processed again
    assert d.seen(b"3", 1, HUB)


def test_window_bounded_by_age():
    d = NotifyDeduplicator("body_hash", max_entries=100, max_age_ms=50)
    assert not d.seen(b"1", 0, HUB)
    assert d.seen(b"1", 50, HUB)  # still inside: age == max_age
    assert not d.seen(b"1", 51, HUB)  # expired, processed again, and re-recorded at 51
    assert d.seen(b"1", 100, HUB)
    assert not d.seen(b"2", 200, HUB)
    assert d.state_size()[0] == 1  # b"1" (seen at 51) expired


def test_duplicates_do_not_refresh_the_entry():
    d = NotifyDeduplicator("body_hash", max_entries=100, max_age_ms=50)
    assert not d.seen(b"1", 0, HUB)
    assert d.seen(b"1", 40, HUB)
    assert not d.seen(b"1", 60, HUB)  # 60 ms after the first delivery


def test_zero_window_never_drops():
    d = NotifyDeduplicator("body_hash", max_entries=0)
    assert not d.seen(b"1", 0, HUB) and not d.seen(b"1", 0, HUB)
    assert d.state_size() == (0, 0)


def test_bad_settings():
    with pytest.raises(ValueError):
        NotifyDeduplicator("body_hash", max_entries=-1)
    with pytest.raises(ValueError):
        NotifyDeduplicator("sha1")


def test_snapshot_restore_and_volatile_restart():
    d = NotifyDeduplicator("body_hash", max_entries=3, max_age_ms=100)
    for i, b in enumerate((b"1", b"2", b"3", b"4")):
        d.seen(b, i, HUB)
    snap = d.snapshot()
    assert isinstance(snap, DedupSnapshot) and len(snap.entries) == 3
    durable = NotifyDeduplicator.restore(snap)
    assert durable.state_size() == d.state_size() and durable.snapshot() == snap
    assert durable.seen(b"4", 10, HUB) and not durable.seen(b"1", 10, HUB)
    d.seen(b"5", 11, HUB)
    assert snap.entries != d.snapshot().entries  # the snapshot is a copy
    d.clear()
    assert d.state_size() == (0, 0) and not d.seen(b"4", 12, HUB)  # volatile: retries processed again
    assert "body_hash" in repr(d)


@st.composite
def delivery_patterns(draw):
    """Distinct bodies, each delivered 1-4 times, interleaved, at non-decreasing times."""
    n = draw(st.integers(1, 12))
    bodies = [f"notify {i}".encode() for i in range(n)]
    copies = [b for b in bodies for _ in range(draw(st.integers(1, 4)))]
    order = draw(st.permutations(copies))
    gaps = draw(st.lists(st.integers(0, 50), min_size=len(order), max_size=len(order)))
    return bodies, order, gaps


@FAST
@given(delivery_patterns(), st.sampled_from(["body_hash", "transaction_id"]))
def test_window_as_large_as_the_distinct_bodies_processes_each_once(pattern, strategy):
    bodies, order, gaps = pattern
    d = NotifyDeduplicator(strategy, max_entries=len(bodies), max_age_ms=10**9)
    processed: list[bytes] = []
    now = 0
    for body, gap in zip(order, gaps, strict=True):
        now += gap
        if not d.seen(body, now, HUB):
            processed.append(body)
    assert sorted(processed) == sorted(bodies)
    assert d.state_size()[0] == len(bodies)


@FAST
@given(delivery_patterns())
def test_none_processes_every_copy_and_dedup_never_processes_more(pattern):
    bodies, order, gaps = pattern
    none = NotifyDeduplicator("none")
    small = NotifyDeduplicator("body_hash", max_entries=2, max_age_ms=30)
    n_none = n_small = 0
    now = 0
    for body, gap in zip(order, gaps, strict=True):
        now += gap
        n_none += not none.seen(body, now, HUB)
        n_small += not small.seen(body, now, HUB)
        assert small.state_size()[0] <= 2
    assert n_none == len(order)
    assert len(bodies) <= n_small <= len(order)


@FAST
@given(delivery_patterns())
def test_restore_is_indistinguishable(pattern):
    _, order, gaps = pattern
    a = NotifyDeduplicator("body_hash", max_entries=3, max_age_ms=40)
    half = len(order) // 2
    now = 0
    for body, gap in zip(order[:half], gaps[:half], strict=True):
        now += gap
        a.seen(body, now, HUB)
    b = NotifyDeduplicator.restore(a.snapshot())
    for body, gap in zip(order[half:], gaps[half:], strict=True):
        now += gap
        assert a.seen(body, now, HUB) == b.seen(body, now, HUB)
    assert a.snapshot() == b.snapshot()
