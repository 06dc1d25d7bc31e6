"""RFC 9180 HPKE (base and PSK modes) on top of `cryptography`'s primitives.

Why not ``cryptography.hazmat.primitives.hpke``?  MLS needs three things that
API does not offer, so we compose HPKE from its DH, HMAC and AEAD pieces:

* a secret exporter (``Context.export``): MLS external joins derive the
  ``init_secret`` from ``SetupBaseS(external_pub, "").Export(...)``;
* ``DeriveKeyPair``: MLS derives every TreeKEM node key pair from a path
  secret, so key pairs must be a deterministic function of bytes;
* an injectable ephemeral key: the simulator is sans-IO and must replay
  bit-for-bit from a seed, so ``Encap`` takes its ephemeral IKM from the
  caller's random source instead of the OS RNG.

Keys cross this module's boundary as serialized ``bytes`` (the form MLS puts on
the wire). Parsing them into `cryptography` objects costs a scalar
multiplication for the NIST curves, and the same keys are hit repeatedly in
large groups, so parsed objects are kept in small bounded LRU caches.

Auth modes (``mode_auth``/``mode_auth_psk``) are not implemented: MLS never
uses them.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization as _serialization
from cryptography.hazmat.primitives.asymmetric import ec, x448, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

__all__ = [
    "AEAD",
    "AEADS",
    "DHKEM",
    "KDF",
    "KDFS",
    "KEMS",
    "MODE_BASE",
    "MODE_PSK",
    "P256_ORDER",
    "P384_ORDER",
    "P521_ORDER",
    "Context",
    "HPKEError",
    "HPKESuite",
    "RandomSource",
    "get_hpke_suite",
]

MODE_BASE = 0x00
MODE_PSK = 0x01

_HPKE_V1 = b"HPKE-v1"

# Bounded so that a long simulation cannot grow memory without limit; sized for
# a few thousand distinct keys (1000-member groups: one leaf key each, plus
# parent-node keys and ephemeral keys that are evicted first).
_KEY_CACHE_SIZE = 8192


class HPKEError(Exception):
    """Any HPKE failure: malformed key, DH failure, AEAD open failure, limits."""


class RandomSource(Protocol):
    """The only entropy source the sans-IO core is allowed to touch."""

    def random_bytes(self, n: int) -> bytes: ...


def _i2osp(n: int, length: int) -> bytes:
    return n.to_bytes(length, "big")


# --------------------------------------------------------------------------- KDF


@dataclass(frozen=True)
class KDF:
    """HKDF over one hash; HMAC from the stdlib because it is C-fast and the
    KDF is called dozens of times per MLS operation."""

    kdf_id: int
    hash_name: str
    nh: int

    def extract(self, salt: bytes, ikm: bytes) -> bytes:
        # An empty salt means a zero string of length Nh (RFC 5869); HMAC's
        # zero-padding of short keys makes b"" equivalent, so no special case.
        return hmac.digest(salt, ikm, self.hash_name)

    def expand(self, prk: bytes, info: bytes, length: int) -> bytes:
        if length < 0 or length > 255 * self.nh:
            raise HPKEError(f"HKDF-Expand length {length} out of range")
        out = bytearray()
        t = b""
        counter = 1
        while len(out) < length:
            t = hmac.digest(prk, t + info + bytes((counter,)), self.hash_name)
            out += t
            counter += 1
        return bytes(out[:length])


HKDF_SHA256 = KDF(0x0001, "sha256", 32)
HKDF_SHA384 = KDF(0x0002, "sha384", 48)
HKDF_SHA512 = KDF(0x0003, "sha512", 64)
KDFS: dict[int, KDF] = {k.kdf_id: k for k in (HKDF_SHA256, HKDF_SHA384, HKDF_SHA512)}


# -------------------------------------------------------------------------- AEAD


@dataclass(frozen=True)
class AEAD:
    """An AEAD with its RFC 9180 sizes; errors normalised to HPKEError so that
    callers need not know which `cryptography` class is underneath."""

    aead_id: int
    name: str
    nk: int
    nn: int
    nt: int
    factory: Callable[[bytes], AESGCM | ChaCha20Poly1305] = field(repr=False, compare=False)

    def _cipher(self, key: bytes, nonce: bytes) -> AESGCM | ChaCha20Poly1305:
        if len(key) != self.nk:
            raise HPKEError(f"{self.name}: key must be {self.nk} bytes, got {len(key)}")
        if len(nonce) != self.nn:
            raise HPKEError(f"{self.name}: nonce must be {self.nn} bytes, got {len(nonce)}")
        return self.factory(key)

    def seal(self, key: bytes, nonce: bytes, aad: bytes, pt: bytes) -> bytes:
        return self._cipher(key, nonce).encrypt(nonce, pt, aad)

    def open(self, key: bytes, nonce: bytes, aad: bytes, ct: bytes) -> bytes:
        cipher = self._cipher(key, nonce)
        try:
            return cipher.decrypt(nonce, ct, aad)
        except InvalidTag as exc:
            raise HPKEError(f"{self.name}: authentication failed") from exc


AES_128_GCM = AEAD(0x0001, "AES-128-GCM", 16, 12, 16, AESGCM)
AES_256_GCM = AEAD(0x0002, "AES-256-GCM", 32, 12, 16, AESGCM)
CHACHA20_POLY1305 = AEAD(0x0003, "ChaCha20Poly1305", 32, 12, 16, ChaCha20Poly1305)
AEADS: dict[int, AEAD] = {a.aead_id: a for a in (AES_128_GCM, AES_256_GCM, CHACHA20_POLY1305)}


# -------------------------------------------------------------------------- DHKEM

# Group orders, needed for DeriveKeyPair's rejection sampling (RFC 9180 s.7.1.3).
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P384_ORDER = int(
    "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973", 16
)
P521_ORDER = int(
    "01FF" + "FFFFFFFF" * 7 + "FFFFFFFA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409", 16
)

_CURVES: dict[int, ec.EllipticCurve] = {
    0x0010: ec.SECP256R1(),
    0x0011: ec.SECP384R1(),
    0x0012: ec.SECP521R1(),
}

_PrivKey = x25519.X25519PrivateKey | x448.X448PrivateKey | ec.EllipticCurvePrivateKey
_PubKey = x25519.X25519PublicKey | x448.X448PublicKey | ec.EllipticCurvePublicKey


def _parse_private(kem_id: int, sk: bytes) -> _PrivKey:
    kem = KEMS[kem_id]
    # P-curve private keys are big-endian scalars; accept them with leading
    # zero bytes dropped (as the official P-521 MLS vectors have them).
    short_ok = kem_id not in (0x0020, 0x0021) and 0 < len(sk) < kem.nsk
    if len(sk) != kem.nsk and not short_ok:
        raise HPKEError(f"{kem.name}: private key must be {kem.nsk} bytes, got {len(sk)}")
    try:
        if kem_id == 0x0020:
            return x25519.X25519PrivateKey.from_private_bytes(sk)
        if kem_id == 0x0021:
            return x448.X448PrivateKey.from_private_bytes(sk)
        scalar = int.from_bytes(sk, "big")
        if not 0 < scalar < kem.order:
            raise HPKEError(f"{kem.name}: private scalar out of range")
        return ec.derive_private_key(scalar, _CURVES[kem_id])
    except ValueError as exc:
        raise HPKEError(f"{kem.name}: bad private key: {exc}") from exc


def _parse_public(kem_id: int, pk: bytes) -> _PubKey:
    kem = KEMS[kem_id]
    if len(pk) != kem.npk:
        raise HPKEError(f"{kem.name}: public key must be {kem.npk} bytes, got {len(pk)}")
    try:
        if kem_id == 0x0020:
            return x25519.X25519PublicKey.from_public_bytes(pk)
        if kem_id == 0x0021:
            return x448.X448PublicKey.from_public_bytes(pk)
        # The length check above already rules out the compressed form, which
        # RFC 9180 does not allow; from_encoded_point checks the point is on
        # the curve.
        if pk[0] != 0x04:
            raise HPKEError(f"{kem.name}: public key is not an uncompressed SEC1 point")
        return ec.EllipticCurvePublicKey.from_encoded_point(_CURVES[kem_id], pk)
    except ValueError as exc:
        raise HPKEError(f"{kem.name}: bad public key: {exc}") from exc


# Long-lived keys (leaf/node keys, external keys) go through the caches;
# one-shot ephemeral keys in Encap/Decap use the _parse_* functions directly so
# they do not evict the keys that are worth keeping.
_load_private = lru_cache(maxsize=_KEY_CACHE_SIZE)(_parse_private)
_load_public = lru_cache(maxsize=_KEY_CACHE_SIZE)(_parse_public)


@lru_cache(maxsize=_KEY_CACHE_SIZE)
def _public_from_private(kem_id: int, sk: bytes) -> bytes:
    return _serialize_public(_load_private(kem_id, sk).public_key())


def _serialize_public(pub: _PubKey) -> bytes:
    if isinstance(pub, ec.EllipticCurvePublicKey):
        return pub.public_bytes(
            encoding=_serialization.Encoding.X962,
            format=_serialization.PublicFormat.UncompressedPoint,
        )
    return pub.public_bytes_raw()


@dataclass(frozen=True)
class DHKEM:
    """A DHKEM(Group, HKDF) instance (RFC 9180 s.4.1).

    ``suite_id`` and the labeled-KDF prefix are computed once here because
    every Encap/Decap/DeriveKeyPair needs them.
    """

    kem_id: int
    name: str
    kdf: KDF
    nsecret: int
    nenc: int
    npk: int
    nsk: int
    bitmask: int  # 0 for X25519/X448 (no rejection sampling)
    order: int  # 0 for X25519/X448
    suite_id: bytes = field(init=False, repr=False, compare=False)
    _prefix: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        suite_id = b"KEM" + _i2osp(self.kem_id, 2)
        object.__setattr__(self, "suite_id", suite_id)
        object.__setattr__(self, "_prefix", _HPKE_V1 + suite_id)

    # LabeledExtract / LabeledExpand with the KEM's own suite_id and KDF.
    def labeled_extract(self, salt: bytes, label: bytes, ikm: bytes) -> bytes:
        return self.kdf.extract(salt, self._prefix + label + ikm)

    def labeled_expand(self, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
        return self.kdf.expand(prk, _i2osp(length, 2) + self._prefix + label + info, length)

    def derive_key_pair(self, ikm: bytes) -> tuple[bytes, bytes]:
        """DeriveKeyPair (s.7.1.3); returns (SerializePrivateKey, SerializePublicKey)."""
        sk = self._derive_private(ikm)
        return sk, _public_from_private(self.kem_id, sk)

    def _derive_private(self, ikm: bytes) -> bytes:
        dkp_prk = self.labeled_extract(b"", b"dkp_prk", ikm)
        if not self.order:
            sk = self.labeled_expand(dkp_prk, b"sk", b"", self.nsk)
        else:
            scalar = 0
            counter = 0
            while scalar == 0 or scalar >= self.order:
                if counter > 255:
                    raise HPKEError("DeriveKeyPairError")
                candidate = bytearray(self.labeled_expand(dkp_prk, b"candidate", bytes((counter,)), self.nsk))
                candidate[0] &= self.bitmask
                scalar = int.from_bytes(candidate, "big")
                counter += 1
            sk = scalar.to_bytes(self.nsk, "big")
        return sk

    def generate_key_pair(self, rng: RandomSource) -> tuple[bytes, bytes]:
        """GenerateKeyPair as DeriveKeyPair(random(Nsk)), so it replays from a seed."""
        return self.derive_key_pair(rng.random_bytes(self.nsk))

    def public_key(self, sk: bytes) -> bytes:
        return _public_from_private(self.kem_id, sk)

    def validate_public_key(self, pk: bytes) -> None:
        """DeserializePublicKey, for its checks only; raises HPKEError."""
        _load_public(self.kem_id, pk)

    def dh(self, sk: bytes, pk: bytes) -> bytes:
        return self._dh(_load_private(self.kem_id, sk), _load_public(self.kem_id, pk))

    def _dh(self, priv: _PrivKey, pub: _PubKey) -> bytes:
        try:
            if isinstance(priv, ec.EllipticCurvePrivateKey):
                assert isinstance(pub, ec.EllipticCurvePublicKey)
                out = priv.exchange(ec.ECDH(), pub)
            else:
                out = priv.exchange(pub)  # type: ignore[arg-type]
        except ValueError as exc:  # X25519/X448 low-order point -> all-zero output
            raise HPKEError(f"{self.name}: DH failed: {exc}") from exc
        if not any(out):
            raise HPKEError(f"{self.name}: DH output is all zero")
        return out

    def _extract_and_expand(self, dh: bytes, kem_context: bytes) -> bytes:
        eae_prk = self.labeled_extract(b"", b"eae_prk", dh)
        return self.labeled_expand(eae_prk, b"shared_secret", kem_context, self.nsecret)

    def encap_with_ikm(self, pk_r: bytes, ikm_e: bytes) -> tuple[bytes, bytes]:
        """Encap with a caller-chosen ephemeral IKM (what RFC 9180's test
        vectors call ikmE); returns (shared_secret, enc)."""
        priv_e = _parse_private(self.kem_id, self._derive_private(ikm_e))
        enc = _serialize_public(priv_e.public_key())
        dh = self._dh(priv_e, _load_public(self.kem_id, pk_r))
        return self._extract_and_expand(dh, enc + pk_r), enc

    def encap(self, pk_r: bytes, rng: RandomSource) -> tuple[bytes, bytes]:
        """Encap(pkR); the ephemeral comes from ``rng`` (Nsk bytes)."""
        return self.encap_with_ikm(pk_r, rng.random_bytes(self.nsk))

    def decap(self, enc: bytes, sk_r: bytes) -> bytes:
        dh = self._dh(_load_private(self.kem_id, sk_r), _parse_public(self.kem_id, enc))
        return self._extract_and_expand(dh, enc + self.public_key(sk_r))


DHKEM_P256 = DHKEM(0x0010, "DHKEM(P-256, HKDF-SHA256)", HKDF_SHA256, 32, 65, 65, 32, 0xFF, P256_ORDER)
DHKEM_P384 = DHKEM(0x0011, "DHKEM(P-384, HKDF-SHA384)", HKDF_SHA384, 48, 97, 97, 48, 0xFF, P384_ORDER)
DHKEM_P521 = DHKEM(0x0012, "DHKEM(P-521, HKDF-SHA512)", HKDF_SHA512, 64, 133, 133, 66, 0x01, P521_ORDER)
DHKEM_X25519 = DHKEM(0x0020, "DHKEM(X25519, HKDF-SHA256)", HKDF_SHA256, 32, 32, 32, 32, 0, 0)
DHKEM_X448 = DHKEM(0x0021, "DHKEM(X448, HKDF-SHA512)", HKDF_SHA512, 64, 56, 56, 56, 0, 0)
KEMS: dict[int, DHKEM] = {k.kem_id: k for k in (DHKEM_P256, DHKEM_P384, DHKEM_P521, DHKEM_X25519, DHKEM_X448)}


# ----------------------------------------------------------------------- Context


class Context:
    """An HPKE encryption context (s.5.2).

    One class serves both roles: the sender only seals and the recipient only
    opens, and both share the same sequence-number and exporter logic.
    """

    __slots__ = ("suite", "key", "base_nonce", "exporter_secret", "seq", "_max_seq")

    def __init__(self, suite: HPKESuite, key: bytes, base_nonce: bytes, exporter_secret: bytes) -> None:
        self.suite = suite
        self.key = key
        self.base_nonce = base_nonce
        self.exporter_secret = exporter_secret
        self.seq = 0
        self._max_seq = (1 << (8 * suite.aead.nn)) - 1

    def compute_nonce(self, seq: int) -> bytes:
        nn = self.suite.aead.nn
        return (int.from_bytes(self.base_nonce, "big") ^ seq).to_bytes(nn, "big")

    def _increment_seq(self) -> None:
        if self.seq >= self._max_seq:
            raise HPKEError("MessageLimitReachedError")
        self.seq += 1

    def seal(self, aad: bytes, pt: bytes) -> bytes:
        if self.seq >= self._max_seq:
            raise HPKEError("MessageLimitReachedError")
        ct = self.suite.aead.seal(self.key, self.compute_nonce(self.seq), aad, pt)
        self._increment_seq()
        return ct

    def open(self, aad: bytes, ct: bytes) -> bytes:
        if self.seq >= self._max_seq:
            raise HPKEError("MessageLimitReachedError")
        pt = self.suite.aead.open(self.key, self.compute_nonce(self.seq), aad, ct)
        self._increment_seq()
        return pt

    def export(self, exporter_context: bytes, length: int) -> bytes:
        return self.suite.labeled_expand(self.exporter_secret, b"sec", exporter_context, length)


# -------------------------------------------------------------------- HPKESuite


@dataclass(frozen=True)
class HPKESuite:
    """(KEM, KDF, AEAD) with its ``suite_id`` precomputed (s.5.1)."""

    kem: DHKEM
    kdf: KDF
    aead: AEAD
    suite_id: bytes = field(init=False, repr=False, compare=False)
    _prefix: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        suite_id = (
            b"HPKE" + _i2osp(self.kem.kem_id, 2) + _i2osp(self.kdf.kdf_id, 2) + _i2osp(self.aead.aead_id, 2)
        )
        object.__setattr__(self, "suite_id", suite_id)
        object.__setattr__(self, "_prefix", _HPKE_V1 + suite_id)

    def labeled_extract(self, salt: bytes, label: bytes, ikm: bytes) -> bytes:
        return self.kdf.extract(salt, self._prefix + label + ikm)

    def labeled_expand(self, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
        if length > 0xFFFF:
            raise HPKEError("LabeledExpand length exceeds 2^16-1")
        return self.kdf.expand(prk, _i2osp(length, 2) + self._prefix + label + info, length)

    def key_schedule_context(self, mode: int, info: bytes, psk_id: bytes = b"") -> bytes:
        psk_id_hash = self.labeled_extract(b"", b"psk_id_hash", psk_id)
        info_hash = self.labeled_extract(b"", b"info_hash", info)
        return bytes((mode,)) + psk_id_hash + info_hash

    def key_schedule(
        self, mode: int, shared_secret: bytes, info: bytes, psk: bytes = b"", psk_id: bytes = b""
    ) -> Context:
        if mode == MODE_BASE:
            if psk or psk_id:
                raise HPKEError("PSK input given in base mode")
        elif mode == MODE_PSK:
            if not psk or not psk_id:
                raise HPKEError("PSK mode needs both psk and psk_id")
        else:
            raise HPKEError(f"unsupported HPKE mode {mode}")
        ksc = self.key_schedule_context(mode, info, psk_id)
        secret = self.labeled_extract(shared_secret, b"secret", psk)
        key = self.labeled_expand(secret, b"key", ksc, self.aead.nk)
        base_nonce = self.labeled_expand(secret, b"base_nonce", ksc, self.aead.nn)
        exporter_secret = self.labeled_expand(secret, b"exp", ksc, self.kdf.nh)
        return Context(self, key, base_nonce, exporter_secret)

    # Setup functions (s.5.1.1, s.5.1.2)
    def setup_base_s(self, pk_r: bytes, info: bytes, rng: RandomSource) -> tuple[bytes, Context]:
        shared_secret, enc = self.kem.encap(pk_r, rng)
        return enc, self.key_schedule(MODE_BASE, shared_secret, info)

    def setup_base_r(self, enc: bytes, sk_r: bytes, info: bytes) -> Context:
        return self.key_schedule(MODE_BASE, self.kem.decap(enc, sk_r), info)

    def setup_psk_s(
        self, pk_r: bytes, info: bytes, psk: bytes, psk_id: bytes, rng: RandomSource
    ) -> tuple[bytes, Context]:
        shared_secret, enc = self.kem.encap(pk_r, rng)
        return enc, self.key_schedule(MODE_PSK, shared_secret, info, psk, psk_id)

    def setup_psk_r(self, enc: bytes, sk_r: bytes, info: bytes, psk: bytes, psk_id: bytes) -> Context:
        return self.key_schedule(MODE_PSK, self.kem.decap(enc, sk_r), info, psk, psk_id)

    # Single-shot APIs (s.6)
    def seal_base(
        self, pk_r: bytes, info: bytes, aad: bytes, pt: bytes, rng: RandomSource
    ) -> tuple[bytes, bytes]:
        enc, ctx = self.setup_base_s(pk_r, info, rng)
        return enc, ctx.seal(aad, pt)

    def open_base(self, enc: bytes, sk_r: bytes, info: bytes, aad: bytes, ct: bytes) -> bytes:
        return self.setup_base_r(enc, sk_r, info).open(aad, ct)

    def send_export_base(
        self, pk_r: bytes, info: bytes, exporter_context: bytes, length: int, rng: RandomSource
    ) -> tuple[bytes, bytes]:
        enc, ctx = self.setup_base_s(pk_r, info, rng)
        return enc, ctx.export(exporter_context, length)

    def receive_export_base(
        self, enc: bytes, sk_r: bytes, info: bytes, exporter_context: bytes, length: int
    ) -> bytes:
        return self.setup_base_r(enc, sk_r, info).export(exporter_context, length)


@cache
def get_hpke_suite(kem_id: int, kdf_id: int, aead_id: int) -> HPKESuite:
    """The (interned) suite object; raises HPKEError for unknown algorithms."""
    try:
        return HPKESuite(KEMS[kem_id], KDFS[kdf_id], AEADS[aead_id])
    except KeyError as exc:
        raise HPKEError(f"unsupported HPKE algorithm id {exc.args[0]:#06x}") from exc
