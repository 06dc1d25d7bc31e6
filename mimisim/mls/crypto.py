"""MLS ciphersuites 1..7 (RFC 9420 s.5.1) as one object per suite.

Everything the rest of the MLS core needs from cryptography goes through a
:class:`CipherSuite`, so that protocol code never touches `cryptography`
directly and never sees a key object: keys are ``bytes`` in exactly the form
MLS serialises them (raw for X25519/X448/Ed25519/Ed448, uncompressed SEC1
points for ECDSA/ECDH public keys, fixed-length big-endian scalars for NIST
private keys). Parsing those bytes is the expensive part at 1000-member
groups, so parsed objects live in bounded LRU caches keyed by the bytes.

The simulator is sans-IO and must replay exactly from a seed: nothing here
reads the OS RNG or the clock. All randomness arrives through a
:class:`RandomSource`; ECDSA signing is RFC 6979 deterministic, and EdDSA is
deterministic by construction, so a run is a pure function of its seed.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import hmac
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519

from mimisim import sharing
from mimisim.mls import hpke
from mimisim.mls.hpke import HPKEError, HPKESuite

__all__ = [
    "OpCounts",
    "SUITES",
    "CipherSuite",
    "CryptoError",
    "DeterministicRandom",
    "RandomSource",
    "UnsupportedCipherSuite",
    "get_suite",
    "metered",
    "metering",
]


@dataclass
class OpCounts:
    """A counter of the expensive public-key operations (signatures signed or
    verified, HPKE operations), for the simulator's processing-cost model.

    There is no global counter. A caller that wants the counts of some work
    passes its own counter in with :func:`metered` around that work (the
    provider core does, for each input, and returns the counts on its output
    envelope); outside a ``metered`` block the suites count nothing.
    """

    signatures: int = 0
    hpke: int = 0

    def snapshot(self) -> tuple[int, int]:
        return self.signatures, self.hpke


#: The counter of the innermost :func:`metered` block of this context (None: no metering).
_METER: contextvars.ContextVar[OpCounts | None] = contextvars.ContextVar("mimisim_crypto_meter", default=None)


@contextlib.contextmanager
def metered(counter: OpCounts) -> Iterator[OpCounts]:
    """Count the public-key operations done inside the block into ``counter``.

    Scoped, not global: the counter is the caller's, it is active only for
    the block (nested blocks count into the innermost), and a context
    variable keeps concurrent contexts apart.
    """
    token = _METER.set(counter)
    try:
        yield counter
    finally:
        _METER.reset(token)


def metering() -> bool:
    """Whether a :func:`metered` block is counting operations here (work that
    shares results must then still do, and count, every logical operation)."""
    return _METER.get() is not None


def _count_signature() -> None:
    m = _METER.get()
    if m is not None:
        m.signatures += 1


def _count_hpke() -> None:
    m = _METER.get()
    if m is not None:
        m.hpke += 1


class CryptoError(Exception):
    """Any cryptographic failure the protocol must handle: malformed key
    bytes, AEAD/HPKE open failure, out-of-range lengths. (A *bad signature* is
    not an error: ``verify_with_label`` returns False.)"""


class UnsupportedCipherSuite(CryptoError, KeyError):
    """Raised by :func:`get_suite`; a KeyError too, so ``SUITES[x]``-style
    callers and CryptoError-style callers both catch it."""


class RandomSource(Protocol):
    """The only entropy source the sans-IO core may use."""

    def random_bytes(self, n: int) -> bytes: ...


# ----------------------------------------------------------------- small codec


def _varint(n: int) -> bytes:
    """RFC 9420 s.2.1.2 variable-length integer. Private on purpose: the full
    codec lives in mimisim.codec and this module must not depend on it."""
    if n < 0x40:
        return bytes((n,))
    if n < 0x4000:
        return (n | 0x4000).to_bytes(2, "big")
    if n < 0x40000000:
        return (n | 0x80000000).to_bytes(4, "big")
    raise CryptoError(f"length {n} too large for an MLS varint")


def _opaque(data: bytes) -> bytes:
    """``opaque data<V>``."""
    return _varint(len(data)) + data


def _b(value: bytes | str) -> bytes:
    """Labels are bytes on the wire; accepting str keeps call sites readable."""
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


_MLS_PREFIX = b"MLS 1.0 "


def _mls_label(label: bytes | str) -> bytes:
    return _opaque(_MLS_PREFIX + _b(label))


# ------------------------------------------------------------------------- DRBG


class DeterministicRandom:
    """Seeded DRBG: HMAC-SHA256 in counter mode under a key derived from
    ``(seed, label)``.

    Not a certified DRBG; its job is reproducibility with good statistical
    quality, so that a scenario seed fixes every key and nonce. Output is a
    byte stream: ``random_bytes(3) + random_bytes(5)`` equals
    ``random_bytes(8)`` on a fresh instance, so how callers chunk their
    requests does not change what they get.

    ``fork(name)`` derives a child from the parent's *key* (not its position),
    so components can get their own streams without the order in which they
    draw perturbing each other. Forking the same name twice gives the same
    stream; use distinct names for independent children.
    """

    __slots__ = ("_key", "_counter", "_buf")

    _DOMAIN = b"mimisim DeterministicRandom v1"

    def __init__(self, seed: bytes | int, label: str = "") -> None:
        if isinstance(seed, bool) or not isinstance(seed, int | bytes | bytearray | memoryview):
            raise TypeError("seed must be bytes or a non-negative int")
        if isinstance(seed, int):
            if seed < 0:
                raise ValueError("integer seed must be non-negative")
            seed_bytes = b"i" + seed.to_bytes(max(1, (seed.bit_length() + 7) // 8), "big")
        else:
            seed_bytes = b"b" + bytes(seed)
        self._key = hmac.digest(self._DOMAIN, _opaque(seed_bytes) + _opaque(label.encode("utf-8")), "sha256")
        self._counter = 0
        self._buf = b""

    @classmethod
    def _from_key(cls, key: bytes) -> DeterministicRandom:
        child = cls.__new__(cls)
        child._key = key
        child._counter = 0
        child._buf = b""
        return child

    def random_bytes(self, n: int) -> bytes:
        if n < 0:
            raise ValueError("n must be non-negative")
        buf = self._buf
        if len(buf) < n:
            parts = [buf]
            have = len(buf)
            key = self._key
            counter = self._counter
            while have < n:
                parts.append(hmac.digest(key, b"\x00" + counter.to_bytes(8, "big"), "sha256"))
                have += 32
                counter += 1
            self._counter = counter
            buf = b"".join(parts)
        self._buf = buf[n:]
        return buf[:n]

    def fork(self, name: str) -> DeterministicRandom:
        # Prefix 0x01 vs 0x00 for stream blocks keeps fork keys and output
        # blocks in disjoint HMAC input domains.
        return DeterministicRandom._from_key(hmac.digest(self._key, b"\x01" + name.encode("utf-8"), "sha256"))

    def __repr__(self) -> str:
        return f"<DeterministicRandom at block {self._counter}>"


# -------------------------------------------------------------- signature keys


@dataclass(frozen=True)
class _SigScheme:
    name: str
    is_ecdsa: bool
    nsk: int
    curve: ec.EllipticCurve | None = None
    order: int = 0
    top_mask: int = 0xFF
    hash_algo: hashes.HashAlgorithm | None = None


_SIG_SCHEMES: dict[str, _SigScheme] = {
    s.name: s
    for s in (
        _SigScheme("ed25519", False, 32),
        _SigScheme("ed448", False, 57),
        _SigScheme(
            "ecdsa_secp256r1_sha256", True, 32, ec.SECP256R1(), hpke.P256_ORDER, 0xFF, hashes.SHA256()
        ),
        _SigScheme(
            "ecdsa_secp384r1_sha384", True, 48, ec.SECP384R1(), hpke.P384_ORDER, 0xFF, hashes.SHA384()
        ),
        _SigScheme(
            "ecdsa_secp521r1_sha512", True, 66, ec.SECP521R1(), hpke.P521_ORDER, 0x01, hashes.SHA512()
        ),
    )
}

_SigPriv = ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey | ec.EllipticCurvePrivateKey
_SigPub = ed25519.Ed25519PublicKey | ed448.Ed448PublicKey | ec.EllipticCurvePublicKey

_SIG_CACHE_SIZE = 8192


@lru_cache(maxsize=_SIG_CACHE_SIZE)
def _load_sig_private(scheme_name: str, priv: bytes) -> _SigPriv:
    scheme = _SIG_SCHEMES[scheme_name]
    # ECDSA scalars are big-endian integers: some implementations (and the
    # official P-521 vectors) drop leading zero bytes, so accept shorter ones.
    ecdsa = scheme_name not in ("ed25519", "ed448")
    if len(priv) != scheme.nsk and not (ecdsa and 0 < len(priv) < scheme.nsk):
        raise CryptoError(f"{scheme_name}: private key must be {scheme.nsk} bytes, got {len(priv)}")
    try:
        if scheme_name == "ed25519":
            return ed25519.Ed25519PrivateKey.from_private_bytes(priv)
        if scheme_name == "ed448":
            return ed448.Ed448PrivateKey.from_private_bytes(priv)
        d = int.from_bytes(priv, "big")
        if not 0 < d < scheme.order:
            raise CryptoError(f"{scheme_name}: private scalar out of range")
        assert scheme.curve is not None
        return ec.derive_private_key(d, scheme.curve)
    except ValueError as exc:
        raise CryptoError(f"{scheme_name}: bad private key: {exc}") from exc


@lru_cache(maxsize=_SIG_CACHE_SIZE)
def _load_sig_public(scheme_name: str, pub: bytes) -> _SigPub:
    scheme = _SIG_SCHEMES[scheme_name]
    try:
        if scheme_name == "ed25519":
            return ed25519.Ed25519PublicKey.from_public_bytes(pub)
        if scheme_name == "ed448":
            return ed448.Ed448PublicKey.from_public_bytes(pub)
        # MLS fixes the uncompressed form; refuse compressed/hybrid encodings
        # so that one key has exactly one byte representation.
        if len(pub) != 1 + 2 * scheme.nsk or pub[0] != 0x04:
            raise CryptoError(f"{scheme_name}: public key is not an uncompressed SEC1 point")
        assert scheme.curve is not None
        return ec.EllipticCurvePublicKey.from_encoded_point(scheme.curve, pub)
    except ValueError as exc:
        raise CryptoError(f"{scheme_name}: bad public key: {exc}") from exc


def _verify(scheme_name: str, pub: bytes, data: bytes, sig: bytes) -> bool:
    try:
        key = _load_sig_public(scheme_name, pub)
        if isinstance(key, ec.EllipticCurvePublicKey):
            hash_algo = _SIG_SCHEMES[scheme_name].hash_algo
            assert hash_algo is not None
            key.verify(sig, data, ec.ECDSA(hash_algo))
        else:
            key.verify(sig, data)
    except (InvalidSignature, CryptoError, ValueError, TypeError):
        return False
    return True


#: Verification results shared by exact inputs (scheme, public key, signed bytes, signature):
#: a pure function, so every simulated member that verifies the same signature gets the same
#: answer it would have computed (see :mod:`mimisim.sharing`). Bounded LRU.
_verify_shared = lru_cache(maxsize=_SIG_CACHE_SIZE)(_verify)


@lru_cache(maxsize=_SIG_CACHE_SIZE)
def _sig_public_from_private(scheme_name: str, priv: bytes) -> bytes:
    pub = _load_sig_private(scheme_name, priv).public_key()
    if isinstance(pub, ec.EllipticCurvePublicKey):
        return pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return pub.public_bytes_raw()


# ------------------------------------------------------------------ CipherSuite


@dataclass(frozen=True)
class CipherSuite:
    """One MLS ciphersuite. Stateless and immutable, so one instance per
    suite is shared by every simulated client."""

    suite_id: int
    name: str
    kem_id: int
    kdf_id: int
    aead_id: int
    hash_len: int  # Nh
    aead_key_len: int
    aead_nonce_len: int
    signature_scheme: str
    hpke: HPKESuite = field(init=False, repr=False, compare=False)
    _hash_fn: Callable[[bytes], Any] = field(init=False, repr=False, compare=False)
    _hash_name: str = field(init=False, repr=False, compare=False)
    _sig: _SigScheme = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        suite = hpke.get_hpke_suite(self.kem_id, self.kdf_id, self.aead_id)
        if (suite.kdf.nh, suite.aead.nk, suite.aead.nn) != (
            self.hash_len,
            self.aead_key_len,
            self.aead_nonce_len,
        ):
            raise ValueError(f"{self.name}: sizes disagree with the HPKE algorithms")
        object.__setattr__(self, "hpke", suite)
        object.__setattr__(self, "_hash_name", suite.kdf.hash_name)
        object.__setattr__(self, "_hash_fn", getattr(hashlib, suite.kdf.hash_name))
        object.__setattr__(self, "_sig", _SIG_SCHEMES[self.signature_scheme])

    # -- hashing and KDF ------------------------------------------------------

    def hash(self, data: bytes) -> bytes:
        return self._hash_fn(data).digest()

    def mac(self, key: bytes, data: bytes) -> bytes:
        return hmac.digest(key, data, self._hash_name)

    def kdf_extract(self, salt: bytes, ikm: bytes) -> bytes:
        return self.hpke.kdf.extract(salt, ikm)

    def kdf_expand(self, prk: bytes, info: bytes, length: int) -> bytes:
        try:
            return self.hpke.kdf.expand(prk, info, length)
        except HPKEError as exc:
            raise CryptoError(str(exc)) from exc

    def expand_with_label(self, secret: bytes, label: bytes | str, context: bytes, length: int) -> bytes:
        if sharing.enabled and SUITES.get(self.suite_id) is self:
            return _expand_shared(self.suite_id, bytes(secret), label, bytes(context), length)
        return self._expand_with_label(secret, label, context, length)

    def _expand_with_label(self, secret: bytes, label: bytes | str, context: bytes, length: int) -> bytes:
        if not 0 <= length <= 0xFFFF:
            raise CryptoError(f"ExpandWithLabel length {length} does not fit uint16")
        kdf_label = length.to_bytes(2, "big") + _mls_label(label) + _opaque(context)
        return self.kdf_expand(secret, kdf_label, length)

    def derive_secret(self, secret: bytes, label: bytes | str) -> bytes:
        return self.expand_with_label(secret, label, b"", self.hash_len)

    def derive_tree_secret(self, secret: bytes, label: bytes | str, generation: int, length: int) -> bytes:
        if not 0 <= generation <= 0xFFFFFFFF:
            raise CryptoError(f"generation {generation} does not fit uint32")
        return self.expand_with_label(secret, label, generation.to_bytes(4, "big"), length)

    def ref_hash(self, label: bytes | str, value: bytes) -> bytes:
        return self.hash(_opaque(_b(label)) + _opaque(value))

    def make_key_package_ref(self, kp: bytes) -> bytes:
        return self.ref_hash(b"MLS 1.0 KeyPackage Reference", kp)

    def make_proposal_ref(self, auth_content: bytes) -> bytes:
        return self.ref_hash(b"MLS 1.0 Proposal Reference", auth_content)

    # -- AEAD -----------------------------------------------------------------

    def aead_seal(self, key: bytes, nonce: bytes, aad: bytes, pt: bytes) -> bytes:
        try:
            return self.hpke.aead.seal(key, nonce, aad, pt)
        except HPKEError as exc:
            raise CryptoError(str(exc)) from exc

    def aead_open(self, key: bytes, nonce: bytes, aad: bytes, ct: bytes) -> bytes:
        try:
            return self.hpke.aead.open(key, nonce, aad, ct)
        except HPKEError as exc:
            raise CryptoError(str(exc)) from exc

    # -- signatures -----------------------------------------------------------

    def _sign_content(self, label: bytes | str, content: bytes) -> bytes:
        return _mls_label(label) + _opaque(content)

    def sign_with_label(self, priv: bytes, label: bytes | str, content: bytes) -> bytes:
        _count_signature()
        key = _load_sig_private(self._sig.name, bytes(priv))
        data = self._sign_content(label, content)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            assert self._sig.hash_algo is not None
            return key.sign(data, ec.ECDSA(self._sig.hash_algo, deterministic_signing=True))
        return key.sign(data)

    def verify_with_label(self, pub: bytes, label: bytes | str, content: bytes, sig: bytes) -> bool:
        # Never raises: a malformed key or signature from a peer is just an
        # invalid signature as far as the protocol is concerned. Counted as
        # one signature operation whether or not the result was shared.
        _count_signature()
        data = self._sign_content(label, content)
        if sharing.enabled:
            return _verify_shared(self._sig.name, bytes(pub), data, bytes(sig))
        return _verify(self._sig.name, bytes(pub), data, bytes(sig))

    def signature_public_key(self, priv: bytes) -> bytes:
        return _sig_public_from_private(self._sig.name, bytes(priv))

    def generate_signature_key_pair(self, rng: RandomSource) -> tuple[bytes, bytes]:
        """(priv, pub). EdDSA keys are random seeds; ECDSA scalars are
        rejection-sampled in [1, n-1] (top byte masked for P-521 so that
        rejection stays rare)."""
        scheme = self._sig
        if not scheme.is_ecdsa:
            priv = rng.random_bytes(scheme.nsk)
        else:
            for _ in range(256):
                candidate = bytearray(rng.random_bytes(scheme.nsk))
                candidate[0] &= scheme.top_mask
                d = int.from_bytes(candidate, "big")
                if 0 < d < scheme.order:
                    priv = bytes(candidate)
                    break
            else:
                raise CryptoError("random source keeps producing out-of-range ECDSA scalars")
        return priv, self.signature_public_key(priv)

    # -- HPKE -----------------------------------------------------------------

    def derive_key_pair(self, ikm: bytes) -> tuple[bytes, bytes]:
        try:
            return self.hpke.kem.derive_key_pair(bytes(ikm))
        except HPKEError as exc:
            raise CryptoError(str(exc)) from exc

    def hpke_public_key(self, priv: bytes) -> bytes:
        try:
            return self.hpke.kem.public_key(bytes(priv))
        except HPKEError as exc:
            raise CryptoError(str(exc)) from exc

    def generate_hpke_key_pair(self, rng: RandomSource) -> tuple[bytes, bytes]:
        return self.derive_key_pair(rng.random_bytes(self.hpke.kem.nsk))

    def validate_hpke_public_key(self, pub: bytes) -> bool:
        """Whether ``pub`` deserialises (right length, on the curve)."""
        try:
            self.hpke.kem.validate_public_key(bytes(pub))
        except HPKEError:
            return False
        return True

    def hpke_seal_base(
        self, pub: bytes, info: bytes, aad: bytes, pt: bytes, rng: RandomSource
    ) -> tuple[bytes, bytes]:
        """SealBase -> (enc, ct)."""
        _count_hpke()
        try:
            return self.hpke.seal_base(bytes(pub), info, aad, pt, rng)
        except HPKEError as exc:
            raise CryptoError(str(exc)) from exc

    def hpke_open_base(self, priv: bytes, enc: bytes, info: bytes, aad: bytes, ct: bytes) -> bytes:
        _count_hpke()
        try:
            return self.hpke.open_base(bytes(enc), bytes(priv), info, aad, ct)
        except HPKEError as exc:
            raise CryptoError(str(exc)) from exc

    def hpke_export_sender(
        self, pub: bytes, info: bytes, exporter_context: bytes, length: int, rng: RandomSource
    ) -> tuple[bytes, bytes]:
        """SetupBaseS + Export -> (enc, exported secret)."""
        _count_hpke()
        try:
            return self.hpke.send_export_base(bytes(pub), info, exporter_context, length, rng)
        except HPKEError as exc:
            raise CryptoError(str(exc)) from exc

    def hpke_export_receiver(
        self, priv: bytes, enc: bytes, info: bytes, exporter_context: bytes, length: int
    ) -> bytes:
        _count_hpke()
        try:
            return self.hpke.receive_export_base(bytes(enc), bytes(priv), info, exporter_context, length)
        except HPKEError as exc:
            raise CryptoError(str(exc)) from exc

    def _encrypt_context(self, label: bytes | str, context: bytes) -> bytes:
        return _mls_label(label) + _opaque(context)

    def encrypt_with_label(
        self, pub: bytes, label: bytes | str, context: bytes, plaintext: bytes, rng: RandomSource
    ) -> tuple[bytes, bytes]:
        """EncryptWithLabel -> (kem_output, ciphertext)."""
        return self.hpke_seal_base(pub, self._encrypt_context(label, context), b"", plaintext, rng)

    def decrypt_with_label(
        self, priv: bytes, label: bytes | str, context: bytes, kem_output: bytes, ciphertext: bytes
    ) -> bytes:
        return self.hpke_open_base(priv, kem_output, self._encrypt_context(label, context), b"", ciphertext)

    def external_init_sender(self, pub: bytes, rng: RandomSource) -> tuple[bytes, bytes]:
        """RFC 9420 s.8.3: (kem_output, init_secret) for an external joiner."""
        return self.hpke_export_sender(pub, b"", b"MLS 1.0 external init secret", self.hash_len, rng)

    def external_init_receiver(self, priv: bytes, kem_output: bytes) -> bytes:
        return self.hpke_export_receiver(
            priv, kem_output, b"", b"MLS 1.0 external init secret", self.hash_len
        )


# fmt: off
_SUITE_TABLE: tuple[tuple[int, str, int, int, int, int, int, int, str], ...] = (
    # id name                                                  KEM     KDF     AEAD    Nh  Nk  Nn  signature
    (1, "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519",        0x0020, 0x0001, 0x0001, 32, 16, 12, "ed25519"),
    (2, "MLS_128_DHKEMP256_AES128GCM_SHA256_P256",             0x0010, 0x0001, 0x0001, 32, 16, 12, "ecdsa_secp256r1_sha256"),
    (3, "MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519", 0x0020, 0x0001, 0x0003, 32, 32, 12, "ed25519"),
    (4, "MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448",            0x0021, 0x0003, 0x0002, 64, 32, 12, "ed448"),
    (5, "MLS_256_DHKEMP521_AES256GCM_SHA512_P521",             0x0012, 0x0003, 0x0002, 64, 32, 12, "ecdsa_secp521r1_sha512"),
    (6, "MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448",     0x0021, 0x0003, 0x0003, 64, 32, 12, "ed448"),
    (7, "MLS_256_DHKEMP384_AES256GCM_SHA384_P384",             0x0011, 0x0002, 0x0002, 48, 32, 12, "ecdsa_secp384r1_sha384"),
)
# fmt: on

SUITES: dict[int, CipherSuite] = {row[0]: CipherSuite(*row) for row in _SUITE_TABLE}


#: ExpandWithLabel shared by exact inputs (suite, secret, label, context,
#: length): a pure function that every simulated member of a group calls with
#: the group's same secrets (the key schedule of each epoch, the secret tree
#: down to each sender's leaf, each message's key and nonce), so it is
#: computed once per process (see :mod:`mimisim.sharing`). Each member still
#: holds and deletes its own copies as RFC 9420 s.9.2 says; this bounded
#: cache holds values only as long as they are recent. Errors are not cached.
_EXPAND_CACHE_SIZE = 1 << 16


@lru_cache(maxsize=_EXPAND_CACHE_SIZE)
def _expand_shared(suite_id: int, secret: bytes, label: bytes | str, context: bytes, length: int) -> bytes:
    return get_suite(suite_id)._expand_with_label(secret, label, context, length)


def get_suite(suite_id: int) -> CipherSuite:
    """Raises UnsupportedCipherSuite (both a CryptoError and a KeyError)."""
    try:
        return SUITES[suite_id]
    except KeyError:
        raise UnsupportedCipherSuite(f"unsupported MLS cipher suite {suite_id:#06x}") from None
