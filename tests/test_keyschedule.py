"""Key schedule, PSK secret and secret tree against the official vectors
(psk_secret.json, key-schedule.json, secret-tree.json) plus secret-tree
properties: out-of-order equals in-order, replays raise, keys go out once."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mimisim.mls.crypto import get_suite
from mimisim.mls.keyschedule import (
    EpochSecrets,
    SecretTree,
    SecretTreeError,
    compute_psk_secret,
    derive_epoch_secrets,
    derive_joiner_secret,
    mls_exporter,
    sender_data_key_nonce,
    welcome_key_nonce,
)
from mimisim.mls.structs import PreSharedKeyID, PSKLabel, ResumptionPSKUsage
from mimisim.mls.vectors_basic import check_key_schedule, check_psk_secret, check_secret_tree
from tests.hypothesis_profiles import examples
from tests.vectors import load, needs_vectors

PSK_CASES = load("psk_secret.json")
KS_CASES = load("key-schedule.json")
ST_CASES = load("secret-tree.json")


@needs_vectors
def test_vector_files_cover_all_suites() -> None:
    for cases in (PSK_CASES, KS_CASES, ST_CASES):
        assert {c["cipher_suite"] for c in cases} == set(range(1, 8))


# ---------------------------------------------------------------- vectors


@pytest.mark.parametrize(
    "case",
    PSK_CASES,
    ids=[f"cs{c['cipher_suite']}-{len(c['psks'])}psks-{i}" for i, c in enumerate(PSK_CASES)],
)
def test_psk_secret_vector(case: dict) -> None:
    check_psk_secret(case)


@pytest.mark.parametrize("case", KS_CASES, ids=[f"cs{c['cipher_suite']}" for c in KS_CASES])
def test_key_schedule_vector(case: dict) -> None:
    check_key_schedule(case)


@pytest.mark.parametrize(
    "case",
    ST_CASES,
    ids=[f"cs{c['cipher_suite']}-{len(c['leaves'])}leaves-{i}" for i, c in enumerate(ST_CASES)],
)
def test_secret_tree_vector(case: dict) -> None:
    check_secret_tree(case)


@pytest.mark.parametrize(
    "case",
    ST_CASES,
    ids=[f"cs{c['cipher_suite']}-{len(c['leaves'])}leaves-{i}" for i, c in enumerate(ST_CASES)],
)
def test_secret_tree_vector_reverse_order_and_sender_side(case: dict) -> None:
    """The same vector values reached out of order (receiver) and by sending."""
    suite = get_suite(case["cipher_suite"])
    secret = bytes.fromhex(case["encryption_secret"])
    n = len(case["leaves"])
    recv = SecretTree(suite, secret, n)
    send = SecretTree(suite, secret, n)
    for i in reversed(range(n)):
        entries = case["leaves"][i]
        for ent in sorted(entries, key=lambda e: -e["generation"]):
            g = ent["generation"]
            assert recv.application_key(i, g) == (
                bytes.fromhex(ent["application_key"]),
                bytes.fromhex(ent["application_nonce"]),
            )
            assert recv.handshake_key(i, g) == (
                bytes.fromhex(ent["handshake_key"]),
                bytes.fromhex(ent["handshake_nonce"]),
            )
        want = {e["generation"]: e for e in entries}
        for _ in range(max(want) + 1):
            g, k, nn = send.next_handshake(i)
            if g in want:
                assert (k.hex(), nn.hex()) == (want[g]["handshake_key"], want[g]["handshake_nonce"])


def _mutate_hex(h: str) -> str:
    b = bytearray(bytes.fromhex(h))
    b[0] ^= 1
    return b.hex()


def test_checkers_reject_wrong_values() -> None:
    c = json.loads(json.dumps(PSK_CASES[3]))
    c["psk_secret"] = _mutate_hex(c["psk_secret"])
    with pytest.raises(AssertionError, match="psk_secret"):
        check_psk_secret(c)

    c = json.loads(json.dumps(KS_CASES[0]))
    c["epochs"][2]["exporter"]["secret"] = _mutate_hex(c["epochs"][2]["exporter"]["secret"])
    with pytest.raises(AssertionError, match="epoch 2: exporter.secret"):
        check_key_schedule(c)
    c = json.loads(json.dumps(KS_CASES[0]))
    c["epochs"][1]["external_pub"] = _mutate_hex(c["epochs"][1]["external_pub"])
    with pytest.raises(AssertionError, match="epoch 1: external_pub"):
        check_key_schedule(c)

    c = json.loads(json.dumps(ST_CASES[1]))
    c["leaves"][2][1]["application_nonce"] = _mutate_hex(c["leaves"][2][1]["application_nonce"])
    with pytest.raises(AssertionError, match="leaf 2 generation 15: application_nonce"):
        check_secret_tree(c)


# ---------------------------------------------------------------- key schedule


SUITE = get_suite(1)


def test_psk_secret_binds_order_and_identity() -> None:
    a = (PreSharedKeyID.external(b"a", b"\x01" * 32), b"k1")
    b = (PreSharedKeyID.resumption(ResumptionPSKUsage.application, b"g", 3, b"\x02" * 32), b"k2")
    assert compute_psk_secret(SUITE, []) == bytes(32)
    assert compute_psk_secret(SUITE, [a, b]) != compute_psk_secret(SUITE, [b, a])
    assert compute_psk_secret(SUITE, [a]) != compute_psk_secret(SUITE, [a, b])
    # Manual chain of s.8.4 for one PSK.
    ext = SUITE.kdf_extract(bytes(32), b"k1")
    inp = SUITE.expand_with_label(ext, b"derived psk", PSKLabel(a[0], 0, 1).encode(), 32)
    assert compute_psk_secret(SUITE, [a]) == SUITE.kdf_extract(inp, bytes(32))


def test_epoch_secrets_and_welcome_key() -> None:
    gc = b"context"
    joiner = derive_joiner_secret(SUITE, bytes(32), bytes(32), gc)
    es = derive_epoch_secrets(SUITE, joiner, bytes(32), gc)
    assert isinstance(es, EpochSecrets)
    values = [getattr(es, f.name) for f in dataclasses.fields(es)]
    assert len(set(values)) == len(values) == 12
    assert all(len(v) == SUITE.hash_len for v in values)
    with pytest.raises(dataclasses.FrozenInstanceError):
        es.init_secret = b""  # type: ignore[misc]
    assert es.external_key_pair(SUITE) == SUITE.derive_key_pair(es.external_secret)
    assert es.welcome_secret.hex() not in repr(es)
    key, nonce = welcome_key_nonce(SUITE, es.welcome_secret)
    assert len(key) == SUITE.aead_key_len and len(nonce) == SUITE.aead_nonce_len
    assert key == SUITE.expand_with_label(es.welcome_secret, b"key", b"", SUITE.aead_key_len)
    # A different group context yields a different epoch.
    es2 = derive_epoch_secrets(
        SUITE, derive_joiner_secret(SUITE, bytes(32), bytes(32), b"other"), bytes(32), b"other"
    )
    assert es2.epoch_secret != es.epoch_secret
    assert len(mls_exporter(SUITE, es.exporter_secret, b"l", b"c", 17)) == 17


def test_sender_data_short_ciphertext_uses_whole_sample() -> None:
    k1, _ = sender_data_key_nonce(SUITE, bytes(32), b"abc")
    k2, _ = sender_data_key_nonce(SUITE, bytes(32), b"abc" + bytes(40))
    assert k1 != k2
    k3, _ = sender_data_key_nonce(SUITE, bytes(32), b"x" * 32 + b"tail")
    k4, _ = sender_data_key_nonce(SUITE, bytes(32), b"x" * 32 + b"other tail")
    assert k3 == k4


# ---------------------------------------------------------------- secret tree

ENC = bytes(range(32))


def tree(n: int = 8, **kw: int) -> SecretTree:
    return SecretTree(SUITE, ENC, n, **kw)


def test_sender_and_receiver_agree() -> None:
    s, r = tree(), tree()
    for g in range(5):
        gen, k, n = s.next_application(3)
        assert gen == g
        assert r.application_key(3, g) == (k, n)
        gen, k, n = s.next_handshake(3)
        assert gen == g
        assert r.handshake_key(3, g) == (k, n)
    # Ratchets of different types and leaves differ.
    assert tree().application_key(3, 0) != tree().handshake_key(3, 0)
    assert tree().application_key(3, 0) != tree().application_key(4, 0)


def test_replay_raises() -> None:
    t = tree()
    t.application_key(0, 0)
    with pytest.raises(SecretTreeError) as ei:
        t.application_key(0, 0)
    assert ei.value.code == "replay"
    assert isinstance(ei.value, ValueError)
    t.application_key(0, 5)
    t.application_key(0, 3)
    with pytest.raises(SecretTreeError):
        t.application_key(0, 3)
    with pytest.raises(SecretTreeError):
        t.application_key(0, 5)
    # The handshake ratchet of the same leaf is untouched.
    t.handshake_key(0, 0)


def test_sender_never_reuses_received_generation() -> None:
    t = tree()
    t.application_key(1, 4)
    gen, _, _ = t.next_application(1)
    assert gen == 5


def test_forward_window() -> None:
    t = tree(max_forward=10)
    with pytest.raises(SecretTreeError) as ei:
        t.application_key(0, 11)
    assert ei.value.code == "generationTooFar"
    t.application_key(0, 10)
    t.application_key(0, 21)
    with pytest.raises(SecretTreeError):
        t.application_key(0, 33)
    with pytest.raises(SecretTreeError):
        t.application_key(0, -1)
    with pytest.raises(SecretTreeError):
        t.application_key(0, 1 << 32)
    # Default window is 1024.
    d = tree()
    d.application_key(0, 1024)
    with pytest.raises(SecretTreeError):
        d.application_key(1, 1025)


def test_skipped_keys_bounded() -> None:
    t = tree(max_skipped=4)
    ref = tree()
    t.application_key(0, 10)  # skips 0..9; only 6..9 kept
    for g in range(6):
        with pytest.raises(SecretTreeError):
            t.application_key(0, g)
    for g in range(6, 10):
        assert t.application_key(0, g) == ref.application_key(0, g)
    t.application_key(0, 12)
    t.application_key(0, 14)  # skipped 11, 13 kept
    t.application_key(0, 20)  # skipped 15..19 -> keep only last 4 overall: 16..19
    for g in (11, 13, 15):
        with pytest.raises(SecretTreeError):
            t.application_key(0, g)
    for g in range(16, 20):
        assert t.application_key(0, g) == ref.application_key(0, g)


def test_leaf_out_of_range() -> None:
    t = tree(4)
    with pytest.raises(SecretTreeError) as ei:
        t.application_key(4, 0)
    assert ei.value.code == "invalidLeaf"
    with pytest.raises(SecretTreeError):
        t.next_handshake(-1)
    with pytest.raises(ValueError):
        SecretTree(SUITE, ENC, 0)


def test_lazy_and_deletes_consumed_secrets() -> None:
    n = 1024
    t = SecretTree(SUITE, ENC, n)
    assert len(t._nodes) == 1
    t.application_key(0, 0)
    # Root split away; only the untouched siblings along leaf 0's path remain.
    assert 1023 not in t._nodes
    assert len(t._nodes) == 10
    assert 0 not in t._nodes  # leaf secret deleted once its ratchets are seeded
    for leaf in range(n):
        t.handshake_key(leaf, 0)
    assert t._nodes == {}
    r = t._ratchets[(5, 0)]
    assert r.next_gen == 1 and r.skipped == {}


def test_secret_tree_is_fast_for_large_groups() -> None:
    t = SecretTree(SUITE, ENC, 2048)
    start = time.perf_counter()
    for leaf in range(0, 2048, 7):
        t.application_key(leaf, 0)
    t.application_key(1, 1024)
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, elapsed


def test_copy_is_independent() -> None:
    t = tree()
    t.application_key(2, 3)
    c = t.copy()
    k = c.application_key(2, 1)
    with pytest.raises(SecretTreeError):
        c.application_key(2, 1)
    # The original still holds generation 1 and was not advanced by the copy.
    assert t.application_key(2, 1) == k
    c.application_key(2, 7)
    assert t.next_application(2)[0] == 4
    assert c.next_application(2)[0] == 8
    # Leaves seeded on the copy only are still fresh in the original.
    c2 = t.copy()
    k5 = c2.handshake_key(5, 0)
    assert t.handshake_key(5, 0) == k5
    # A copy of a copy behaves too.
    c3 = c2.copy()
    k51 = c3.handshake_key(5, 1)
    assert c2.handshake_key(5, 1) == k51
    assert c2.handshake_key(5, 2) == t.handshake_key(5, 2)
    with pytest.raises(SecretTreeError):
        c3.handshake_key(5, 1)


# ---------------------------------------------------------------- properties


@settings(max_examples=examples(40), deadline=None)
@given(st.permutations(list(range(12))), st.integers(0, 7), st.booleans())
def test_out_of_order_equals_in_order(order: list[int], leaf: int, handshake: bool) -> None:
    ordered, shuffled = tree(), tree()
    get_o = ordered.handshake_key if handshake else ordered.application_key
    get_s = shuffled.handshake_key if handshake else shuffled.application_key
    expected = {g: get_o(leaf, g) for g in range(12)}
    for g in order:
        assert get_s(leaf, g) == expected[g]
    for g in range(12):
        with pytest.raises(SecretTreeError):
            get_s(leaf, g)


@settings(max_examples=examples(40), deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 40)), max_size=30))
def test_each_key_handed_out_at_most_once(requests: list[tuple[int, int]]) -> None:
    t = tree(4, max_skipped=8)
    ref = tree(4)
    ref_keys = {}
    got: set[tuple[int, int]] = set()
    for leaf, g in requests:
        try:
            kn = t.application_key(leaf, g)
        except SecretTreeError:
            continue
        assert (leaf, g) not in got
        got.add((leaf, g))
        if (leaf, g) not in ref_keys:
            ref_keys[(leaf, g)] = ref.copy().application_key(leaf, g)
        assert kn == ref_keys[(leaf, g)]
    # Keys handed out are all distinct.
    keys = [ref_keys[x][0] for x in got]
    assert len(set(keys)) == len(keys)
