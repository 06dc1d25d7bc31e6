"""Checkers for the basic official MLS test vectors (mlswg/mls-implementations):
tree-math.json, psk_secret.json, key-schedule.json and secret-tree.json.

Each ``check_*`` takes one parsed JSON case and raises :class:`AssertionError`
naming the first mismatching field; the pytest suite and the ``mimisim
vectors`` CLI both call them, so both report the same thing. No file I/O
here: the caller loads the JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from mimisim.mls import treemath
from mimisim.mls.keyschedule import (
    SecretTree,
    compute_psk_secret,
    derive_epoch_secrets,
    derive_joiner_secret,
    mls_exporter,
    sender_data_key_nonce,
)
from mimisim.mls.structs import MLS10, GroupContext, PreSharedKeyID

__all__ = [
    "check_tree_math",
    "check_psk_secret",
    "check_key_schedule",
    "check_secret_tree",
    "CHECKERS",
]

Case = Mapping[str, Any]


def _hex(v: str) -> bytes:
    return bytes.fromhex(v)


def _eq(what: str, got: bytes | int | None, want: bytes | int | None) -> None:
    if got != want:
        g = got.hex() if isinstance(got, bytes) else got
        w = want.hex() if isinstance(want, bytes) else want
        raise AssertionError(f"{what}: got {g}, want {w}")


def _suite(case: Case) -> Any:
    from mimisim.mls.crypto import get_suite  # late: keeps tree math usable without crypto

    return get_suite(int(case["cipher_suite"]))


def _or_none(fn: Callable[[], int]) -> int | None:
    try:
        return fn()
    except treemath.TreeMathError:
        return None


def check_tree_math(case: Case) -> None:
    """n_nodes, root and left/right/parent/sibling of every node (null = none)."""
    n = int(case["n_leaves"])
    _eq(f"n_leaves={n} n_nodes", treemath.node_width(n), case["n_nodes"])
    _eq(f"n_leaves={n} root", treemath.root(n), case["root"])
    for name in ("left", "right", "parent", "sibling"):
        _eq(f"n_leaves={n} len({name})", len(case[name]), case["n_nodes"])
    for i in range(case["n_nodes"]):
        _eq(f"n_leaves={n} left[{i}]", _or_none(partial(treemath.left, i)), case["left"][i])
        _eq(f"n_leaves={n} right[{i}]", _or_none(partial(treemath.right, i)), case["right"][i])
        _eq(f"n_leaves={n} parent[{i}]", _or_none(partial(treemath.parent, i, n)), case["parent"][i])
        _eq(f"n_leaves={n} sibling[{i}]", _or_none(partial(treemath.sibling, i, n)), case["sibling"][i])


def check_psk_secret(case: Case) -> None:
    """psk_secret from external PSKs chained in order (s.8.4)."""
    suite = _suite(case)
    psks = [
        (PreSharedKeyID.external(_hex(p["psk_id"]), _hex(p["psk_nonce"])), _hex(p["psk"]))
        for p in case["psks"]
    ]
    _eq(
        f"suite {case['cipher_suite']} with {len(psks)} psks: psk_secret",
        compute_psk_secret(suite, psks),
        _hex(case["psk_secret"]),
    )


_EPOCH_FIELDS = (
    "joiner_secret",
    "welcome_secret",
    "init_secret",
    "sender_data_secret",
    "encryption_secret",
    "exporter_secret",
    "epoch_authenticator",
    "external_secret",
    "confirmation_key",
    "membership_key",
    "resumption_psk",
)


def check_key_schedule(case: Case) -> None:
    """Chain every epoch from ``initial_init_secret``; check the GroupContext,
    every derived secret, the external public key and the exporter output."""
    suite = _suite(case)
    cs = int(case["cipher_suite"])
    group_id = _hex(case["group_id"])
    init_secret = _hex(case["initial_init_secret"])
    for epoch, e in enumerate(case["epochs"]):
        where = f"suite {cs} epoch {epoch}"
        gc = GroupContext(
            version=MLS10,
            cipher_suite=cs,
            group_id=group_id,
            epoch=epoch,
            tree_hash=_hex(e["tree_hash"]),
            confirmed_transcript_hash=_hex(e["confirmed_transcript_hash"]),
            extensions=[],
        ).encode()
        _eq(f"{where}: group_context", gc, _hex(e["group_context"]))
        joiner = derive_joiner_secret(suite, init_secret, _hex(e["commit_secret"]), gc)
        secrets = derive_epoch_secrets(suite, joiner, _hex(e["psk_secret"]), gc)
        for name in _EPOCH_FIELDS:
            _eq(f"{where}: {name}", getattr(secrets, name), _hex(e[name]))
        _priv, pub = secrets.external_key_pair(suite)
        _eq(f"{where}: external_pub", pub, _hex(e["external_pub"]))
        ex = e["exporter"]
        # test-vectors.md types the label as a string; the generator's labels
        # merely look like hex, and the expected output uses their ASCII bytes.
        label = str(ex["label"]).encode()
        _eq(
            f"{where}: exporter.secret",
            mls_exporter(suite, secrets.exporter_secret, label, _hex(ex["context"]), int(ex["length"])),
            _hex(ex["secret"]),
        )
        init_secret = secrets.init_secret


def check_secret_tree(case: Case) -> None:
    """Sender-data key/nonce, then the handshake and application ratchets of
    every leaf at the listed generations (fetched in order on one tree, as a
    receiver would)."""
    suite = _suite(case)
    cs = int(case["cipher_suite"])
    sd = case["sender_data"]
    key, nonce = sender_data_key_nonce(suite, _hex(sd["sender_data_secret"]), _hex(sd["ciphertext"]))
    _eq(f"suite {cs}: sender_data.key", key, _hex(sd["key"]))
    _eq(f"suite {cs}: sender_data.nonce", nonce, _hex(sd["nonce"]))
    leaves = case["leaves"]
    tree = SecretTree(suite, _hex(case["encryption_secret"]), len(leaves))
    for i, entries in enumerate(leaves):
        for ent in entries:
            g = int(ent["generation"])
            where = f"suite {cs} n_leaves {len(leaves)} leaf {i} generation {g}"
            hk, hn = tree.handshake_key(i, g)
            _eq(f"{where}: handshake_key", hk, _hex(ent["handshake_key"]))
            _eq(f"{where}: handshake_nonce", hn, _hex(ent["handshake_nonce"]))
            ak, an = tree.application_key(i, g)
            _eq(f"{where}: application_key", ak, _hex(ent["application_key"]))
            _eq(f"{where}: application_nonce", an, _hex(ent["application_nonce"]))


CHECKERS: dict[str, Callable[[Case], None]] = {
    "tree-math.json": check_tree_math,
    "psk_secret.json": check_psk_secret,
    "key-schedule.json": check_key_schedule,
    "secret-tree.json": check_secret_tree,
}
"""Vector file name to per-case checker, for the CLI runner."""
