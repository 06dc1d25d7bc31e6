"""TreeKEM (RFC 9420 s.7.4-s.7.7, s.12.4.2): creating and processing UpdatePaths.

The public half (merging an UpdatePath into a :class:`RatchetTree` and
checking its parent hashes) is shared by members and by the hub observer,
which has no private keys; the private half (path-secret derivation, HPKE
encryption/decryption of path secrets) is member-only.

Two-phase structure (s.12.4.2): the new public keys are merged and the tree
hash recomputed *before* the provisional GroupContext is built, because that
context is the HPKE ``context`` of every path-secret ciphertext. So both
:func:`create_update_path` and :func:`apply_update_path` take the context as
a callback on the updated tree (or as bytes when the caller already has it).

Every function mutates the tree it is given (the caller's provisional copy)
and never the :class:`TreePrivate` it is given (a new one is returned), so a
rejected commit leaves the member's state untouched as long as it discards
the provisional tree. Randomness is injected (sans-IO).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field

from mimisim.mls import treemath as tm
from mimisim.mls.crypto import CipherSuite, CryptoError, RandomSource
from mimisim.mls.errors import MLSError
from mimisim.mls.structs import (
    HPKECiphertext,
    LeafNode,
    LeafNodeSource,
    UpdatePath,
    UpdatePathNode,
)
from mimisim.mls.tree import RatchetTree, TreeError

__all__ = [
    "TreeKEMError",
    "TreePrivate",
    "PathOutcome",
    "ContextArg",
    "derive_node_key_pair",
    "create_update_path",
    "merge_update_path",
    "apply_update_path_public",
    "process_update_path",
    "apply_update_path",
    "path_secret_for_joiner",
    "private_from_joiner_path_secret",
]

UPDATE_PATH_LABEL = b"UpdatePathNode"

ContextArg = bytes | Callable[[RatchetTree], bytes]
"""The provisional GroupContext encoding, or a function of the updated tree giving it."""


class TreeKEMError(MLSError):
    """An UpdatePath this member cannot process (wrong shape, undecryptable,
    derived keys that do not match the advertised ones)."""

    code = "invalidPath"


@dataclass
class TreePrivate:
    """A member's TreeKEM secrets: its leaf index, its leaf's HPKE private
    key, and the private keys of the parent nodes on its direct path that it
    knows (node index -> private key). Value-like: operations return new
    instances, so a staged commit cannot corrupt the current epoch's state."""

    leaf_index: int
    leaf_priv: bytes
    path_privs: dict[int, bytes] = field(default_factory=dict)

    def copy(self) -> TreePrivate:
        return TreePrivate(self.leaf_index, self.leaf_priv, dict(self.path_privs))

    def with_leaf_key(self, leaf_priv: bytes) -> TreePrivate:
        """After the member's own Update proposal is committed by someone else."""
        return TreePrivate(self.leaf_index, leaf_priv, dict(self.path_privs))

    def private_key(self, x: int) -> bytes | None:
        """Private key for node ``x`` if known (the leaf or a path node)."""
        if x == 2 * self.leaf_index:
            return self.leaf_priv
        return self.path_privs.get(x)

    def consistency_problems(self, suite: CipherSuite, tree: RatchetTree) -> list[str]:
        """Every key held matches a non-blank node's public key on the
        member's own direct path (the treekem vector's consistency check)."""
        problems = []
        own = 2 * self.leaf_index
        for x, priv in [(own, self.leaf_priv), *sorted(self.path_privs.items())]:
            n = tree.node(x) if x < tree.width else None
            if n is None:
                problems.append(f"private key for blank node {x}")
                continue
            if x != own and not tree.is_ancestor(x, own):
                problems.append(f"private key for node {x}, not on the direct path of leaf {self.leaf_index}")
            pub = n.leaf.encryption_key if n.leaf is not None else n.parent.encryption_key  # type: ignore[union-attr]
            if suite.hpke_public_key(priv) != pub:
                problems.append(f"private key for node {x} does not match its public key")
        return problems


@dataclass
class PathOutcome:
    """What a receiving member learns from an UpdatePath."""

    commit_secret: bytes
    private: TreePrivate
    path_secret: bytes  # the one it decrypted
    path_secret_node: int  # the filtered-direct-path node that secret belongs to


def derive_node_key_pair(suite: CipherSuite, path_secret: bytes) -> tuple[bytes, bytes]:
    """s.7.4: node_priv, node_pub = DeriveKeyPair(DeriveSecret(path_secret, "node"))."""
    return suite.derive_key_pair(suite.derive_secret(path_secret, b"node"))


def _context(ctx: ContextArg, tree: RatchetTree) -> bytes:
    return ctx(tree) if callable(ctx) else ctx


def _recipients(tree: RatchetTree, copath_child: int, excluded: Collection[int]) -> list[int]:
    """Resolution of the copath child minus the joiners of this commit (s.7.6)."""
    res = tree._resolution(copath_child)
    if not excluded:
        return list(res)
    return [r for r in res if r & 1 or (r >> 1) not in excluded]


# ------------------------------------------------------------------ sender side


def create_update_path(
    tree: RatchetTree,
    private: TreePrivate,
    leaf_index: int,
    new_leaf_node_builder: Callable[[bytes, bytes], LeafNode],
    group_context: ContextArg,
    excluded_leaves: Iterable[int],
    rng: RandomSource,
) -> tuple[UpdatePath, bytes, TreePrivate, dict[int, bytes]]:
    """s.7.4-s.7.6 for the committer; ``tree`` is the tree after the
    commit's proposals and is updated in place.

    ``new_leaf_node_builder(encryption_key, parent_hash)`` returns the
    committer's signed LeafNode (source ``commit``); ``group_context`` is
    evaluated on the updated, re-hashed tree. Returns ``(update_path,
    commit_secret, new_private, path_secrets)`` where ``path_secrets`` maps
    each filtered-direct-path node to its path secret (for Welcomes).
    """
    suite = tree.suite
    if private.leaf_index != leaf_index:
        raise TreeKEMError(f"private state is for leaf {private.leaf_index}, not {leaf_index}")
    if tree.leaf(leaf_index) is None:
        raise TreeKEMError(f"committer leaf {leaf_index} is blank")
    excluded = frozenset(excluded_leaves)
    fdp = tree.filtered_path_with_copath(leaf_index)

    leaf_secret = rng.random_bytes(suite.hash_len)
    leaf_priv, leaf_pub = derive_node_key_pair(suite, leaf_secret)
    path_secrets: dict[int, bytes] = {}
    privs: dict[int, bytes] = {}
    pubs: list[bytes] = []
    ps = suite.derive_secret(leaf_secret, b"path")
    for p, _ in fdp:
        path_secrets[p] = ps
        priv, pub = derive_node_key_pair(suite, ps)
        privs[p] = priv
        pubs.append(pub)
        ps = suite.derive_secret(ps, b"path")
    commit_secret = ps

    leaf_parent_hash = tree.set_path(leaf_index, pubs)
    leaf = new_leaf_node_builder(leaf_pub, leaf_parent_hash)
    if leaf.encryption_key != leaf_pub:
        raise TreeKEMError("leaf builder changed the encryption key")
    if leaf.leaf_node_source != LeafNodeSource.commit or leaf.parent_hash != leaf_parent_hash:
        raise TreeKEMError("leaf builder must produce a commit-sourced leaf carrying the given parent hash")
    tree.set_leaf(leaf_index, leaf)

    ctx = _context(group_context, tree)
    nodes: list[UpdatePathNode] = []
    for (p, s), pub in zip(fdp, pubs, strict=True):
        cts = []
        secret = path_secrets[p]
        for key in tree.nodes_with_keys(_recipients(tree, s, excluded)):
            kem_output, ct = suite.encrypt_with_label(key, UPDATE_PATH_LABEL, ctx, secret, rng)
            cts.append(HPKECiphertext(kem_output, ct))
        nodes.append(UpdatePathNode(pub, cts))
    return UpdatePath(leaf, nodes), commit_secret, TreePrivate(leaf_index, leaf_priv, privs), path_secrets


# ------------------------------------------------------------------ public (server) side


def merge_update_path(
    tree: RatchetTree,
    sender_leaf: int,
    update_path: UpdatePath,
    excluded_leaves: Iterable[int] | None = None,
) -> list[tuple[int, int]]:
    """Validate and merge an UpdatePath's public part (s.7.5, s.7.9.2, s.12.4.2).

    Checks: the path length equals the sender's filtered direct path; when
    ``excluded_leaves`` is given, each node has one ciphertext per member of
    its copath child's resolution minus the joiners; the leaf is
    commit-sourced; no path key already appears in the tree (nor twice in
    the path); and the leaf's parent_hash matches the chain recomputed from
    the merged path. Returns the filtered direct path as (node, copath child).
    Raises :class:`TreeError` (tree unchanged unless the final parent-hash
    check fails, after which the provisional tree must be discarded).
    """
    if tree.leaf(sender_leaf) is None:
        raise TreeError(f"UpdatePath sender leaf {sender_leaf} is blank")
    fdp = tree.filtered_path_with_copath(sender_leaf)
    if len(update_path.nodes) != len(fdp):
        raise TreeError(f"UpdatePath has {len(update_path.nodes)} nodes, filtered direct path has {len(fdp)}")
    if excluded_leaves is not None:
        excluded = frozenset(excluded_leaves)
        for (p, s), upn in zip(fdp, update_path.nodes, strict=True):
            want = len(_recipients(tree, s, excluded))
            if len(upn.encrypted_path_secret) != want:
                raise TreeError(
                    f"UpdatePath node for {p} has {len(upn.encrypted_path_secret)} ciphertexts, expected {want}"
                )
    leaf = update_path.leaf_node
    if leaf.leaf_node_source != LeafNodeSource.commit:
        raise TreeError("UpdatePath leaf must have leaf_node_source commit")
    keys = [leaf.encryption_key] + [n.encryption_key for n in update_path.nodes]
    if len(set(keys)) != len(keys):
        raise TreeError("UpdatePath repeats an encryption key")
    # An external committer's leaf was already placed (the same LeafNode).
    placed = tree.leaf(sender_leaf) == leaf
    for j, k in enumerate(keys):
        count = tree.encryption_key_count(k) - (1 if j == 0 and placed else 0)
        if count:
            raise TreeError("UpdatePath encryption key already in the tree")
    ph = tree.set_path(sender_leaf, keys[1:])
    if leaf.parent_hash != ph:
        raise TreeError("UpdatePath leaf parent_hash does not match the merged path")
    tree.set_leaf(sender_leaf, leaf)
    return fdp


def apply_update_path_public(
    tree: RatchetTree,
    sender_leaf: int,
    update_path: UpdatePath,
    excluded_leaves: Iterable[int] | None = None,
) -> None:
    """The hub observer's variant: full public validation and merge, no
    decryption. Pass the commit's joiners as ``excluded_leaves`` to also
    check the ciphertext counts. Costs O(log n) hashes on a cached tree."""
    merge_update_path(tree, sender_leaf, update_path, excluded_leaves)


# ------------------------------------------------------------------ member side


def _derive_up(
    suite: CipherSuite,
    fdp: list[tuple[int, int]],
    start: int,
    path_secret: bytes,
    expected_pubs: list[bytes],
) -> tuple[dict[int, bytes], bytes]:
    """Derive node keys from ``fdp[start]`` to the root, checking each
    public key; returns (node -> private key, commit_secret)."""
    privs: dict[int, bytes] = {}
    ps = path_secret
    for t in range(start, len(fdp)):
        priv, pub = derive_node_key_pair(suite, ps)
        if pub != expected_pubs[t]:
            raise TreeKEMError(f"derived public key for node {fdp[t][0]} does not match the UpdatePath")
        privs[fdp[t][0]] = priv
        ps = suite.derive_secret(ps, b"path")
    return privs, ps


def process_update_path(
    tree: RatchetTree,
    private: TreePrivate,
    sender_leaf: int,
    update_path: UpdatePath,
    group_context: ContextArg,
    excluded_leaves: Iterable[int] = (),
) -> PathOutcome:
    """s.7.5 and s.12.4.2 for a receiving member: merge (with all public
    checks), then decrypt the one path secret addressed to this member and
    derive the rest of the path, checking every derived public key."""
    suite = tree.suite
    me = private.leaf_index
    if me == sender_leaf:
        raise TreeKEMError("a member cannot process its own UpdatePath")
    excluded = frozenset(excluded_leaves)
    if me in excluded:
        raise TreeKEMError("a joiner learns its path secret from the Welcome")
    fdp = merge_update_path(tree, sender_leaf, update_path, excluded)
    ctx = _context(group_context, tree)
    own = 2 * me
    t = next((t for t, (_, s) in enumerate(fdp) if tree.is_ancestor(s, own)), None)
    if t is None:
        raise TreeKEMError(f"leaf {me} is not below the sender's filtered direct path")
    p, s = fdp[t]
    recipients = _recipients(tree, s, excluded)
    j = next(
        (
            j
            for j, r in enumerate(recipients)
            if r == own or (r in private.path_privs and tree.is_ancestor(r, own))
        ),
        None,
    )
    if j is None:
        raise TreeKEMError(f"no private key for any node in the resolution of {s}")
    key = private.private_key(recipients[j])
    assert key is not None
    ct = update_path.nodes[t].encrypted_path_secret[j]
    try:
        path_secret = suite.decrypt_with_label(key, UPDATE_PATH_LABEL, ctx, ct.kem_output, ct.ciphertext)
    except CryptoError as e:
        raise TreeKEMError(f"cannot decrypt the path secret for node {p}: {e}") from None
    privs, commit_secret = _derive_up(
        suite, fdp, t, path_secret, [n.encryption_key for n in update_path.nodes]
    )
    sender_path = set(tree.direct_path(2 * sender_leaf))
    # Also forget keys of nodes the commit's proposals blanked (Update/Remove).
    width = tree.width
    kept = {
        x: k
        for x, k in private.path_privs.items()
        if x not in sender_path and x < width and tree.node(x) is not None
    }
    kept.update(privs)
    return PathOutcome(commit_secret, TreePrivate(me, private.leaf_priv, kept), path_secret, p)


def apply_update_path(
    tree: RatchetTree,
    private: TreePrivate,
    sender_leaf: int,
    update_path: UpdatePath,
    group_context: ContextArg,
    excluded_leaves: Iterable[int] = (),
) -> tuple[bytes, TreePrivate]:
    """:func:`process_update_path` returning ``(commit_secret, new_private)``."""
    out = process_update_path(tree, private, sender_leaf, update_path, group_context, excluded_leaves)
    return out.commit_secret, out.private


# ------------------------------------------------------------------ joiners (s.12.4.3.1)


def path_secret_for_joiner(
    tree: RatchetTree, committer_leaf: int, joiner_leaf: int, path_secrets: Mapping[int, bytes]
) -> bytes | None:
    """The path secret for the GroupSecrets of a joiner: the one at the
    lowest common ancestor of committer and joiner (on the committer's
    filtered direct path, since the joiner is in its copath resolution)."""
    if committer_leaf == joiner_leaf:
        return None
    return path_secrets.get(tm.common_ancestor(2 * committer_leaf, 2 * joiner_leaf))


def private_from_joiner_path_secret(
    tree: RatchetTree, own_leaf: int, committer_leaf: int, leaf_priv: bytes, path_secret: bytes
) -> TreePrivate:
    """A joiner's TreePrivate from the Welcome's path secret: derive keys
    from the common ancestor with the committer up the committer's filtered
    direct path, checking each against the tree."""
    lca = tm.common_ancestor(2 * own_leaf, 2 * committer_leaf)
    fdp = tree.filtered_path_with_copath(committer_leaf)
    nodes = [p for p, _ in fdp]
    if lca not in nodes:
        raise TreeKEMError(f"common ancestor {lca} is not on the committer's filtered direct path")
    expected = []
    for p in nodes:
        pn = tree.parent_node(p)
        if pn is None:
            raise TreeKEMError(f"committer path node {p} is blank")
        expected.append(pn.encryption_key)
    privs, _ = _derive_up(tree.suite, fdp, nodes.index(lca), path_secret, expected)
    return TreePrivate(own_leaf, leaf_priv, privs)
