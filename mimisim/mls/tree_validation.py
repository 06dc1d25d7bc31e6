"""Validation of a whole ratchet tree (RFC 9420 s.12.4.3.1, s.7.9.2, s.7.10).

A joiner (and the hub observer, from a GroupInfo) checks a received tree once:
node types, the tree hash, parent-hash validity of every parent, unmerged
leaves, key uniqueness and every leaf signature. These are pure functions
over a :class:`~mimisim.mls.tree.RatchetTree`, apart from the tree's
structure, mutation and hashing, so that the tree class holds one concern
and every check here can be read (and tested) on its own. The rest of s.7.3
(capabilities, lifetimes, credentials) is :mod:`mimisim.mls.validation`'s job.
"""

from __future__ import annotations

from mimisim.mls import treemath as tm
from mimisim.mls.structs import NodeType
from mimisim.mls.tree import (
    RatchetTree,
    TreeError,
    _encryption_key,
    _parent_step,
    _stored_parent_hash,
    _subtree_node_range,
)

__all__ = [
    "validate",
    "check_valid",
    "verify_parent_hashes",
    "parent_hash_problems",
    "unmerged_leaves_problems",
    "key_uniqueness_problems",
    "leaf_signature_problems",
    "verify_leaf_signature",
]


def validate(tree: RatchetTree, group_id: bytes, tree_hash: bytes | None = None) -> list[str]:
    """Full validation of a tree received on join; returns the problems
    found (empty when valid). Checks the node types, the tree hash (when
    given), unmerged-leaf consistency, parent hashes, key uniqueness and
    every leaf signature."""
    problems: list[str] = []
    for x in range(tree.width):
        n = tree.node(x)
        if n is None:
            continue
        want = NodeType.leaf if x % 2 == 0 else NodeType.parent
        if n.node_type != want or (n.leaf if want == NodeType.leaf else n.parent) is None:
            problems.append(f"node {x} must be a {want.name} node")
    if problems:
        return problems
    if tree_hash is not None and tree.tree_hash() != tree_hash:
        problems.append("tree hash does not match")
    problems.extend(unmerged_leaves_problems(tree))
    problems.extend(parent_hash_problems(tree))
    problems.extend(key_uniqueness_problems(tree))
    problems.extend(leaf_signature_problems(tree, group_id))
    return problems


def check_valid(tree: RatchetTree, group_id: bytes, tree_hash: bytes | None = None) -> None:
    """:func:`validate`, raising :class:`TreeError` on the first problems."""
    problems = validate(tree, group_id, tree_hash)
    if problems:
        raise TreeError("; ".join(problems[:3]) + (" ..." if len(problems) > 3 else ""))


def verify_parent_hashes(tree: RatchetTree) -> bool:
    """s.7.9.2: every non-blank parent node is parent-hash valid."""
    return not parent_hash_problems(tree)


def parent_hash_problems(tree: RatchetTree) -> list[str]:
    """Each non-blank parent P must be parent-hash valid w.r.t. a
    descendant D: D.parent_hash == ParentHash(P, S) where S is P's child
    not above D, D is in the resolution of C (the other child), and P's
    unmerged leaves under C are exactly resolution(C) minus D. Each D may
    vouch for one parent only, so the chains are unique."""
    problems: list[str] = []
    claimed: dict[int, int] = {}
    for p in range(1, tree.width, 2):
        n = tree.node(p)
        if n is None:
            continue
        par = n.parent
        assert par is not None
        unmerged = {2 * i for i in par.unmerged_leaves}
        k = tm.level(p)
        lc, rc = p ^ (1 << (k - 1)), p ^ (3 << (k - 1))
        found = None
        for c, s in ((lc, rc), (rc, lc)):
            res = tree.resolution(c)
            cands = [d for d in res if d not in unmerged]
            if len(cands) != 1:
                continue
            lo, hi = _subtree_node_range(c)
            if any(lo <= u <= hi for u in unmerged if u not in res):
                continue
            d = cands[0]
            dn = tree.node(d)
            assert dn is not None
            if _stored_parent_hash(dn) == tree.parent_hash_of(p, s):
                found = d
                break
        if found is None:
            problems.append(f"parent node {p} is not parent-hash valid")
        elif found in claimed:
            problems.append(f"node {found} vouches for both parent {claimed[found]} and parent {p}")
        else:
            claimed[found] = p
    return problems


def unmerged_leaves_problems(tree: RatchetTree) -> list[str]:
    """s.7.10 / s.12.4.3.1: each unmerged leaf of P is a non-blank leaf
    under P, listed once, and listed at every non-blank node between it and P."""
    problems: list[str] = []
    for p in range(1, tree.width, 2):
        n = tree.node(p)
        if n is None:
            continue
        ul = n.parent.unmerged_leaves  # type: ignore[union-attr]  # a non-blank odd node is a parent
        if len(set(ul)) != len(ul):
            problems.append(f"parent node {p} lists an unmerged leaf twice")
        lo, hi = _subtree_node_range(p)
        for i in ul:
            x = 2 * i
            if not lo <= x <= hi:
                problems.append(f"parent node {p}: unmerged leaf {i} is not below it")
                continue
            if tree.node(x) is None:
                problems.append(f"parent node {p}: unmerged leaf {i} is blank")
                continue
            y = _parent_step(x)
            while y != p:
                m = tree.node(y)
                if m is not None and i not in m.parent.unmerged_leaves:  # type: ignore[union-attr]  # parent
                    problems.append(f"node {y} between leaf {i} and node {p} does not list it as unmerged")
                y = _parent_step(y)
    return problems


def key_uniqueness_problems(tree: RatchetTree) -> list[str]:
    """s.12.4.3.1: no two nodes share an encryption key, no two leaves a signature key."""
    problems: list[str] = []
    seen_enc: dict[bytes, int] = {}
    seen_sig: dict[bytes, int] = {}
    for x in range(tree.width):
        n = tree.node(x)
        if n is None:
            continue
        k = _encryption_key(n)
        if k in seen_enc:
            problems.append(f"nodes {seen_enc[k]} and {x} share an encryption key")
        else:
            seen_enc[k] = x
        if n.leaf is not None:
            s = n.leaf.signature_key
            if s in seen_sig:
                problems.append(f"leaves {seen_sig[s] >> 1} and {x >> 1} share a signature key")
            else:
                seen_sig[s] = x
    return problems


def leaf_signature_problems(tree: RatchetTree, group_id: bytes) -> list[str]:
    """s.7.2: every leaf's signature verifies."""
    return [f"leaf {i} has an invalid signature" for i in tree.leaf_indices()
            if not verify_leaf_signature(tree, i, group_id)]


def verify_leaf_signature(tree: RatchetTree, i: int, group_id: bytes) -> bool:
    """s.7.2: LeafNodeTBS includes group_id and leaf_index unless the
    leaf came from a KeyPackage."""
    leaf = tree.leaf(i)
    if leaf is None:
        return False
    tbs = leaf.tbs(group_id, i)
    return tree.suite.verify_with_label(leaf.signature_key, b"LeafNodeTBS", tbs, leaf.signature)
