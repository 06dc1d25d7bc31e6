"""Array-tree arithmetic on node indices (RFC 9420 s.4.1-4.2, Appendix C).

Nodes of a ratchet tree are stored in an array: leaves at even indices, parent
nodes at odd ones, and the level of a node is the number of trailing one bits
of its index. Everything the tree, TreeKEM and the secret tree need (children,
parents, direct paths, copaths) follows from bit arithmetic on the index, so
nothing here allocates a tree.

The functions take ``n_leaves`` where the answer depends on the tree width.
RFC 9420 s.7.8 keeps ``n_leaves`` a power of two (the tree is always complete),
but the functions follow Appendix C and also work for other widths.

Operations that have no answer (the children of a leaf, the parent or sibling
of the root) raise :class:`TreeMathError` rather than returning a sentinel, so
that a misuse cannot silently address the wrong node.
"""

from __future__ import annotations

__all__ = [
    "TreeMathError",
    "log2",
    "level",
    "node_width",
    "root",
    "left",
    "right",
    "parent",
    "sibling",
    "direct_path",
    "copath",
    "is_leaf",
    "leaf_node_index",
    "node_leaf_index",
    "common_ancestor",
    "subtree_leaves",
]


class TreeMathError(ValueError):
    """A tree-math question with no answer (e.g. the parent of the root)."""


def log2(x: int) -> int:
    """Floor of log2(x), with log2(0) == 0 as in Appendix C."""
    if x <= 0:
        return 0
    return x.bit_length() - 1


def level(x: int) -> int:
    """Level of node ``x``: 0 for leaves, the count of trailing 1 bits otherwise."""
    # (~x & (x + 1)) isolates the lowest 0 bit of x; its position is the level.
    return ((~x) & (x + 1)).bit_length() - 1


def node_width(n_leaves: int) -> int:
    """Number of array slots used by a tree with ``n_leaves`` leaves."""
    if n_leaves <= 0:
        return 0
    return 2 * (n_leaves - 1) + 1


def root(n_leaves: int) -> int:
    """Node index of the root of a tree with ``n_leaves`` leaves."""
    if n_leaves <= 0:
        raise TreeMathError("an empty tree has no root")
    w = node_width(n_leaves)
    return (1 << log2(w)) - 1


def is_leaf(x: int) -> bool:
    """Leaves sit at even node indices."""
    return x & 1 == 0


def leaf_node_index(leaf: int) -> int:
    """Node index of the leaf with leaf index ``leaf``."""
    if leaf < 0:
        raise TreeMathError(f"negative leaf index {leaf}")
    return 2 * leaf


def node_leaf_index(x: int) -> int:
    """Leaf index of node ``x``, which must be a leaf."""
    if x < 0 or x & 1:
        raise TreeMathError(f"node {x} is not a leaf")
    return x >> 1


def left(x: int) -> int:
    """Left child of the parent node ``x``."""
    k = level(x)
    if k == 0:
        raise TreeMathError(f"leaf node {x} has no children")
    return x ^ (1 << (k - 1))


def right(x: int) -> int:
    """Right child of the parent node ``x`` (Appendix C; complete trees)."""
    k = level(x)
    if k == 0:
        raise TreeMathError(f"leaf node {x} has no children")
    return x ^ (3 << (k - 1))


def _parent_step(x: int) -> int:
    k = level(x)
    b = (x >> (k + 1)) & 1
    return (x | (1 << k)) ^ (b << (k + 1))


def parent(x: int, n_leaves: int) -> int:
    """Parent of node ``x``; the root has none."""
    if x == root(n_leaves):
        raise TreeMathError(f"root node {x} has no parent")
    w = node_width(n_leaves)
    if not 0 <= x < w:
        raise TreeMathError(f"node {x} outside a tree of {n_leaves} leaves")
    p = _parent_step(x)
    while p >= w:
        p = _parent_step(p)
    return p


def sibling(x: int, n_leaves: int) -> int:
    """The other child of ``x``'s parent."""
    p = parent(x, n_leaves)
    return right(p) if x < p else left(p)


def direct_path(x: int, n_leaves: int) -> list[int]:
    """Ancestors of ``x`` from its parent up to and including the root."""
    r = root(n_leaves)
    if not 0 <= x < node_width(n_leaves):
        raise TreeMathError(f"node {x} outside a tree of {n_leaves} leaves")
    d: list[int] = []
    while x != r:
        x = parent(x, n_leaves)
        d.append(x)
    return d


def copath(x: int, n_leaves: int) -> list[int]:
    """Siblings of ``x`` and of each direct-path node below the root."""
    r = root(n_leaves)
    if x == r:
        return []
    out = [sibling(x, n_leaves)]
    for y in direct_path(x, n_leaves)[:-1]:
        out.append(sibling(y, n_leaves))
    return out


def common_ancestor(x: int, y: int) -> int:
    """Lowest common ancestor of nodes ``x`` and ``y`` (Appendix C, direct form)."""
    lx, ly = level(x) + 1, level(y) + 1
    if lx <= ly and x >> ly == y >> ly:
        return y
    if ly <= lx and x >> lx == y >> lx:
        return x
    xn, yn, k = x, y, 0
    while xn != yn:
        xn, yn = xn >> 1, yn >> 1
        k += 1
    return (xn << k) + (1 << (k - 1)) - 1


def subtree_leaves(x: int, n_leaves: int | None = None) -> range:
    """Leaf indices under node ``x`` (clipped to ``n_leaves`` when given)."""
    k = level(x)
    half = (1 << k) - 1
    first = (x - half) >> 1
    stop = first + (1 << k)
    if n_leaves is not None:
        stop = min(stop, n_leaves)
    return range(first, max(first, stop))
