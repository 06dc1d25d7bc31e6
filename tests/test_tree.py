"""Ratchet tree: the official tree-validation.json and tree-operations.json
vectors (every case, every suite), validation failure modes, and properties
of the hash/resolution caches under random add/update/remove/path sequences."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mimisim.mls import tree_validation
from mimisim.mls import treemath as tm
from mimisim.mls.crypto import get_suite
from mimisim.mls.structs import (
    Capabilities,
    Credential,
    LeafNode,
    LeafNodeSource,
    Lifetime,
    Node,
    ParentNode,
    RatchetTreeExt,
)
from mimisim.mls.tree import RatchetTree, TreeError, parent_node
from mimisim.mls.vectors_tree import check_tree_operations, check_tree_validation
from tests.hypothesis_profiles import examples
from tests.vectors import load, needs_vectors

VALIDATION = load("tree-validation.json")
OPERATIONS = load("tree-operations.json")
SUITE = get_suite(1)


def _copy(case: dict) -> dict:
    return json.loads(json.dumps(case))


# ------------------------------------------------------------------ vectors


@needs_vectors
def test_vector_files_cover_all_suites() -> None:
    assert len(VALIDATION) >= 90 and {c["cipher_suite"] for c in VALIDATION} == set(range(1, 8))
    assert len(OPERATIONS) >= 5


# tree-validation.json case by case: tests/test_vectors.py, beside the runner tests that share its one run


@pytest.mark.parametrize("case", OPERATIONS, ids=[f"op{i}" for i in range(len(OPERATIONS))])
def test_tree_operations_vector(case: dict) -> None:
    check_tree_operations(case)


def test_validation_checker_rejects_wrong_hash_and_resolution() -> None:
    bad = _copy(VALIDATION[5])
    bad["tree_hashes"][1] = "00" * 32
    with pytest.raises(AssertionError, match=r"tree_hashes\[1\]"):
        check_tree_validation(bad)
    bad = _copy(VALIDATION[5])
    bad["resolutions"][1] = [0]
    with pytest.raises(AssertionError, match=r"resolutions\[1\]"):
        check_tree_validation(bad)


def test_operations_checker_rejects_wrong_tree_after() -> None:
    bad = _copy(OPERATIONS[0])
    bad["tree_hash_after"] = "00" * 32
    with pytest.raises(AssertionError, match="tree_hash_after"):
        check_tree_operations(bad)


def _vector_tree(i: int) -> tuple[RatchetTree, bytes]:
    c = VALIDATION[i]
    suite = get_suite(c["cipher_suite"])
    return RatchetTree.from_nodes(
        suite, RatchetTreeExt.decode(bytes.fromhex(c["tree"])).nodes
    ), bytes.fromhex(c["group_id"])


def _first_parent(tree: RatchetTree) -> int:
    return next(x for x in range(1, tree.width, 2) if tree.node(x) is not None)


def test_validate_detects_broken_parent_hash() -> None:
    tree, gid = _vector_tree(3)
    assert tree_validation.validate(tree, gid) == []
    x = _first_parent(tree)
    p = tree.parent_node(x)
    assert p is not None
    tree._set(x, parent_node(ParentNode(p.encryption_key, bytes(len(p.parent_hash)), p.unmerged_leaves)))
    assert not tree_validation.verify_parent_hashes(tree)
    assert any("parent-hash valid" in m for m in tree_validation.validate(tree, gid))
    with pytest.raises(TreeError):
        tree_validation.check_valid(tree, gid)


def test_validate_detects_bad_leaf_signature_and_wrong_group() -> None:
    tree, gid = _vector_tree(3)
    assert tree_validation.leaf_signature_problems(tree, b"other group") != []
    leaf = tree.leaf(0)
    assert leaf is not None
    sig = bytearray(leaf.signature)
    sig[0] ^= 1
    tree._set(0, Node(1, dataclasses.replace(leaf, signature=bytes(sig)), None))  # type: ignore[arg-type]
    assert "leaf 0 has an invalid signature" in tree_validation.validate(tree, gid)


def test_validate_detects_duplicate_keys_and_tree_hash_mismatch() -> None:
    tree, gid = _vector_tree(3)
    a, b = tree.leaf(0), tree.leaf(1)
    assert a is not None and b is not None
    tree._set(2, Node(1, dataclasses.replace(b, encryption_key=a.encryption_key), None))  # type: ignore[arg-type]
    problems = tree_validation.validate(tree, gid, tree_hash=b"\x00" * 32)
    assert "tree hash does not match" in problems
    assert any("share an encryption key" in m for m in problems)
    assert tree.encryption_key_count(a.encryption_key) == 2


def test_validate_detects_inconsistent_unmerged_leaves() -> None:
    tree, gid = _vector_tree(3)
    x = _first_parent(tree)
    p = tree.parent_node(x)
    assert p is not None
    outside = next(i for i in range(tree.n_leaves) if i not in tree.subtree_leaves(x))
    tree._set(x, parent_node(ParentNode(p.encryption_key, p.parent_hash, [outside])))
    assert any("not below it" in m for m in tree_validation.unmerged_leaves_problems(tree))


def test_from_nodes_rejects_malformed_lists() -> None:
    tree, _ = _vector_tree(3)
    nodes = tree.to_nodes()
    with pytest.raises(TreeError, match="blank"):
        RatchetTree.from_nodes(SUITE, [*nodes, None, None])
    with pytest.raises(TreeError, match="empty"):
        RatchetTree.from_nodes(SUITE, [])
    with pytest.raises(TreeError, match="leaf node"):
        RatchetTree.from_nodes(SUITE, [nodes[1], nodes[1], nodes[2]])


def test_operations_reject_blank_targets() -> None:
    tree = RatchetTree(SUITE, 2)
    tree.set_leaf(0, fake_leaf(0))
    with pytest.raises(TreeError):
        tree.remove_leaf(1)
    with pytest.raises(TreeError):
        tree.update_leaf(1, fake_leaf(1))


# ------------------------------------------------------------------ properties


_CAPS = Capabilities([1], [1], [], [], [1])


def fake_leaf(tag: int, source: LeafNodeSource = LeafNodeSource.key_package) -> LeafNode:
    """A structurally valid LeafNode with unique keys; no real crypto needed
    for hash and resolution properties."""
    k = tag.to_bytes(4, "big")
    return LeafNode(
        b"enc" + k,
        b"sig" + k,
        Credential.basic(b"id" + k),
        _CAPS,
        source,
        Lifetime(0, 2**63) if source == LeafNodeSource.key_package else None,
        b"" if source == LeafNodeSource.commit else None,
        [],
        b"signature" + k,
    )


def naive_resolution(tree: RatchetTree, x: int) -> list[int]:
    n = tree.node(x)
    if n is not None:
        return [x] + ([2 * i for i in n.parent.unmerged_leaves] if n.parent is not None else [])
    if x % 2 == 0:
        return []
    return naive_resolution(tree, tm.left(x)) + naive_resolution(tree, tm.right(x))


def check_tree_invariants(tree: RatchetTree) -> None:
    fresh = RatchetTree.from_nodes(tree.suite, tree.to_nodes())
    assert fresh.n_leaves == tree.n_leaves, "tree is not minimal after truncation"
    assert tree.tree_hash() == fresh.tree_hash()
    for x in range(tree.width):
        assert tree.node_hash(x) == fresh.node_hash(x)
        res = tree.resolution(x)
        assert res == naive_resolution(tree, x)
        lo, hi = x - (1 << tm.level(x)) + 1, x + (1 << tm.level(x)) - 1
        assert all(lo <= r <= hi for r in res), "resolution leaves the subtree"
        assert all(tree.node(r) is not None for r in res), "resolution holds a blank node"
        if tree.node(x) is not None:
            assert res[0] == x
    assert tree_validation.unmerged_leaves_problems(tree) == []
    # Only Add/Update/Remove and well-formed path merges happened, so every
    # parent node must still be parent-hash valid (s.7.9.2).
    assert tree_validation.parent_hash_problems(tree) == []
    counts: dict[bytes, int] = {}
    for x in range(tree.width):
        n = tree.node(x)
        if n is not None:
            k = n.value.encryption_key
            counts[k] = counts.get(k, 0) + 1
    for k, c in counts.items():
        assert tree.encryption_key_count(k) == c


op_strategy = st.lists(
    st.tuples(st.sampled_from(["add", "add", "remove", "update", "path"]), st.integers(0, 10_000)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=op_strategy, check_every=st.integers(1, 5))
def test_cached_hash_matches_recomputation_under_random_ops(
    ops: list[tuple[str, int]], check_every: int
) -> None:
    tree = RatchetTree(SUITE, 1)
    tree.set_leaf(0, fake_leaf(0))
    tree.encryption_key_count(b"")  # build the key index early so updates to it are exercised
    tag = 1
    snapshots: list[tuple[RatchetTree, bytes, list[Node | None]]] = []
    for step, (op, r) in enumerate(ops):
        members = tree.leaf_indices()
        if op == "add":
            i = tree.add_leaf(fake_leaf(tag))
            assert tree.leaf(i) is not None
            tag += 1
        elif op == "remove" and len(members) > 1:
            tree.remove_leaf(members[r % len(members)])
        elif op == "update":
            tree.update_leaf(members[r % len(members)], fake_leaf(tag, LeafNodeSource.commit))
            tag += 1
        elif op == "path":
            i = members[r % len(members)]
            n = len(tree.filtered_direct_path(i))
            keys = [b"pk" + (tag + j).to_bytes(4, "big") for j in range(n)]
            tag += n
            ph = tree.set_path(i, keys)
            tree.set_leaf(i, dataclasses.replace(fake_leaf(tag, LeafNodeSource.commit), parent_hash=ph))
            tag += 1
            # A path merge yields a parent-hash-valid chain for this leaf.
            for p in tree.filtered_direct_path(i):
                assert tree.node(p) is not None
        if step % 7 == 0:
            snapshots.append((tree.copy(), tree.tree_hash(), tree.to_nodes()))
        if step % check_every == 0:
            check_tree_invariants(tree)
    check_tree_invariants(tree)
    # Copies are independent of later mutations of the original.
    for snap, h, nodes in snapshots:
        assert snap.to_nodes() == nodes
        assert snap.tree_hash() == h
        check_tree_invariants(snap)


@settings(max_examples=examples(40), deadline=None)
@given(n=st.integers(1, 40), removes=st.lists(st.integers(0, 1000), max_size=30))
def test_add_fills_leftmost_blank_and_remove_truncates(n: int, removes: list[int]) -> None:
    tree = RatchetTree(SUITE, 1)
    tree.set_leaf(0, fake_leaf(0))
    for t in range(1, n):
        assert tree.add_leaf(fake_leaf(t)) == t
    for r in removes:
        members = tree.leaf_indices()
        if len(members) == 1:
            break
        tree.remove_leaf(members[r % len(members)])
        last = max(tree.leaf_indices())
        # s.12.1.3: 2^d leaves with d the smallest such that 2^d > last
        assert tree.n_leaves == max(1, 1 << last.bit_length())
    members = tree.leaf_indices()
    blanks = [i for i in range(tree.n_leaves) if tree.leaf(i) is None]
    i = tree.add_leaf(fake_leaf(99_999))
    assert i == (blanks[0] if blanks else len(members))
    check_tree_invariants(tree)


def test_add_records_unmerged_leaves_on_non_blank_ancestors() -> None:
    tree = RatchetTree(SUITE, 1)
    tree.set_leaf(0, fake_leaf(0))
    for t in range(1, 3):
        tree.add_leaf(fake_leaf(t))
    ph = tree.set_path(0, [b"k1", b"k3"])
    tree.set_leaf(0, dataclasses.replace(fake_leaf(10, LeafNodeSource.commit), parent_hash=ph))
    assert tree_validation.verify_parent_hashes(tree)
    i = tree.add_leaf(fake_leaf(20))
    assert i == 3
    assert tree.parent_node(3).unmerged_leaves == [3]  # type: ignore[union-attr]
    assert tree.parent_node(5) is None
    assert tree.resolution(3) == [3, 6]
    assert tree.resolution(5) == [4, 6]
    assert tree_validation.verify_parent_hashes(tree)
    check_tree_invariants(tree)


def _naive_member_conflict(tree: RatchetTree, leaf: LeafNode, replacing: int | None) -> bool:
    """The member checks of ``validate_leaf_node`` as a plain scan: does any member fail?"""
    for i, other in tree.members():
        if i == replacing:
            continue
        if (other.credential.credential_type not in leaf.capabilities.credentials
                or leaf.credential.credential_type not in other.capabilities.credentials
                or other.signature_key == leaf.signature_key or other.encryption_key == leaf.encryption_key):
            return True
    return False


def test_member_checks_by_index_never_miss_a_conflict() -> None:
    """``validate_leaf_node`` skips the member scan when the tree's indexes say no
    member can conflict: that must never hide a conflict the scan finds, under
    adds, removes and updates (the profile index kept incrementally)."""
    from mimisim.mls.validation import _may_conflict

    tree = RatchetTree(SUITE, 1)
    tree.set_leaf(0, fake_leaf(0))
    tree.encryption_key_count(b"")  # indexes built early: kept up to date from here on
    for tag in range(1, 12):
        tree.add_leaf(fake_leaf(tag))
    tree.remove_leaf(3)
    tree.update_leaf(5, dataclasses.replace(fake_leaf(5), capabilities=Capabilities([1], [1], [], [], [1, 2])))
    x509_only = dataclasses.replace(fake_leaf(100), capabilities=Capabilities([1], [1], [], [], [2]))
    candidates = [fake_leaf(100), fake_leaf(2), fake_leaf(3), fake_leaf(5), x509_only,
                  dataclasses.replace(fake_leaf(101), signature_key=b"sig" + (7).to_bytes(4, "big")),
                  dataclasses.replace(fake_leaf(102), encryption_key=b"enc" + (9).to_bytes(4, "big"))]
    rebuilt = RatchetTree.from_nodes(SUITE, tree.to_nodes())
    assert rebuilt.leaf_profile_counts() == tree.leaf_profile_counts()
    for leaf in candidates:
        for replacing in (None, 2, 5, 7, 9):
            if _naive_member_conflict(tree, leaf, replacing):
                assert _may_conflict(tree, leaf, replacing), (leaf.signature_key, replacing)
    assert not _may_conflict(tree, fake_leaf(100), None)  # the fast path is taken when nothing conflicts
    assert _may_conflict(tree, fake_leaf(2), 5) and not _may_conflict(tree, fake_leaf(2), 2)
    assert _may_conflict(tree, x509_only, None)


def test_capability_index_matches_a_recount() -> None:
    """The capability profile index, kept incrementally under adds, removes and
    updates, equals a recount from the leaves (apply_proposals trusts it to skip
    the scan over every member for proposal-type and extension support)."""
    from collections import Counter

    tree = RatchetTree(SUITE, 1)
    tree.set_leaf(0, fake_leaf(0))
    tree.leaf_capability_counts()  # built early: kept up to date from here on
    for tag in range(1, 10):
        tree.add_leaf(fake_leaf(tag))
    tree.update_leaf(4, dataclasses.replace(fake_leaf(4), capabilities=Capabilities([1], [1], [7], [9], [1])))
    tree.remove_leaf(2)
    copy = tree.copy()
    copy.remove_leaf(4)
    for t in (tree, copy):
        want = Counter((tuple(leaf.capabilities.extensions), tuple(leaf.capabilities.proposals),
                        tuple(leaf.capabilities.credentials)) for _, leaf in t.members())
        assert t.leaf_capability_counts() == dict(want)
    assert ((7,), (9,), (1,)) in tree.leaf_capability_counts()
    assert ((7,), (9,), (1,)) not in copy.leaf_capability_counts()
