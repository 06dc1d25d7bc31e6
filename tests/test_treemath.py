"""Tree math against the official tree-math.json vectors plus invariants."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mimisim.mls import treemath as tm
from mimisim.mls.vectors_basic import check_tree_math
from tests.vectors import load, needs_vectors

CASES = load("tree-math.json")


@needs_vectors
def test_vector_file_not_empty() -> None:
    assert len(CASES) >= 10


@pytest.mark.parametrize("case", CASES, ids=[f"n{c['n_leaves']}" for c in CASES])
def test_tree_math_vector(case: dict) -> None:
    check_tree_math(case)


def test_checker_rejects_a_wrong_vector() -> None:
    bad = json.loads(json.dumps(CASES[3]))
    bad["parent"][0] = bad["parent"][0] + 2
    with pytest.raises(AssertionError, match=r"parent\[0\]"):
        check_tree_math(bad)


def test_small_known_values() -> None:
    # RFC 9420 s.4.1 figure: 8 leaves, root 7.
    assert tm.root(8) == 7
    assert tm.direct_path(0, 8) == [1, 3, 7]
    assert tm.copath(0, 8) == [2, 5, 11]
    assert tm.direct_path(7, 8) == []
    assert tm.copath(7, 8) == []
    assert tm.level(0) == 0 and tm.level(7) == 3 and tm.level(11) == 2
    assert tm.common_ancestor(0, 6) == 3
    assert tm.common_ancestor(4, 10) == 7
    assert list(tm.subtree_leaves(3)) == [0, 1, 2, 3]
    assert list(tm.subtree_leaves(11)) == [4, 5, 6, 7]
    assert list(tm.subtree_leaves(11, 6)) == [4, 5]
    assert tm.log2(0) == 0 and tm.log2(1) == 0 and tm.log2(9) == 3
    assert tm.node_width(0) == 0 and tm.node_width(1) == 1


def test_errors() -> None:
    with pytest.raises(tm.TreeMathError):
        tm.left(4)
    with pytest.raises(tm.TreeMathError):
        tm.right(0)
    with pytest.raises(tm.TreeMathError):
        tm.parent(7, 8)
    with pytest.raises(tm.TreeMathError):
        tm.sibling(0, 1)
    with pytest.raises(tm.TreeMathError):
        tm.node_leaf_index(3)
    with pytest.raises(tm.TreeMathError):
        tm.root(0)
    with pytest.raises(tm.TreeMathError):
        tm.direct_path(16, 8)
    assert issubclass(tm.TreeMathError, ValueError)


# ---------------------------------------------------------------- properties

LOG_LEAVES = st.integers(min_value=0, max_value=12)


@st.composite
def tree_and_node(draw: st.DrawFn) -> tuple[int, int]:
    n = 1 << draw(LOG_LEAVES)
    return n, draw(st.integers(min_value=0, max_value=tm.node_width(n) - 1))


@given(tree_and_node())
def test_children_parent_roundtrip(tn: tuple[int, int]) -> None:
    n, x = tn
    if tm.is_leaf(x):
        return
    lft, rgt = tm.left(x), tm.right(x)
    assert tm.parent(lft, n) == x and tm.parent(rgt, n) == x
    assert tm.level(lft) == tm.level(rgt) == tm.level(x) - 1
    assert lft < x < rgt
    assert tm.sibling(lft, n) == rgt and tm.sibling(rgt, n) == lft


@given(tree_and_node())
def test_direct_path_and_copath(tn: tuple[int, int]) -> None:
    n, x = tn
    dp = tm.direct_path(x, n)
    cp = tm.copath(x, n)
    assert len(dp) == len(cp)
    if x == tm.root(n):
        assert dp == []
        return
    assert dp[-1] == tm.root(n)
    assert [tm.level(y) for y in dp] == list(range(tm.level(x) + 1, tm.level(tm.root(n)) + 1))
    # Each copath node is the sibling of the path node one step below.
    below = [x] + dp[:-1]
    for b, c, p in zip(below, cp, dp, strict=True):
        assert tm.sibling(b, n) == c
        assert tm.parent(c, n) == p


@given(tree_and_node())
def test_subtree_leaves_and_common_ancestor(tn: tuple[int, int]) -> None:
    n, x = tn
    leaves = tm.subtree_leaves(x, n)
    assert len(leaves) == 1 << tm.level(x)
    for leaf in (leaves[0], leaves[-1]):
        node = tm.leaf_node_index(leaf)
        assert tm.node_leaf_index(node) == leaf
        assert node == x or x in tm.direct_path(node, n)
    if len(leaves) > 1:
        a, b = tm.leaf_node_index(leaves[0]), tm.leaf_node_index(leaves[-1])
        assert tm.common_ancestor(a, b) == x
    assert tm.common_ancestor(x, x) == x


@given(LOG_LEAVES, st.data())
def test_common_ancestor_is_lowest_shared_ancestor(log_n: int, data: st.DataObject) -> None:
    n = 1 << log_n
    w = tm.node_width(n)
    x = data.draw(st.integers(0, w - 1))
    y = data.draw(st.integers(0, w - 1))
    px = [x] + tm.direct_path(x, n)
    py = set([y] + tm.direct_path(y, n))
    expected = next(a for a in px if a in py)
    assert tm.common_ancestor(x, y) == expected
