"""Tests for mimisim.mls.hpke and mimisim.mls.crypto.

Known-answer tests come first (MLS crypto-basics vectors for suites 1..7, RFC
9180 Appendix A values), because round trips alone cannot catch an
implementation that is wrong in the same way on both ends.
"""

from __future__ import annotations

from typing import Any

import pytest

from mimisim.mls import hpke
from mimisim.mls.crypto import (
    SUITES,
    CipherSuite,
    CryptoError,
    DeterministicRandom,
    UnsupportedCipherSuite,
    get_suite,
)
from tests.vectors import load, needs_vectors

h = bytes.fromhex


_CRYPTO_BASICS: list[dict[str, Any]] = load("crypto-basics.json")

_CASE_IDS = [f"suite{c['cipher_suite']}" for c in _CRYPTO_BASICS]


class FixedRandom:
    """Hands out pre-set byte strings, to replay vectors' ephemeral IKM."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    def random_bytes(self, n: int) -> bytes:
        chunk = self.chunks.pop(0)
        assert len(chunk) == n, (len(chunk), n)
        return chunk


@needs_vectors
def test_vectors_present_for_all_suites() -> None:
    assert sorted(c["cipher_suite"] for c in _CRYPTO_BASICS) == [1, 2, 3, 4, 5, 6, 7]


# ------------------------------------------------------------ MLS crypto-basics


@pytest.mark.parametrize("case", _CRYPTO_BASICS, ids=_CASE_IDS)
def test_ref_hash(case: dict[str, Any]) -> None:
    suite = get_suite(case["cipher_suite"])
    v = case["ref_hash"]
    assert suite.ref_hash(v["label"].encode(), h(v["value"])) == h(v["out"])
    assert suite.ref_hash(v["label"], h(v["value"])) == h(v["out"])  # str label accepted


@pytest.mark.parametrize("case", _CRYPTO_BASICS, ids=_CASE_IDS)
def test_expand_with_label(case: dict[str, Any]) -> None:
    suite = get_suite(case["cipher_suite"])
    v = case["expand_with_label"]
    out = suite.expand_with_label(h(v["secret"]), v["label"].encode(), h(v["context"]), v["length"])
    assert out == h(v["out"])


@pytest.mark.parametrize("case", _CRYPTO_BASICS, ids=_CASE_IDS)
def test_derive_secret(case: dict[str, Any]) -> None:
    suite = get_suite(case["cipher_suite"])
    v = case["derive_secret"]
    assert suite.derive_secret(h(v["secret"]), v["label"].encode()) == h(v["out"])


@pytest.mark.parametrize("case", _CRYPTO_BASICS, ids=_CASE_IDS)
def test_derive_tree_secret(case: dict[str, Any]) -> None:
    suite = get_suite(case["cipher_suite"])
    v = case["derive_tree_secret"]
    out = suite.derive_tree_secret(h(v["secret"]), v["label"].encode(), v["generation"], v["length"])
    assert out == h(v["out"])


@pytest.mark.parametrize("case", _CRYPTO_BASICS, ids=_CASE_IDS)
def test_sign_with_label(case: dict[str, Any]) -> None:
    suite = get_suite(case["cipher_suite"])
    v = case["sign_with_label"]
    priv, pub, content, label = h(v["priv"]), h(v["pub"]), h(v["content"]), v["label"].encode()
    assert suite.signature_public_key(priv) == pub
    assert suite.verify_with_label(pub, label, content, h(v["signature"]))
    sig = suite.sign_with_label(priv, label, content)
    assert suite.verify_with_label(pub, label, content, sig)
    if suite.signature_scheme in ("ed25519", "ed448"):
        # EdDSA is deterministic, so the vector's signature is *the* signature.
        assert sig == h(v["signature"])
    else:
        # Our ECDSA is RFC 6979: repeatable, though the vectors were made
        # with randomised ECDSA and so differ from ours.
        assert suite.sign_with_label(priv, label, content) == sig
    # Wrong label / content / signature must not verify.
    assert not suite.verify_with_label(pub, b"other", content, h(v["signature"]))
    assert not suite.verify_with_label(pub, label, content + b"x", h(v["signature"]))
    bad = bytearray(h(v["signature"]))
    bad[len(bad) // 2] ^= 0x01
    assert not suite.verify_with_label(pub, label, content, bytes(bad))


@pytest.mark.parametrize("case", _CRYPTO_BASICS, ids=_CASE_IDS)
def test_encrypt_with_label(case: dict[str, Any]) -> None:
    suite = get_suite(case["cipher_suite"])
    v = case["encrypt_with_label"]
    priv, pub, label, context, pt = (
        h(v["priv"]),
        h(v["pub"]),
        v["label"].encode(),
        h(v["context"]),
        h(v["plaintext"]),
    )
    assert suite.hpke_public_key(priv) == pub
    assert suite.decrypt_with_label(priv, label, context, h(v["kem_output"]), h(v["ciphertext"])) == pt
    kem_output, ct = suite.encrypt_with_label(pub, label, context, pt, DeterministicRandom(1, "enc"))
    assert suite.decrypt_with_label(priv, label, context, kem_output, ct) == pt
    with pytest.raises(CryptoError):
        suite.decrypt_with_label(priv, b"other label", context, kem_output, ct)


# ------------------------------------------------------------- RFC 9180 App. A

_A1_INFO = h("4f6465206f6e2061204772656369616e2055726e")
_A_PT = h("4265617574792069732074727574682c20747275746820626561757479")


def test_rfc9180_a1_x25519_aes128gcm() -> None:
    """A.1.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, base mode."""
    suite = hpke.get_hpke_suite(0x0020, 0x0001, 0x0001)
    ikm_e = h("7268600d403fce431561aef583ee1613527cff655c1343f29812e66706df3234")
    ikm_r = h("6db9df30aa07dd42ee5e8181afdb977e538f5e1fec8a06223f33f7013e525037")
    sk_e, pk_e = suite.kem.derive_key_pair(ikm_e)
    assert sk_e == h("52c4a758a802cd8b936eceea314432798d5baf2d7e9235dc084ab1b9cfa2f736")
    assert pk_e == h("37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431")
    sk_r, pk_r = suite.kem.derive_key_pair(ikm_r)
    assert sk_r == h("4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8")
    assert pk_r == h("3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d")

    shared_secret, enc = suite.kem.encap(pk_r, FixedRandom(ikm_e))
    assert enc == pk_e
    assert shared_secret == h("fe0e18c9f024ce43799ae393c7e8fe8fce9d218875e8227b0187c04e7d2ea1fc")
    assert suite.kem.decap(enc, sk_r) == shared_secret

    assert suite.key_schedule_context(hpke.MODE_BASE, _A1_INFO) == h(
        "00725611c9d98c07c03f60095cd32d400d8347d45ed67097bbad50fc56da742d07"
        "cb6cffde367bb0565ba28bb02c90744a20f5ef37f30523526106f637abb05449"
    )
    enc2, ctx_s = suite.setup_base_s(pk_r, _A1_INFO, FixedRandom(ikm_e))
    assert enc2 == enc
    assert ctx_s.key == h("4531685d41d65f03dc48f6b8302c05b0")
    assert ctx_s.base_nonce == h("56d890e5accaaf011cff4b7d")
    assert ctx_s.exporter_secret == h("45ff1c2e220db587171952c0592d5f5ebe103f1561a2614e38f2ffd47e99e3f8")
    ctx_r = suite.setup_base_r(enc, sk_r, _A1_INFO)

    encryptions = {
        0: "f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a96d8770ac83d07bea87e13c512a",
        1: "af2d7e9ac9ae7e270f46ba1f975be53c09f8d875bdc8535458c2494e8a6eab251c03d0c22a56b8ca42c2063b84",
        2: "498dfcabd92e8acedc281e85af1cb4e3e31c7dc394a1ca20e173cb72516491588d96a19ad4a683518973dcc180",
        4: "583bd32bc67a5994bb8ceaca813d369bca7b2a42408cddef5e22f880b631215a09fc0012bc69fccaa251c0246d",
        255: "7175db9717964058640a3a11fb9007941a5d1757fda1a6935c805c21af32505bf106deefec4a49ac38d71c9e0a",
        256: "957f9800542b0b8891badb026d79cc54597cb2d225b54c00c5238c25d05c30e3fbeda97d2e0e1aba483a2df9f2",
    }
    for seq in range(257):
        aad = f"Count-{seq}".encode()
        ct = ctx_s.seal(aad, _A_PT)
        if seq in encryptions:
            assert ct == h(encryptions[seq]), seq
        assert ctx_r.open(aad, ct) == _A_PT
    assert ctx_s.compute_nonce(256) == h("56d890e5accaaf011cff4a7d")

    exports = {
        b"": "3853fe2b4035195a573ffc53856e77058e15d9ea064de3e59f4961d0095250ee",
        h("00"): "2e8f0b54673c7029649d4eb9d5e33bf1872cf76d623ff164ac185da9e88c21a5",
        b"TestContext": "e9e43065102c3836401bed8c3c3c75ae46be1639869391d62c61f1ec7af54931",
    }
    for exporter_context, value in exports.items():
        assert ctx_s.export(exporter_context, 32) == h(value)
        assert ctx_r.export(exporter_context, 32) == h(value)


def test_rfc9180_a3_p256_aes128gcm() -> None:
    """A.3.1: DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, base mode."""
    suite = hpke.get_hpke_suite(0x0010, 0x0001, 0x0001)
    ikm_e = h("4270e54ffd08d79d5928020af4686d8f6b7d35dbe470265f1f5aa22816ce860e")
    sk_e, pk_e = suite.kem.derive_key_pair(ikm_e)
    assert sk_e == h("4995788ef4b9d6132b249ce59a77281493eb39af373d236a1fe415cb0c2d7beb")
    assert pk_e == h(
        "04a92719c6195d5085104f469a8b9814d5838ff72b60501e2c4466e5e67b325ac9"
        "8536d7b61a1af4b78e5b7f951c0900be863c403ce65c9bfcb9382657222d18c4"
    )
    sk_r, pk_r = suite.kem.derive_key_pair(
        h("668b37171f1072f3cf12ea8a236a45df23fc13b82af3609ad1e354f6ef817550")
    )
    assert sk_r == h("f3ce7fdae57e1a310d87f1ebbde6f328be0a99cdbcadf4d6589cf29de4b8ffd2")
    assert pk_r == h(
        "04fe8c19ce0905191ebc298a9245792531f26f0cece2460639e8bc39cb7f706a82"
        "6a779b4cf969b8a0e539c7f62fb3d30ad6aa8f80e30f1d128aafd68a2ce72ea0"
    )
    enc, ct = suite.seal_base(pk_r, _A1_INFO, b"Count-0", _A_PT, FixedRandom(ikm_e))
    assert enc == pk_e
    assert ct == h(
        "5ad590bb8baa577f8619db35a36311226a896e7342a6d836d8b7bcd2f20b6c7f9076ac232e3ab2523f39513434"
    )
    assert suite.open_base(enc, sk_r, _A1_INFO, b"Count-0", ct) == _A_PT


def test_rfc9180_derive_key_pair_x25519_a2_and_p521_a6() -> None:
    sk, pk = hpke.DHKEM_X25519.derive_key_pair(
        h("909a9b35d3dc4713a5e72a4da274b55d3d3821a37e5d099e74a647db583a904b")
    )
    assert sk == h("f4ec9b33b792c372c1d2c2063507b684ef925b8c75a42dbcbf57d63ccd381600")
    assert pk == h("1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a")
    # P-521 exercises the 0x01 bitmask of the rejection sampler.
    sk, pk = hpke.DHKEM_P521.derive_key_pair(
        h(
            "7f06ab8215105fc46aceeb2e3dc5028b44364f960426eb0d8e4026c2f8b5d7e7a9"
            "86688f1591abf5ab753c357a5d6f0440414b4ed4ede71317772ac98d9239f70904"
        )
    )
    assert sk == h(
        "014784c692da35df6ecde98ee43ac425dbdd0969c0c72b42f2e708ab9d535415a8"
        "569bdacfcc0a114c85b8e3f26acf4d68115f8c91a66178cdbd03b7bcc5291e374b"
    )
    assert pk == h(
        "040138b385ca16bb0d5fa0c0665fbbd7e69e3ee29f63991d3e9b5fa740aab8900aae"
        "ed46ed73a49055758425a0ce36507c54b29cc5b85a5cee6bae0cf1c21f2731ece2"
        "013dc3fb7c8d21654bb161b463962ca19e8c654ff24c94dd2898de12051f1ed069"
        "2237fb02b2f8d1dc1c73e9b366b529eb436e98a996ee522aef863dd5739d2f29b0"
    )


def test_curve_orders() -> None:
    """The hard-coded orders bound DeriveKeyPair's sampler and the ECDSA key
    sampler; check them against the group itself: (n-1)*G == -G."""
    for kem in (hpke.DHKEM_P256, hpke.DHKEM_P384, hpke.DHKEM_P521):
        assert kem.order.bit_length() <= 8 * kem.nsk
        one = kem.public_key((1).to_bytes(kem.nsk, "big"))
        minus_one = kem.public_key((kem.order - 1).to_bytes(kem.nsk, "big"))
        half = (len(one) - 1) // 2
        assert one[1 : 1 + half] == minus_one[1 : 1 + half]  # same x
        assert one[1 + half :] != minus_one[1 + half :]  # opposite y
        with pytest.raises(hpke.HPKEError):
            kem.public_key(kem.order.to_bytes(kem.nsk, "big"))


# --------------------------------------------------------------- HPKE generic

_ALL_HPKE = [
    (kem_id, kdf_id, aead_id) for kem_id in hpke.KEMS for kdf_id in hpke.KDFS for aead_id in hpke.AEADS
]


@pytest.mark.parametrize("ids", _ALL_HPKE, ids=lambda t: "-".join(f"{x:#06x}" for x in t))
def test_hpke_round_trip_and_export(ids: tuple[int, int, int]) -> None:
    suite = hpke.get_hpke_suite(*ids)
    rng = DeterministicRandom(b"hpke", repr(ids))
    sk_r, pk_r = suite.kem.generate_key_pair(rng)
    assert len(sk_r) == suite.kem.nsk and len(pk_r) == suite.kem.npk
    enc, ctx_s = suite.setup_base_s(pk_r, b"info", rng)
    assert len(enc) == suite.kem.nenc
    ctx_r = suite.setup_base_r(enc, sk_r, b"info")
    for i in range(3):
        ct = ctx_s.seal(b"aad%d" % i, b"message %d" % i)
        assert ctx_r.open(b"aad%d" % i, ct) == b"message %d" % i
    assert ctx_s.export(b"ctx", 42) == ctx_r.export(b"ctx", 42)
    assert ctx_s.export(b"ctx", 42) != ctx_s.export(b"ctx2", 42)
    # PSK mode: both sides must hold the same PSK.
    enc, ctx_s = suite.setup_psk_s(pk_r, b"info", b"p" * 32, b"id", rng)
    assert suite.setup_psk_r(enc, sk_r, b"info", b"p" * 32, b"id").open(b"", ctx_s.seal(b"", b"x")) == b"x"
    with pytest.raises(hpke.HPKEError):
        suite.setup_psk_r(enc, sk_r, b"info", b"q" * 32, b"id").open(b"", ctx_s.seal(b"", b"y"))


def test_hpke_rejects_bad_public_keys() -> None:
    with pytest.raises(hpke.HPKEError):
        hpke.DHKEM_P256.validate_public_key(b"\x04" + b"\x01" * 64)  # not on the curve
    with pytest.raises(hpke.HPKEError):
        hpke.DHKEM_X25519.validate_public_key(b"\x01" * 31)
    sk, _ = hpke.DHKEM_X25519.derive_key_pair(b"x" * 32)
    with pytest.raises(hpke.HPKEError):
        hpke.DHKEM_X25519.dh(sk, bytes(32))  # low-order point -> all-zero DH


# ------------------------------------------------------------- MLS suite object


@pytest.fixture(params=sorted(SUITES), ids=lambda s: f"suite{s}")
def suite(request: pytest.FixtureRequest) -> CipherSuite:
    return get_suite(request.param)


def test_suite_table(suite: CipherSuite) -> None:
    assert suite.hpke.kdf.nh == suite.hash_len == len(suite.hash(b""))
    assert suite.hpke.aead.nk == suite.aead_key_len
    assert suite.hpke.aead.nn == suite.aead_nonce_len
    assert suite.hpke.kem.kem_id == suite.kem_id


def test_get_suite_unsupported() -> None:
    for bad in (0, 8, 0xFFFF):
        with pytest.raises(CryptoError):
            get_suite(bad)
        with pytest.raises(KeyError):
            get_suite(bad)
    with pytest.raises(UnsupportedCipherSuite):
        get_suite(0)


def test_derive_key_pair_deterministic(suite: CipherSuite) -> None:
    a = suite.derive_key_pair(b"\x07" * 32)
    assert a == suite.derive_key_pair(b"\x07" * 32)
    assert a != suite.derive_key_pair(b"\x08" * 32)
    assert suite.hpke_public_key(a[0]) == a[1]


def test_generated_keys_deterministic(suite: CipherSuite) -> None:
    sig1 = suite.generate_signature_key_pair(DeterministicRandom(5, "sig"))
    sig2 = suite.generate_signature_key_pair(DeterministicRandom(5, "sig"))
    assert sig1 == sig2
    assert suite.signature_public_key(sig1[0]) == sig1[1]
    assert suite.verify_with_label(sig1[1], "L", b"c", suite.sign_with_label(sig1[0], "L", b"c"))
    kp1 = suite.generate_hpke_key_pair(DeterministicRandom(5, "hpke"))
    assert kp1 == suite.generate_hpke_key_pair(DeterministicRandom(5, "hpke"))
    assert kp1 != suite.generate_hpke_key_pair(DeterministicRandom(6, "hpke"))


def test_encrypt_deterministic_and_tamper(suite: CipherSuite) -> None:
    priv, pub = suite.generate_hpke_key_pair(DeterministicRandom(1, "kp"))
    out1 = suite.encrypt_with_label(pub, "UpdatePathNode", b"ctx", b"secret", DeterministicRandom(9))
    out2 = suite.encrypt_with_label(pub, "UpdatePathNode", b"ctx", b"secret", DeterministicRandom(9))
    assert out1 == out2
    kem_output, ct = out1
    assert suite.decrypt_with_label(priv, "UpdatePathNode", b"ctx", kem_output, ct) == b"secret"
    for i in (0, len(ct) - 1):
        bad = bytearray(ct)
        bad[i] ^= 0x01
        with pytest.raises(CryptoError):
            suite.decrypt_with_label(priv, "UpdatePathNode", b"ctx", kem_output, bytes(bad))
    with pytest.raises(CryptoError):
        suite.decrypt_with_label(priv, "UpdatePathNode", b"ctx2", kem_output, ct)
    with pytest.raises(CryptoError):
        suite.decrypt_with_label(priv, "UpdatePathNode", b"ctx", kem_output[:-1], ct)
    with pytest.raises(CryptoError):
        suite.encrypt_with_label(b"\x00" * 3, "x", b"", b"", DeterministicRandom(1))


def test_external_init(suite: CipherSuite) -> None:
    priv, pub = suite.derive_key_pair(b"external" * 4)
    kem_output, secret = suite.external_init_sender(pub, DeterministicRandom(3))
    assert len(secret) == suite.hash_len
    assert suite.external_init_receiver(priv, kem_output) == secret
    # Same as SetupBaseS/Export done by hand.
    ctx = suite.hpke.setup_base_r(kem_output, priv, b"")
    assert ctx.export(b"MLS 1.0 external init secret", suite.hash_len) == secret


def test_aead(suite: CipherSuite) -> None:
    key = bytes(range(suite.aead_key_len))
    nonce = bytes(suite.aead_nonce_len)
    ct = suite.aead_seal(key, nonce, b"aad", b"pt")
    assert suite.aead_open(key, nonce, b"aad", ct) == b"pt"
    with pytest.raises(CryptoError):
        suite.aead_open(key, nonce, b"aaX", ct)
    with pytest.raises(CryptoError):
        suite.aead_open(key[:-1], nonce, b"aad", ct)
    with pytest.raises(CryptoError):
        suite.aead_seal(key, nonce + b"\x00", b"aad", b"pt")


def test_verify_never_raises(suite: CipherSuite) -> None:
    priv, pub = suite.generate_signature_key_pair(DeterministicRandom(2))
    sig = suite.sign_with_label(priv, "X", b"content")
    assert suite.verify_with_label(pub, "X", b"content", sig)
    assert not suite.verify_with_label(b"", "X", b"content", sig)
    assert not suite.verify_with_label(b"\x04" + b"\xff" * (len(pub) - 1), "X", b"content", sig)
    assert not suite.verify_with_label(pub, "X", b"content", b"")
    assert not suite.verify_with_label(pub, "X", b"content", b"\x30\x00")
    with pytest.raises(CryptoError):
        suite.sign_with_label(b"\x00", "X", b"content")


def test_labels_and_varint_boundaries() -> None:
    suite = get_suite(1)
    # str and bytes labels agree
    assert suite.derive_secret(b"s" * 32, "epoch") == suite.derive_secret(b"s" * 32, b"epoch")
    # contexts across the 1-/2-/4-byte varint boundaries must all work (and differ)
    outs = {suite.expand_with_label(b"s" * 32, "x", b"c" * n, 16) for n in (63, 64, 16383, 16384)}
    assert len(outs) == 4
    with pytest.raises(CryptoError):
        suite.expand_with_label(b"s" * 32, "x", b"", 0x10000)
    with pytest.raises(CryptoError):
        suite.derive_tree_secret(b"s" * 32, "x", 1 << 32, 16)


def test_make_refs() -> None:
    suite = get_suite(1)
    assert suite.make_key_package_ref(b"kp") == suite.ref_hash("MLS 1.0 KeyPackage Reference", b"kp")
    assert suite.make_proposal_ref(b"p") == suite.ref_hash("MLS 1.0 Proposal Reference", b"p")
    assert suite.make_key_package_ref(b"kp") != suite.make_proposal_ref(b"kp")


def test_varint_encoding() -> None:
    from mimisim.mls.crypto import _varint

    assert _varint(0) == b"\x00"
    assert _varint(63) == b"\x3f"
    assert _varint(64) == b"\x40\x40"
    assert _varint(16383) == b"\x7f\xff"
    assert _varint(16384) == b"\x80\x00\x40\x00"
    assert _varint((1 << 30) - 1) == b"\xbf\xff\xff\xff"
    with pytest.raises(CryptoError):
        _varint(1 << 30)


# --------------------------------------------------------- DeterministicRandom


def test_deterministic_random_reproducible_and_stream_like() -> None:
    a, b = DeterministicRandom(42, "x"), DeterministicRandom(42, "x")
    assert a.random_bytes(100) == b.random_bytes(100)
    c, d = DeterministicRandom(42, "x"), DeterministicRandom(42, "x")
    assert c.random_bytes(3) + c.random_bytes(40) + c.random_bytes(0) + c.random_bytes(5) == d.random_bytes(
        48
    )
    assert DeterministicRandom(42, "x").random_bytes(32) != DeterministicRandom(42, "y").random_bytes(32)
    assert DeterministicRandom(42).random_bytes(32) != DeterministicRandom(43).random_bytes(32)
    # int and bytes seeds live in separate domains
    assert DeterministicRandom(0).random_bytes(32) != DeterministicRandom(b"\x00").random_bytes(32)
    assert DeterministicRandom(b"seed").random_bytes(32) == DeterministicRandom(b"seed").random_bytes(32)
    with pytest.raises(ValueError):
        DeterministicRandom(-1)


def test_deterministic_random_forks() -> None:
    parent = DeterministicRandom(7, "root")
    reference = DeterministicRandom(7, "root").random_bytes(64)
    child_a = parent.fork("alice")
    child_b = parent.fork("bob")
    a_bytes = child_a.random_bytes(64)
    # forking and drawing from children does not shift the parent
    assert parent.random_bytes(64) == reference
    # forks are independent of each other and of the parent
    assert a_bytes != child_b.random_bytes(64)
    assert a_bytes != reference
    # ... reproducible by name, independent of parent position
    later = DeterministicRandom(7, "root")
    later.random_bytes(1000)
    assert later.fork("alice").random_bytes(64) == a_bytes
    # ... and drawing from one fork does not affect a sibling
    fresh = DeterministicRandom(7, "root")
    fresh.fork("alice").random_bytes(500)
    assert fresh.fork("bob").random_bytes(64) == DeterministicRandom(7, "root").fork("bob").random_bytes(64)
    # nested forks differ from top-level forks of the same name
    assert parent.fork("alice").fork("x").random_bytes(32) != parent.fork("x").random_bytes(32)
