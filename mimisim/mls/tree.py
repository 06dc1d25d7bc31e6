"""The array-based ratchet tree (RFC 9420 s.4, s.7.8-s.7.10, s.12.1, s.12.4.3.1).

A :class:`RatchetTree` is a list of ``Node | None`` in array order whose leaf
count is always a power of two (s.7.8: the tree grows by doubling and shrinks
by halving), so every node has both children and tree math needs no special
cases.

Performance is the reason for the shape of this module. The simulator runs
groups of 1000 members where every member and the hub process every commit,
so a commit must cost O(log n) hash computations, not O(n):

* Nodes are treated as immutable values. Mutations *replace* the Node in its
  slot (never edit a Node in place), which makes :meth:`RatchetTree.copy` a
  plain list copy that can share every Node with the original.
* The tree hash (s.7.8) and the resolution (s.4.1.1) of a node depend only on
  its subtree, so both are cached per node and a mutation invalidates the
  changed slot and its ancestors only. Invariant: if a node's cache entry is
  valid, so are its descendants' (computation fills bottom-up), hence
  invalidation may stop at the first ancestor that is already invalid.
* Key-uniqueness questions (s.7.3, s.12.4.2) are answered from lazily built
  count indexes of encryption and signature keys, kept up to date by the one
  mutation primitive :meth:`RatchetTree._set`.

Everything here is public-tree logic; private keys live in
:mod:`mimisim.mls.treekem`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TypeVar

from mimisim.codec import encode_opaque, encode_varint
from mimisim.mls import treemath as tm
from mimisim.mls.crypto import CipherSuite
from mimisim.mls.errors import ValidationError
from mimisim.mls.structs import (
    LeafNode,
    LeafNodeSource,
    Node,
    NodeType,
    ParentNode,
)

__all__ = ["TreeError", "RatchetTree", "leaf_node", "parent_node"]


class TreeError(ValidationError):
    """A ratchet tree (or an operation on it) that violates RFC 9420."""

    code = "invalidTree"


def leaf_node(leaf: LeafNode) -> Node:
    """Wrap a LeafNode as a tree Node."""
    return Node(NodeType.leaf, leaf, None)


def parent_node(parent: ParentNode) -> Node:
    """Wrap a ParentNode as a tree Node."""
    return Node(NodeType.parent, None, parent)


def _encryption_key(node: Node) -> bytes:
    return node.leaf.encryption_key if node.leaf is not None else node.parent.encryption_key  # type: ignore[union-attr]


def _stored_parent_hash(node: Node) -> bytes | None:
    """The parent_hash a node carries (None for leaves that have none)."""
    if node.parent is not None:
        return node.parent.parent_hash
    assert node.leaf is not None
    return node.leaf.parent_hash if node.leaf.leaf_node_source == LeafNodeSource.commit else None


def _profile(leaf: LeafNode) -> tuple[int, tuple[int, ...]]:
    return int(leaf.credential.credential_type), tuple(leaf.capabilities.credentials)


#: A leaf's supported (extension types, proposal types, credential types): what
#: the group-wide capability checks of s.12.1 and s.12.2 look at.
CapProfile = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


def _cap_profile(leaf: LeafNode) -> CapProfile:
    c = leaf.capabilities
    return tuple(c.extensions), tuple(c.proposals), tuple(c.credentials)


def _encode_parent(p: ParentNode) -> bytes:
    """ParentNode encoding without the generic codec (hot path)."""
    unmerged = b"".join(i.to_bytes(4, "big") for i in p.unmerged_leaves)
    return (
        encode_opaque(p.encryption_key)
        + encode_opaque(p.parent_hash)
        + encode_varint(len(unmerged))
        + unmerged
    )


def _subtree_node_range(x: int) -> tuple[int, int]:
    """Inclusive node-index range covered by the subtree rooted at ``x``."""
    half = (1 << tm.level(x)) - 1
    return x - half, x + half


def _parent_step(x: int) -> int:
    # Parent in an unbounded complete tree; exact because n_leaves is a power of two.
    k = ((~x) & (x + 1)).bit_length() - 1
    return (x | (1 << k)) ^ (((x >> (k + 1)) & 1) << (k + 1))


_K = TypeVar("_K", bound=Hashable)


def _recount(index: dict[_K, int], old_key: _K | None, new_key: _K | None) -> None:
    """Move one count of a multiset index from ``old_key`` to ``new_key``
    (either may be None: a node removed or added); a key whose count reaches
    0 leaves the index, so ``key in index`` means some member has it."""
    if old_key is not None:
        c = index.get(old_key, 0) - 1
        if c > 0:
            index[old_key] = c
        else:
            index.pop(old_key, None)
    if new_key is not None:
        index[new_key] = index.get(new_key, 0) + 1


class RatchetTree:
    """An RFC 9420 ratchet tree with cached tree hashes and resolutions.

    47 methods, each one operation of RFC 9420 s.4, s.7.8-s.7.9 (structure,
    direct paths and resolutions, add/update/remove/blank, tree and parent
    hashes, the incremental key indexes they invalidate): the caches are the
    reason they stay together (every mutation invalidates exactly the hashes
    and resolutions above it). Whole-tree validation is in
    :mod:`mimisim.mls.tree_validation`."""

    __slots__ = ("suite", "_nodes", "_n_leaves", "_root", "_hash", "_res", "_enc_index", "_sig_index", "_prof_index",
                 "_cap_index")

    def __init__(self, suite: CipherSuite, n_leaves: int = 1) -> None:
        if n_leaves < 1 or n_leaves & (n_leaves - 1):
            raise TreeError(f"leaf count must be a power of two, got {n_leaves}")
        self.suite = suite
        width = 2 * n_leaves - 1
        self._nodes: list[Node | None] = [None] * width
        self._n_leaves = n_leaves
        self._root = tm.root(n_leaves)
        self._hash: list[bytes | None] = [None] * width
        self._res: list[tuple[int, ...] | None] = [None] * width
        self._enc_index: dict[bytes, int] | None = None
        self._sig_index: dict[bytes, int] | None = None
        self._prof_index: dict[tuple[int, tuple[int, ...]], int] | None = None
        self._cap_index: dict[CapProfile, int] | None = None

    # ------------------------------------------------------------ construction

    @classmethod
    def from_nodes(cls, suite: CipherSuite, nodes: Sequence[Node | None]) -> RatchetTree:
        """Build from a ``ratchet_tree`` extension's node list (s.12.4.3.3).

        The list must end with a non-blank node; it is padded with blanks to
        the smallest full tree. Node types must match positions (leaves at
        even indices).
        """
        if not nodes:
            raise TreeError("empty ratchet tree")
        if nodes[-1] is None:
            raise TreeError("ratchet tree must not end with a blank node")
        n_leaves = 1
        while 2 * n_leaves - 1 < len(nodes):
            n_leaves *= 2
        tree = cls(suite, n_leaves)
        for x, node in enumerate(nodes):
            if node is None:
                continue
            want = NodeType.leaf if x % 2 == 0 else NodeType.parent
            if node.node_type != want:
                raise TreeError(f"node {x} must be a {want.name} node")
            tree._nodes[x] = node
        return tree

    def to_nodes(self) -> list[Node | None]:
        """The node list for a ``ratchet_tree`` extension: trailing blanks removed."""
        nodes = list(self._nodes)
        while nodes and nodes[-1] is None:
            nodes.pop()
        return nodes

    def copy(self) -> RatchetTree:
        """A cheap copy sharing the (immutable) Nodes and the cache entries."""
        t = RatchetTree.__new__(RatchetTree)
        t.suite = self.suite
        t._nodes = self._nodes.copy()
        t._n_leaves = self._n_leaves
        t._root = self._root
        t._hash = self._hash.copy()
        t._res = self._res.copy()
        t._enc_index = None if self._enc_index is None else self._enc_index.copy()
        t._sig_index = None if self._sig_index is None else self._sig_index.copy()
        t._prof_index = None if self._prof_index is None else self._prof_index.copy()
        t._cap_index = None if self._cap_index is None else self._cap_index.copy()
        return t

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RatchetTree):
            return NotImplemented
        return self.suite.suite_id == other.suite.suite_id and self.to_nodes() == other.to_nodes()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<RatchetTree {len(self.leaf_indices())}/{self._n_leaves} leaves>"

    # ------------------------------------------------------------ accessors

    @property
    def n_leaves(self) -> int:
        return self._n_leaves

    @property
    def width(self) -> int:
        """Number of node slots (2 * n_leaves - 1)."""
        return len(self._nodes)

    @property
    def root(self) -> int:
        return self._root

    def node(self, x: int) -> Node | None:
        return self._nodes[x]

    def leaf(self, i: int) -> LeafNode | None:
        """The LeafNode at leaf index ``i`` (None if blank or out of range)."""
        if not 0 <= i < self._n_leaves:
            return None
        n = self._nodes[2 * i]
        return None if n is None else n.leaf

    def parent_node(self, x: int) -> ParentNode | None:
        n = self._nodes[x]
        return None if n is None else n.parent

    def leaf_indices(self) -> list[int]:
        """Leaf indices of the non-blank leaves, ascending."""
        nodes = self._nodes
        return [x >> 1 for x in range(0, len(nodes), 2) if nodes[x] is not None]

    def members(self) -> list[tuple[int, LeafNode]]:
        """(leaf index, LeafNode) of the non-blank leaves, ascending."""
        out: list[tuple[int, LeafNode]] = []
        for i in self.leaf_indices():
            leaf = self.leaf(i)
            assert leaf is not None  # leaf_indices lists only non-blank leaves
            out.append((i, leaf))
        return out

    def find_leaf(self, pred: Callable[[LeafNode], bool]) -> int | None:
        """Leftmost non-blank leaf index whose LeafNode satisfies ``pred``."""
        nodes = self._nodes
        for x in range(0, len(nodes), 2):
            n = nodes[x]
            if n is not None and pred(n.leaf):  # type: ignore[arg-type]
                return x >> 1
        return None

    def parent(self, x: int) -> int:
        """Parent node index of ``x`` (not the root)."""
        if x == self._root:
            raise TreeError(f"root node {x} has no parent")
        return _parent_step(x)

    def direct_path(self, x: int) -> list[int]:
        """Ancestors of node ``x``, bottom-up, including the root."""
        out: list[int] = []
        r = self._root
        while x != r:
            x = _parent_step(x)
            out.append(x)
        return out

    def is_ancestor(self, a: int, x: int) -> bool:
        """Whether node ``a`` is ``x`` or an ancestor of ``x``."""
        lo, hi = _subtree_node_range(a)
        return lo <= x <= hi

    # ------------------------------------------------------------ mutation primitive

    def _set(self, x: int, node: Node | None) -> None:
        """Replace slot ``x``; keep caches and key indexes consistent."""
        old = self._nodes[x]
        if old is node:
            return
        self._nodes[x] = node
        if self._enc_index is not None:
            _recount(self._enc_index, None if old is None else _encryption_key(old),
                     None if node is None else _encryption_key(node))
        if x % 2 == 0:  # leaf-only indexes
            if self._sig_index is not None:
                _recount(self._sig_index, None if old is None else old.leaf.signature_key,  # type: ignore[union-attr]
                         None if node is None else node.leaf.signature_key)  # type: ignore[union-attr]
            if self._prof_index is not None:
                _recount(self._prof_index, None if old is None else _profile(old.leaf),  # type: ignore[arg-type]
                         None if node is None else _profile(node.leaf))  # type: ignore[arg-type]
            if self._cap_index is not None:
                _recount(self._cap_index, None if old is None else _cap_profile(old.leaf),  # type: ignore[arg-type]
                         None if node is None else _cap_profile(node.leaf))  # type: ignore[arg-type]
        self._invalidate(x)

    def _invalidate(self, x: int) -> None:
        # Cache invariant: a valid entry implies valid descendants, so an
        # entry that is already invalid (hash and resolution) has invalid
        # ancestors and the walk can stop there.
        h, res = self._hash, self._res
        r = self._root
        while h[x] is not None or res[x] is not None:
            h[x] = None
            res[x] = None
            if x == r:
                return
            x = _parent_step(x)

    def _extend(self) -> None:
        """Double the leaf count (s.7.8); the old root becomes the new root's left child."""
        n = self._n_leaves
        extra = 2 * n
        self._nodes.extend([None] * extra)
        self._hash.extend([None] * extra)
        self._res.extend([None] * extra)
        self._n_leaves = 2 * n
        self._root = tm.root(2 * n)

    def _truncate(self) -> None:
        """Halve while the right half has no non-blank leaf (s.12.1.3)."""
        nodes = self._nodes
        while self._n_leaves > 1:
            n = self._n_leaves
            half = n // 2
            if any(nodes[2 * i] is not None for i in range(half, n)):
                return
            for x in range(2 * half - 1, 2 * n - 1):
                if nodes[x] is not None:
                    self._set(x, None)  # keep key indexes right (stray parents)
            new_width = 2 * half - 1
            del nodes[new_width:]
            del self._hash[new_width:]
            del self._res[new_width:]
            self._n_leaves = half
            self._root = tm.root(half)

    def blank_direct_path(self, i: int) -> None:
        for p in self.direct_path(2 * i):
            if self._nodes[p] is not None:
                self._set(p, None)

    # ------------------------------------------------------------ proposals (s.12.1)

    def add_leaf(self, leaf: LeafNode) -> int:
        """s.12.1.1: place ``leaf`` in the leftmost blank leaf (extending if
        none) and list it as unmerged at every non-blank ancestor."""
        nodes = self._nodes
        x = next((x for x in range(0, len(nodes), 2) if nodes[x] is None), None)
        if x is None:
            x = len(nodes) + 1
            self._extend()
        i = x >> 1
        for p in self.direct_path(x):
            pn = self._nodes[p]
            if pn is not None:
                par = pn.parent
                assert par is not None
                self._set(
                    p, parent_node(ParentNode(par.encryption_key, par.parent_hash, [*par.unmerged_leaves, i]))
                )
        self._set(x, leaf_node(leaf))
        return i

    def update_leaf(self, i: int, leaf: LeafNode) -> None:
        """s.12.1.2: replace leaf ``i`` and blank its direct path."""
        if self.leaf(i) is None:
            raise TreeError(f"update of blank leaf {i}")
        self.blank_direct_path(i)
        self._set(2 * i, leaf_node(leaf))

    def remove_leaf(self, i: int) -> None:
        """s.12.1.3: blank leaf ``i`` and its direct path, then truncate."""
        if self.leaf(i) is None:
            raise TreeError(f"removal of blank leaf {i}")
        self.blank_direct_path(i)
        self._set(2 * i, None)
        self._truncate()

    def set_leaf(self, i: int, leaf: LeafNode) -> None:
        """Replace leaf ``i`` without touching its path (UpdatePath merge)."""
        if not 0 <= i < self._n_leaves:
            raise TreeError(f"leaf {i} outside the tree")
        self._set(2 * i, leaf_node(leaf))

    # ------------------------------------------------------------ resolution (s.4.1)

    def resolution(self, x: int) -> list[int]:
        """s.4.1.1: the non-blank nodes covering the subtree of ``x``,
        including unmerged leaves right after the node that lists them."""
        return list(self._resolution(x))

    def _resolution(self, x: int) -> tuple[int, ...]:
        r = self._res[x]
        if r is not None:
            return r
        n = self._nodes[x]
        if n is not None:
            if n.parent is not None:
                r = (x, *(2 * i for i in n.parent.unmerged_leaves))
            else:
                r = (x,)
        elif x & 1 == 0:
            r = ()
        else:
            k = tm.level(x)
            r = self._resolution(x ^ (1 << (k - 1))) + self._resolution(x ^ (3 << (k - 1)))
        self._res[x] = r
        return r

    def filtered_path_with_copath(self, i: int) -> list[tuple[int, int]]:
        """s.4.1.2: (node, copath child) pairs of leaf ``i``'s filtered direct
        path, bottom-up. A direct-path node is dropped when its child on the
        copath has an empty resolution."""
        out: list[tuple[int, int]] = []
        x = 2 * i
        r = self._root
        while x != r:
            p = _parent_step(x)
            s = p ^ (3 << (tm.level(p) - 1)) if x < p else p ^ (1 << (tm.level(p) - 1))
            if self._resolution(s):
                out.append((p, s))
            x = p
        return out

    def filtered_direct_path(self, i: int) -> list[int]:
        return [p for p, _ in self.filtered_path_with_copath(i)]

    def filtered_copath(self, i: int) -> list[int]:
        return [s for _, s in self.filtered_path_with_copath(i)]

    # ------------------------------------------------------------ tree hash (s.7.8)

    def tree_hash(self) -> bytes:
        """The root tree hash (what GroupContext.tree_hash carries)."""
        return self.node_hash(self._root)

    def node_hash(self, x: int) -> bytes:
        """Tree hash of the subtree rooted at node ``x``, from the cache when valid."""
        h = self._hash[x]
        if h is not None:
            return h
        n = self._nodes[x]
        if x & 1 == 0:
            h = self._leaf_hash(x >> 1, None if n is None else n.leaf)
        else:
            k = tm.level(x)
            lh = self.node_hash(x ^ (1 << (k - 1)))
            rh = self.node_hash(x ^ (3 << (k - 1)))
            h = self._parent_hash_input_hash(None if n is None else n.parent, lh, rh)
        self._hash[x] = h
        return h

    def _leaf_hash(self, i: int, leaf: LeafNode | None) -> bytes:
        # TreeHashInput{node_type=leaf, LeafNodeHashInput{leaf_index, optional<LeafNode>}}
        body = b"\x00" if leaf is None else b"\x01" + leaf.encode()
        return self.suite.hash(b"\x01" + i.to_bytes(4, "big") + body)

    def _parent_hash_input_hash(self, p: ParentNode | None, lh: bytes, rh: bytes) -> bytes:
        # TreeHashInput{node_type=parent, ParentNodeHashInput{optional<ParentNode>, left, right}}
        body = b"\x00" if p is None else b"\x01" + _encode_parent(p)
        return self.suite.hash(b"\x02" + body + encode_opaque(lh) + encode_opaque(rh))

    def _hash_without(self, x: int, excluded: frozenset[int]) -> bytes:
        """Tree hash of ``x`` with the leaves in ``excluded`` blanked and
        removed from all unmerged_leaves lists (s.7.9.1). Subtrees holding no
        excluded leaf come from the cache."""
        lo, hi = _subtree_node_range(x)
        if not any(lo <= 2 * i <= hi for i in excluded):
            return self.node_hash(x)
        if x & 1 == 0:
            return self._leaf_hash(x >> 1, None)
        n = self._nodes[x]
        p = None if n is None else n.parent
        if p is not None:
            p = ParentNode(
                p.encryption_key, p.parent_hash, [i for i in p.unmerged_leaves if i not in excluded]
            )
        k = tm.level(x)
        lh = self._hash_without(x ^ (1 << (k - 1)), excluded)
        rh = self._hash_without(x ^ (3 << (k - 1)), excluded)
        return self._parent_hash_input_hash(p, lh, rh)

    # ------------------------------------------------------------ parent hash (s.7.9)

    def original_sibling_tree_hash(self, p: int, s: int) -> bytes:
        """s.7.9.1: tree hash of ``s`` (a child of ``p``) with ``p``'s unmerged leaves removed."""
        par = self.parent_node(p)
        if par is None:
            raise TreeError(f"parent hash of blank node {p}")
        return self._hash_without(s, frozenset(par.unmerged_leaves))

    def parent_hash_of(self, p: int, s: int) -> bytes:
        """s.7.9: the parent hash that ``p``'s child on the side away from
        ``s`` must carry, i.e. Hash(ParentHashInput(p, original sibling s))."""
        par = self.parent_node(p)
        if par is None:
            raise TreeError(f"parent hash of blank node {p}")
        return self._parent_hash_value(
            par.encryption_key, par.parent_hash, self.original_sibling_tree_hash(p, s)
        )

    def _parent_hash_value(self, key: bytes, ph: bytes, sibling_hash: bytes) -> bytes:
        return self.suite.hash(encode_opaque(key) + encode_opaque(ph) + encode_opaque(sibling_hash))

    def set_path(self, i: int, keys: Sequence[bytes]) -> bytes:
        """Merge new public keys for leaf ``i``'s filtered direct path (s.7.5).

        Blanks the whole direct path, writes ``ParentNode(key, parent_hash,
        [])`` on the filtered direct path with parent hashes computed from
        the root down (s.7.9), and returns the parent hash that the new leaf
        must carry. Does not touch the leaf itself (see :meth:`set_leaf`).
        """
        fdp = self.filtered_path_with_copath(i)
        if len(keys) != len(fdp):
            raise TreeError(f"path has {len(keys)} nodes, filtered direct path has {len(fdp)}")
        self.blank_direct_path(i)
        ph = b""
        for (p, s), key in zip(reversed(fdp), reversed(keys), strict=True):
            self._set(p, parent_node(ParentNode(key, ph, [])))
            # p's unmerged list is empty, so the sibling's original hash is its hash.
            ph = self._parent_hash_value(key, ph, self.node_hash(s))
        return ph

    # ------------------------------------------------------------ key indexes

    def _build_indexes(self) -> None:
        enc: dict[bytes, int] = {}
        sig: dict[bytes, int] = {}
        prof: dict[tuple[int, tuple[int, ...]], int] = {}
        caps: dict[CapProfile, int] = {}
        for x, n in enumerate(self._nodes):
            if n is None:
                continue
            k = _encryption_key(n)
            enc[k] = enc.get(k, 0) + 1
            if x % 2 == 0:
                s = n.leaf.signature_key  # type: ignore[union-attr]
                sig[s] = sig.get(s, 0) + 1
                pk = _profile(n.leaf)  # type: ignore[arg-type]
                prof[pk] = prof.get(pk, 0) + 1
                ck = _cap_profile(n.leaf)  # type: ignore[arg-type]
                caps[ck] = caps.get(ck, 0) + 1
        self._enc_index = enc
        self._sig_index = sig
        self._prof_index = prof
        self._cap_index = caps

    def encryption_key_count(self, key: bytes) -> int:
        """How many non-blank nodes (leaves and parents) use this HPKE key."""
        if self._enc_index is None:
            self._build_indexes()
        assert self._enc_index is not None
        return self._enc_index.get(key, 0)

    def signature_key_count(self, key: bytes) -> int:
        """How many non-blank leaves use this signature key."""
        if self._sig_index is None:
            self._build_indexes()
        assert self._sig_index is not None
        return self._sig_index.get(key, 0)

    def leaf_profile_counts(self) -> dict[tuple[int, tuple[int, ...]], int]:
        """How many non-blank leaves have each (credential type, supported credential types)
        profile: what the credential compatibility checks of s.7.3 look at, so that they cost
        one test per distinct profile (usually one) instead of one per member."""
        if self._prof_index is None:
            self._build_indexes()
        assert self._prof_index is not None
        return self._prof_index

    def drop_indexes(self) -> None:
        """Forget the key, profile and capability indexes (rebuilt on demand).
        A member keeps the trees of a few past epochs to read late messages;
        their indexes are most of a large tree's memory (four dicts over every
        node) and past trees are only looked up, never validated against."""
        self._enc_index = self._sig_index = self._prof_index = self._cap_index = None

    def leaf_capability_counts(self) -> dict[CapProfile, int]:
        """How many non-blank leaves support each (extension types, proposal types,
        credential types): the checks that every member supports a proposal type or
        the group's extensions cost one test per distinct profile (usually one)."""
        if self._cap_index is None:
            self._build_indexes()
        assert self._cap_index is not None
        return self._cap_index

    # ------------------------------------------------------------ misc helpers

    def subtree_leaves(self, x: int) -> range:
        return tm.subtree_leaves(x)

    def nodes_with_keys(self, xs: Iterable[int]) -> list[bytes]:
        """Encryption keys of the given non-blank nodes (e.g. a resolution)."""
        out = []
        for x in xs:
            n = self._nodes[x]
            if n is None:
                raise TreeError(f"node {x} is blank")
            out.append(_encryption_key(n))
        return out
