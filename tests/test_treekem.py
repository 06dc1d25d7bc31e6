"""TreeKEM: the official treekem.json vectors (every case, every suite, both
directions), malformed-UpdatePath rejections, and a randomized group
simulation in which every member, every joiner and a public observer track
the same tree through adds, removes, updates, external joins and commits."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mimisim.mls import tree_validation
from mimisim.mls.crypto import CipherSuite, DeterministicRandom, get_suite
from mimisim.mls.structs import (
    MLS10,
    Capabilities,
    Credential,
    GroupContext,
    HPKECiphertext,
    LeafNode,
    LeafNodeSource,
    Lifetime,
    Node,
    NodeType,
    RatchetTreeExt,
    UpdatePath,
    UpdatePathNode,
)
from mimisim.mls.tree import RatchetTree, TreeError
from mimisim.mls.treekem import (
    TreeKEMError,
    TreePrivate,
    apply_update_path,
    apply_update_path_public,
    create_update_path,
    path_secret_for_joiner,
    private_from_joiner_path_secret,
    process_update_path,
)
from mimisim.mls.vectors_tree import check_treekem
from tests.hypothesis_profiles import examples
from tests.vectors import load, needs_vectors

TREEKEM = load("treekem.json")


# ------------------------------------------------------------------ vectors


@needs_vectors
def test_vector_file_covers_all_suites() -> None:
    assert len(TREEKEM) >= 70 and {c["cipher_suite"] for c in TREEKEM} == set(range(1, 8))


# treekem.json case by case: tests/test_vectors.py, beside the runner tests that share its one run


def _bad(case: dict, **changes: object) -> dict:
    c = json.loads(json.dumps(case))
    c.update(changes)
    return c


def test_checker_rejects_wrong_commit_secret_and_path_secret() -> None:
    case = TREEKEM[4]
    ups = json.loads(json.dumps(case["update_paths"]))
    ups[0]["commit_secret"] = "00" * 32
    with pytest.raises(AssertionError, match="commit_secret"):
        check_treekem(_bad(case, update_paths=ups))
    ups = json.loads(json.dumps(case["update_paths"]))
    j = next(j for j, v in enumerate(ups[0]["path_secrets"]) if v is not None)
    ups[0]["path_secrets"][j] = "00" * 32
    with pytest.raises(AssertionError, match=rf"path_secrets\[{j}\]"):
        check_treekem(_bad(case, update_paths=ups))


def test_checker_rejects_inconsistent_private_state() -> None:
    case = TREEKEM[4]
    lp = json.loads(json.dumps(case["leaves_private"]))
    lp[0]["encryption_priv"] = lp[1]["encryption_priv"]
    with pytest.raises(AssertionError, match="inconsistent"):
        check_treekem(_bad(case, leaves_private=lp))


# ------------------------------------------------------------------ a small TreeKEM group

_CAPS = Capabilities([1], [1, 2], [], [], [1])


class Group:
    """Public tree + every member's TreePrivate; commits are checked from
    every member's point of view and from a keyless observer's."""

    def __init__(self, suite: CipherSuite, seed: int) -> None:
        self.suite = suite
        self.rng = DeterministicRandom(seed, "treekem-test")
        self.epoch = 0
        self.tag = 0
        self.tree = RatchetTree(suite, 1)
        leaf, priv = self.new_leaf(LeafNodeSource.commit)
        self.tree.set_leaf(0, leaf)
        self.privs: dict[int, TreePrivate] = {0: TreePrivate(0, priv, {})}
        self.observer = self.tree.copy()

    def new_leaf(self, source: LeafNodeSource = LeafNodeSource.key_package) -> tuple[LeafNode, bytes]:
        self.tag += 1
        priv, pub = self.suite.generate_hpke_key_pair(self.rng)
        k = self.tag.to_bytes(4, "big")
        leaf = LeafNode(
            pub,
            b"sig" + k,
            Credential.basic(b"member" + k),
            _CAPS,
            source,
            Lifetime(0, 2**63) if source == LeafNodeSource.key_package else None,
            b"" if source == LeafNodeSource.commit else None,
            [],
            b"not checked here",
        )
        return leaf, priv

    def ctx(self, tree: RatchetTree) -> bytes:
        return GroupContext(
            MLS10, self.suite.suite_id, b"g", self.epoch + 1, tree.tree_hash(), b"", []
        ).encode()

    def builder(self, template: LeafNode):
        def build(encryption_key: bytes, parent_hash: bytes) -> LeafNode:
            return dataclasses.replace(
                template,
                encryption_key=encryption_key,
                leaf_node_source=LeafNodeSource.commit,
                lifetime=None,
                parent_hash=parent_hash,
            )

        return build

    def commit(
        self,
        committer: int,
        adds: int = 0,
        removes: tuple[int, ...] = (),
        updates: tuple[int, ...] = (),
        path: bool = True,
    ) -> None:
        base = self.tree.copy()
        obs = self.observer.copy()  # the observer replays the proposals on its own tree
        privs = dict(self.privs)
        for u in updates:
            leaf, priv = self.new_leaf(LeafNodeSource.update)
            base.update_leaf(u, leaf)
            obs.update_leaf(u, leaf)
            privs[u] = privs[u].with_leaf_key(priv)
        for r in removes:
            base.remove_leaf(r)
            obs.remove_leaf(r)
            del privs[r]
        joiners: dict[int, bytes] = {}
        for _ in range(adds):
            leaf, priv = self.new_leaf()
            j = base.add_leaf(leaf)
            assert obs.add_leaf(leaf) == j
            joiners[j] = priv
        self._finish(base, obs, privs, committer, joiners, path)

    def external_join(self) -> None:
        base = self.tree.copy()
        placeholder, _ = self.new_leaf(LeafNodeSource.commit)
        committed = base.copy()
        me = committed.add_leaf(placeholder)
        path, secret, new_priv, _ = create_update_path(
            committed, TreePrivate(me, b"", {}), me, self.builder(placeholder), self.ctx, (), self.rng
        )
        for m, priv in self.privs.items():
            tree = base.copy()
            assert tree.add_leaf(path.leaf_node) == me  # what a receiver of an external commit does
            got, new = apply_update_path(tree, priv, me, path, self.ctx, ())
            assert got == secret
            assert tree.tree_hash() == committed.tree_hash()
            self.privs[m] = new
        obs = self.observer
        obs.add_leaf(path.leaf_node)
        apply_update_path_public(obs, me, path, ())
        self.privs[me] = new_priv
        self._advance(committed)

    def _finish(
        self,
        base: RatchetTree,
        obs: RatchetTree,
        privs: dict[int, TreePrivate],
        c: int,
        joiners: dict[int, bytes],
        path: bool,
    ) -> None:
        excluded = set(joiners)
        if not path:
            committed = base
            for j, priv in joiners.items():
                privs[j] = TreePrivate(j, priv, {})
        else:
            committed = base.copy()
            template = committed.leaf(c)
            assert template is not None
            up, secret, new_priv, path_secrets = create_update_path(
                committed, privs[c], c, self.builder(template), self.ctx, excluded, self.rng
            )
            assert UpdatePath.decode(up.encode()) == up
            for m, priv in privs.items():
                if m == c:
                    continue
                tree = base.copy()
                out = process_update_path(tree, priv, c, up, self.ctx, excluded)
                assert out.commit_secret == secret, f"member {m} got another commit secret"
                assert out.path_secret == path_secrets[out.path_secret_node]
                assert tree.tree_hash() == committed.tree_hash()
                privs[m] = out.private
            privs[c] = new_priv
            for j, priv in joiners.items():
                ps = path_secret_for_joiner(committed, c, j, path_secrets)
                assert ps is not None
                privs[j] = private_from_joiner_path_secret(committed, j, c, priv, ps)
                # a joiner is excluded from the ciphertexts
                with pytest.raises(TreeKEMError):
                    process_update_path(base.copy(), TreePrivate(j, priv, {}), c, up, self.ctx, excluded)
            apply_update_path_public(obs, c, up, excluded)
        assert obs.tree_hash() == committed.tree_hash()
        self.observer = obs
        self.privs = privs
        self._advance(committed)

    def _advance(self, committed: RatchetTree) -> None:
        self.tree = committed
        self.epoch += 1
        assert tree_validation.parent_hash_problems(self.tree) == []
        assert tree_validation.unmerged_leaves_problems(self.tree) == []
        assert tree_validation.key_uniqueness_problems(self.tree) == []
        assert RatchetTree.from_nodes(self.suite, self.tree.to_nodes()).tree_hash() == self.tree.tree_hash()
        assert sorted(self.privs) == self.tree.leaf_indices()
        for m, priv in self.privs.items():
            assert priv.leaf_index == m
            assert priv.consistency_problems(self.suite, self.tree) == [], m


op = st.tuples(
    st.sampled_from(["commit", "add", "add", "remove", "update", "external", "add_no_path"]),
    st.integers(0, 10_000),
    st.integers(1, 3),
)


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, min_size=3, max_size=16), seed=st.integers(0, 2**32))
def test_random_group_every_member_agrees(ops: list[tuple[str, int, int]], seed: int) -> None:
    run_ops(Group(get_suite(1), seed), ops)


def run_ops(g: Group, ops: list[tuple[str, int, int]]) -> None:
    for kind, r, k in ops:
        members = sorted(g.privs)
        c = members[r % len(members)]
        others = [m for m in members if m != c]
        if kind == "commit":
            g.commit(c)
        elif kind == "add":
            g.commit(c, adds=k)
        elif kind == "add_no_path":
            g.commit(c, adds=k, path=False)
        elif kind == "remove" and others:
            g.commit(c, removes=tuple(others[(r // 7 + i) % len(others)] for i in range(min(k, len(others)))))
        elif kind == "update" and others:
            g.commit(c, updates=(others[r % len(others)],), adds=k - 1)
        elif kind == "external":
            g.external_join()


def test_long_history_with_larger_group() -> None:
    """A seeded 80-commit history growing to a few dozen members: sparse
    trees, unmerged leaves, truncation and re-growth at a realistic depth."""
    rng = DeterministicRandom(2024, "history")
    kinds = ["commit", "add", "add", "add", "remove", "update", "external", "add_no_path"]
    ops = []
    for _ in range(80):
        b = rng.random_bytes(4)
        ops.append((kinds[b[0] % len(kinds)], int.from_bytes(b[1:3], "big"), 1 + b[3] % 4))
    g = Group(get_suite(1), 7)
    run_ops(g, ops)
    assert len(g.privs) > 10


@pytest.mark.parametrize("suite_id", [2, 4, 5, 7])
def test_group_on_other_suites(suite_id: int) -> None:
    g = Group(get_suite(suite_id), suite_id)
    g.commit(0, adds=4)
    g.commit(2, adds=0, removes=(1,))
    g.commit(3, updates=(0,), adds=2, path=True)
    g.commit(0, adds=1, path=False)
    g.external_join()
    g.commit(max(g.privs))


# ------------------------------------------------------------------ rejections


def _grown_group() -> Group:
    g = Group(get_suite(1), 42)
    g.commit(0, adds=5)
    g.commit(3, adds=1, path=False)  # leaves an unmerged leaf around
    return g


def _fresh_path(g: Group, c: int) -> tuple[UpdatePath, RatchetTree]:
    committed = g.tree.copy()
    template = committed.leaf(c)
    assert template is not None
    up, _, _, _ = create_update_path(committed, g.privs[c], c, g.builder(template), g.ctx, (), g.rng)
    return up, committed


def test_rejects_wrong_path_length() -> None:
    g = _grown_group()
    up, _ = _fresh_path(g, 1)
    short = UpdatePath(up.leaf_node, up.nodes[:-1])
    with pytest.raises(TreeError, match="filtered direct path"):
        apply_update_path(g.tree.copy(), g.privs[0], 1, short, g.ctx, ())


def test_rejects_tampered_public_key_via_parent_hash() -> None:
    g = _grown_group()
    up, _ = _fresh_path(g, 1)
    other_pub = g.suite.generate_hpke_key_pair(g.rng)[1]
    nodes = list(up.nodes)
    nodes[-1] = UpdatePathNode(other_pub, nodes[-1].encrypted_path_secret)
    with pytest.raises(TreeError, match="parent_hash"):
        apply_update_path_public(g.tree.copy(), 1, UpdatePath(up.leaf_node, nodes), ())


def test_rejects_wrong_ciphertext_count_and_leaf_source() -> None:
    g = _grown_group()
    up, _ = _fresh_path(g, 1)
    nodes = list(up.nodes)
    nodes[0] = UpdatePathNode(
        nodes[0].encryption_key, [*nodes[0].encrypted_path_secret, HPKECiphertext(b"x", b"y")]
    )
    with pytest.raises(TreeError, match="ciphertexts"):
        apply_update_path_public(g.tree.copy(), 1, UpdatePath(up.leaf_node, nodes), ())
    leaf = dataclasses.replace(up.leaf_node, leaf_node_source=LeafNodeSource.update, parent_hash=None)
    with pytest.raises(TreeError, match="leaf_node_source"):
        apply_update_path_public(g.tree.copy(), 1, UpdatePath(leaf, up.nodes), ())


def test_rejects_reused_encryption_key() -> None:
    g = _grown_group()
    up, _ = _fresh_path(g, 1)
    tree = g.tree.copy()
    victim = tree.leaf(4)
    assert victim is not None
    tree._set(
        8, Node(NodeType.leaf, dataclasses.replace(victim, encryption_key=up.nodes[0].encryption_key), None)
    )
    with pytest.raises(TreeError, match="already in the tree"):
        apply_update_path_public(tree, 1, up, ())


def test_rejects_wrong_context_and_mismatching_derived_key() -> None:
    g = _grown_group()
    up, committed = _fresh_path(g, 1)
    with pytest.raises(TreeKEMError, match="decrypt"):
        apply_update_path(g.tree.copy(), g.privs[0], 1, up, b"another context", ())
    # Re-encrypt a bogus secret to leaf 0 under the right context.
    ctx = g.ctx(committed)
    kem, ct = g.suite.encrypt_with_label(
        g.tree.leaf(0).encryption_key, b"UpdatePathNode", ctx, b"\x01" * 32, g.rng
    )  # type: ignore[union-attr]
    nodes = list(up.nodes)
    nodes[0] = UpdatePathNode(nodes[0].encryption_key, [HPKECiphertext(kem, ct)])
    with pytest.raises(TreeKEMError, match="does not match"):
        apply_update_path(g.tree.copy(), g.privs[0], 1, UpdatePath(up.leaf_node, nodes), g.ctx, ())


def test_rejects_processing_own_path() -> None:
    g = _grown_group()
    up, _ = _fresh_path(g, 1)
    with pytest.raises(TreeKEMError, match="own"):
        apply_update_path(g.tree.copy(), g.privs[1], 1, up, g.ctx, ())


def test_create_does_not_mutate_inputs_private_state() -> None:
    g = _grown_group()
    before = g.privs[1].copy()
    _fresh_path(g, 1)
    assert g.privs[1] == before


def test_ratchet_tree_extension_roundtrip_after_commits() -> None:
    g = _grown_group()
    g.commit(2, removes=(5,))
    nodes = RatchetTreeExt.decode(RatchetTreeExt(g.tree.to_nodes()).encode()).nodes
    again = RatchetTree.from_nodes(g.suite, nodes)
    assert again == g.tree
    assert again.tree_hash() == g.tree.tree_hash()
    assert tree_validation.verify_parent_hashes(again)
