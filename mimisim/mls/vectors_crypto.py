"""Checker for crypto-basics.json: labelled KDF, ref hashes, signatures and
HPKE encryption with labels, for one cipher suite per case."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mimisim.mls.crypto import DeterministicRandom, get_suite


def _h(v: str) -> bytes:
    return bytes.fromhex(v)


def _eq(what: str, got: bytes, want: bytes) -> None:
    if got != want:
        raise AssertionError(f"{what}: got {got.hex()}, want {want.hex()}")


def check_crypto_basics(case: Mapping[str, Any]) -> None:
    suite = get_suite(int(case["cipher_suite"]))
    v = case["ref_hash"]
    _eq("ref_hash", suite.ref_hash(v["label"].encode(), _h(v["value"])), _h(v["out"]))
    v = case["expand_with_label"]
    _eq(
        "expand_with_label",
        suite.expand_with_label(_h(v["secret"]), v["label"].encode(), _h(v["context"]), v["length"]),
        _h(v["out"]),
    )
    v = case["derive_secret"]
    _eq("derive_secret", suite.derive_secret(_h(v["secret"]), v["label"].encode()), _h(v["out"]))
    v = case["derive_tree_secret"]
    _eq(
        "derive_tree_secret",
        suite.derive_tree_secret(_h(v["secret"]), v["label"].encode(), v["generation"], v["length"]),
        _h(v["out"]),
    )
    v = case["sign_with_label"]
    priv, pub, content, label = _h(v["priv"]), _h(v["pub"]), _h(v["content"]), v["label"].encode()
    _eq("signature public key", suite.signature_public_key(priv), pub)
    if not suite.verify_with_label(pub, label, content, _h(v["signature"])):
        raise AssertionError("sign_with_label: the vector's signature does not verify")
    if not suite.verify_with_label(pub, label, content, suite.sign_with_label(priv, label, content)):
        raise AssertionError("sign_with_label: our own signature does not verify")
    v = case["encrypt_with_label"]
    priv, pub, label, context, pt = _h(v["priv"]), _h(v["pub"]), v["label"].encode(), _h(v["context"]), _h(v["plaintext"])
    _eq("HPKE public key", suite.hpke_public_key(priv), pub)
    _eq("decrypt_with_label", suite.decrypt_with_label(priv, label, context, _h(v["kem_output"]), _h(v["ciphertext"])), pt)
    kem, ct = suite.encrypt_with_label(pub, label, context, pt, DeterministicRandom(b"vectors", "crypto-basics"))
    _eq("encrypt_with_label round trip", suite.decrypt_with_label(priv, label, context, kem, ct), pt)
