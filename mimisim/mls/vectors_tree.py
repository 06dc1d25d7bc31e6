"""Checkers for the tree vectors of mlswg/mls-implementations:
tree-validation.json, tree-operations.json and treekem.json.

Each ``check_*`` takes one parsed JSON case and raises :class:`AssertionError`
naming the first mismatch, so pytest and any CLI report the same thing. No
file I/O here. ``check_treekem`` also runs the direction the vectors cannot
pin down byte-for-byte: a member creates a *new* UpdatePath from the
vector's state and every other member must process it to the same result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from mimisim.mls import tree_validation
from mimisim.mls.crypto import CipherSuite, DeterministicRandom, get_suite
from mimisim.mls.structs import (
    MLS10,
    GroupContext,
    LeafNode,
    LeafNodeSource,
    Proposal,
    ProposalType,
    RatchetTreeExt,
    UpdatePath,
)
from mimisim.mls.tree import RatchetTree
from mimisim.mls.treekem import (
    TreePrivate,
    apply_update_path_public,
    create_update_path,
    derive_node_key_pair,
    process_update_path,
)

__all__ = ["check_tree_validation", "check_tree_operations", "check_treekem", "CHECKERS"]

Case = Mapping[str, Any]


def _hex(v: str) -> bytes:
    return bytes.fromhex(v)


def _eq(what: str, got: Any, want: Any) -> None:
    if got != want:
        g = got.hex() if isinstance(got, bytes) else got
        w = want.hex() if isinstance(want, bytes) else want
        raise AssertionError(f"{what}: got {g}, want {w}")


def _tree(suite: CipherSuite, hex_tree: str) -> RatchetTree:
    return RatchetTree.from_nodes(suite, RatchetTreeExt.decode(_hex(hex_tree)).nodes)


def _encode_tree(tree: RatchetTree) -> bytes:
    return RatchetTreeExt(tree.to_nodes()).encode()


def check_tree_validation(case: Case) -> None:
    """Per-node tree hashes and resolutions, parent hashes, leaf signatures."""
    suite = get_suite(int(case["cipher_suite"]))
    tree = _tree(suite, case["tree"])
    _eq("encoding round trip", _encode_tree(tree).hex(), case["tree"])
    _eq("node count", tree.width, len(case["tree_hashes"]))
    _eq("resolution count", tree.width, len(case["resolutions"]))
    for x, want in enumerate(case["resolutions"]):
        _eq(f"resolutions[{x}]", tree.resolution(x), list(want))
    for x, want in enumerate(case["tree_hashes"]):
        _eq(f"tree_hashes[{x}]", tree.node_hash(x), _hex(want))
    problems = tree_validation.parent_hash_problems(tree)
    if problems:
        raise AssertionError(f"parent hashes: {problems}")
    group_id = _hex(case["group_id"])
    problems = tree_validation.leaf_signature_problems(tree, group_id)
    if problems:
        raise AssertionError(f"leaf signatures: {problems}")
    problems = tree_validation.validate(tree, group_id, tree.tree_hash())
    if problems:
        raise AssertionError(f"validate: {problems}")


def check_tree_operations(case: Case) -> None:
    """Apply an Add/Update/Remove proposal and compare the tree and its hashes."""
    suite = get_suite(int(case["cipher_suite"]))
    tree = _tree(suite, case["tree_before"])
    _eq("tree_hash_before", tree.tree_hash(), _hex(case["tree_hash_before"]))
    proposal = Proposal.decode(_hex(case["proposal"]))
    sender = int(case["proposal_sender"])
    if proposal.proposal_type == ProposalType.add:
        tree.add_leaf(proposal.body.key_package.leaf_node)
    elif proposal.proposal_type == ProposalType.update:
        tree.update_leaf(sender, proposal.body.leaf_node)
    elif proposal.proposal_type == ProposalType.remove:
        tree.remove_leaf(proposal.body.removed)
    else:
        raise AssertionError(f"unexpected proposal type {proposal.proposal_type}")
    _eq("tree_after", _encode_tree(tree).hex(), case["tree_after"])
    _eq("tree_hash_after", tree.tree_hash(), _hex(case["tree_hash_after"]))
    # The cached hash must equal a from-scratch computation on the result.
    _eq(
        "tree_hash_after (fresh)", _tree(suite, case["tree_after"]).tree_hash(), _hex(case["tree_hash_after"])
    )


def _privates(suite: CipherSuite, case: Case, tree: RatchetTree) -> dict[int, tuple[TreePrivate, bytes]]:
    out: dict[int, tuple[TreePrivate, bytes]] = {}
    for lp in case["leaves_private"]:
        i = int(lp["index"])
        privs = {
            int(ps["node"]): derive_node_key_pair(suite, _hex(ps["path_secret"]))[0]
            for ps in lp["path_secrets"]
        }
        priv = TreePrivate(i, _hex(lp["encryption_priv"]), privs)
        problems = priv.consistency_problems(suite, tree)
        if problems:
            raise AssertionError(f"leaves_private[{i}] inconsistent with ratchet_tree: {problems}")
        out[i] = (priv, _hex(lp["signature_priv"]))
    return out


def _context_builder(suite: CipherSuite, case: Case) -> Any:
    def build(tree: RatchetTree) -> bytes:
        return GroupContext(
            MLS10,
            suite.suite_id,
            _hex(case["group_id"]),
            int(case["epoch"]),
            tree.tree_hash(),
            _hex(case["confirmed_transcript_hash"]),
            [],
        ).encode()

    return build


def _leaf_builder(suite: CipherSuite, old: LeafNode, sig_priv: bytes, group_id: bytes, i: int) -> Any:
    def build(encryption_key: bytes, parent_hash: bytes) -> LeafNode:
        leaf = dataclasses.replace(
            old,
            encryption_key=encryption_key,
            leaf_node_source=LeafNodeSource.commit,
            lifetime=None,
            parent_hash=parent_hash,
            signature=b"",
        )
        sig = suite.sign_with_label(sig_priv, b"LeafNodeTBS", leaf.tbs(group_id, i))
        return dataclasses.replace(leaf, signature=sig)

    return build


def check_treekem(case: Case) -> None:
    """Process every UpdatePath for every member with keys, then create a
    fresh UpdatePath from each sender and have every other member process it."""
    suite = get_suite(int(case["cipher_suite"]))
    group_id = _hex(case["group_id"])
    base = _tree(suite, case["ratchet_tree"])
    base.tree_hash()  # warm the cache once; copies share it
    privates = _privates(suite, case, base)
    ctx = _context_builder(suite, case)

    for u, up_case in enumerate(case["update_paths"]):
        sender = int(up_case["sender"])
        where = f"update_paths[{u}] (sender {sender})"
        update_path = UpdatePath.decode(_hex(up_case["update_path"]))
        tree_hash_after = _hex(up_case["tree_hash_after"])
        commit_secret = _hex(up_case["commit_secret"])

        # Public merge (the hub's view): parent-hash valid, tree hash after.
        public = base.copy()
        apply_update_path_public(public, sender, update_path, excluded_leaves=())
        _eq(f"{where} tree_hash_after", public.tree_hash(), tree_hash_after)
        problems = tree_validation.parent_hash_problems(public)
        if problems:
            raise AssertionError(f"{where}: merged tree not parent-hash valid: {problems}")

        for j, (priv, _) in sorted(privates.items()):
            if j == sender or base.leaf(j) is None:
                continue
            tree = base.copy()
            out = process_update_path(tree, priv, sender, update_path, ctx)
            want_ps = up_case["path_secrets"][j]
            _eq(f"{where} path_secrets[{j}]", out.path_secret, None if want_ps is None else _hex(want_ps))
            _eq(f"{where} commit_secret for leaf {j}", out.commit_secret, commit_secret)
            _eq(f"{where} tree hash for leaf {j}", tree.tree_hash(), tree_hash_after)
            problems = out.private.consistency_problems(suite, tree)
            if problems:
                raise AssertionError(f"{where} leaf {j} private state: {problems}")

        # Reverse direction: the sender creates a new UpdatePath.
        if sender not in privates:
            raise AssertionError(f"{where}: no private state for the sender")
        s_priv, sig_priv = privates[sender]
        old_leaf = base.leaf(sender)
        assert old_leaf is not None
        rng = DeterministicRandom(b"treekem-vector", f"{case['cipher_suite']}/{group_id.hex()}/{u}")
        created = base.copy()
        new_path, new_secret, new_priv, path_secrets = create_update_path(
            created, s_priv, sender, _leaf_builder(suite, old_leaf, sig_priv, group_id, sender), ctx, (), rng
        )
        _eq(f"{where} new path re-encodes", UpdatePath.decode(new_path.encode()), new_path)
        if not tree_validation.verify_leaf_signature(created, sender, group_id):
            raise AssertionError(f"{where}: new leaf signature invalid")
        problems = tree_validation.parent_hash_problems(created) + new_priv.consistency_problems(suite, created)
        if problems:
            raise AssertionError(f"{where}: created tree/private state invalid: {problems}")
        _eq(f"{where} new path length", len(new_path.nodes), len(path_secrets))
        for j, (priv, _) in sorted(privates.items()):
            if j == sender or base.leaf(j) is None:
                continue
            tree = base.copy()
            out = process_update_path(tree, priv, sender, new_path, ctx)
            _eq(f"{where} new commit_secret for leaf {j}", out.commit_secret, new_secret)
            _eq(f"{where} new path secret for leaf {j}", out.path_secret, path_secrets[out.path_secret_node])
            _eq(f"{where} new tree hash for leaf {j}", tree.tree_hash(), created.tree_hash())
            for x, k in out.private.path_privs.items():
                if x in new_priv.path_privs:
                    _eq(f"{where} leaf {j} derived key for node {x}", k, new_priv.path_privs[x])


CHECKERS = {
    "tree-validation.json": check_tree_validation,
    "tree-operations.json": check_tree_operations,
    "treekem.json": check_treekem,
}
