"""The MLS key schedule (RFC 9420 s.8), PSK secret (s.8.4), exporter (s.8.5)
and the secret tree with its hash ratchets (s.9, s.6.3.2).

Pure functions of their inputs: no I/O, clock or randomness. The cipher suite
object (:mod:`mimisim.mls.crypto`) supplies the primitives; labels passed to
it are bytes without the ``"MLS 1.0 "`` prefix, which the suite adds.

The secret tree is the hot path (one key derivation per message), so it
derives tree nodes lazily, only along the path to a leaf that is actually
used, and forgets every secret as soon as the RFC's deletion schedule allows
(s.9.2): a parent once both children are derived, a leaf secret once its two
ratchets are seeded, and each ratchet secret and key once handed out. That
keeps forward secrecy and keeps memory proportional to the senders seen, not
to the group size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mimisim.mls import treemath
from mimisim.mls.errors import MLSError
from mimisim.mls.structs import PreSharedKeyID, PSKLabel

if TYPE_CHECKING:  # pragma: no cover - typing only
    from mimisim.mls.crypto import CipherSuite
else:
    CipherSuite = Any

__all__ = [
    "compute_psk_secret",
    "EpochSecrets",
    "derive_joiner_secret",
    "derive_epoch_secrets",
    "welcome_key_nonce",
    "mls_exporter",
    "sender_data_key_nonce",
    "SecretTree",
    "SecretTreeError",
    "HANDSHAKE",
    "APPLICATION",
]


# --------------------------------------------------------------------------
# pre-shared keys (s.8.4)


def compute_psk_secret(suite: CipherSuite, psks: Sequence[tuple[PreSharedKeyID, bytes]]) -> bytes:
    """Chain the PSKs in order into one ``psk_secret`` (RFC 9420 s.8.4).

    Each PSK is bound to its ID, position and the total count through
    PSKLabel, so reordering, dropping or substituting a PSK changes the
    result. With no PSKs the secret is Nh zero bytes.
    """
    nh = suite.hash_len
    zero = bytes(nh)
    secret = zero
    count = len(psks)
    for index, (psk_id, psk) in enumerate(psks):
        extracted = suite.kdf_extract(zero, psk)
        label = PSKLabel(psk_id, index, count).encode()
        psk_input = suite.expand_with_label(extracted, b"derived psk", label, nh)
        secret = suite.kdf_extract(psk_input, secret)
    return secret


# --------------------------------------------------------------------------
# epoch key schedule (s.8)


@dataclass(frozen=True)
class EpochSecrets:
    """Every secret derived from one epoch's ``epoch_secret`` (s.8, Table 4).

    ``init_secret`` is the one that seeds the NEXT epoch. ``joiner_secret``
    and ``welcome_secret`` are kept because a committer needs them to build
    Welcome messages for this epoch.
    """

    joiner_secret: bytes
    welcome_secret: bytes
    epoch_secret: bytes
    sender_data_secret: bytes
    encryption_secret: bytes
    exporter_secret: bytes
    external_secret: bytes
    confirmation_key: bytes
    membership_key: bytes
    resumption_psk: bytes
    epoch_authenticator: bytes
    init_secret: bytes

    def external_key_pair(self, suite: CipherSuite) -> tuple[bytes, bytes]:
        """(priv, pub) = KEM.DeriveKeyPair(external_secret), for external joins (s.8.3)."""
        return suite.derive_key_pair(self.external_secret)

    def __repr__(self) -> str:
        # Secrets stay out of logs and traces.
        return f"EpochSecrets(epoch_authenticator={self.epoch_authenticator[:4].hex()}...)"


def derive_joiner_secret(
    suite: CipherSuite, init_secret: bytes, commit_secret: bytes, group_context: bytes
) -> bytes:
    """joiner_secret = ExpandWithLabel(Extract(init_secret, commit_secret), "joiner", GC, Nh).

    Split out from :func:`derive_epoch_secrets` because a Welcome carries the
    joiner secret, from which a new member continues the schedule.
    """
    prk = suite.kdf_extract(init_secret, commit_secret)
    return suite.expand_with_label(prk, b"joiner", group_context, suite.hash_len)


def derive_epoch_secrets(
    suite: CipherSuite, joiner_secret: bytes, psk_secret: bytes, group_context: bytes
) -> EpochSecrets:
    """From joiner secret, PSK secret and the new GroupContext to all epoch secrets (s.8)."""
    nh = suite.hash_len
    member = suite.kdf_extract(joiner_secret, psk_secret)
    welcome_secret = suite.derive_secret(member, b"welcome")
    epoch_secret = suite.expand_with_label(member, b"epoch", group_context, nh)
    ds = suite.derive_secret
    return EpochSecrets(
        joiner_secret=joiner_secret,
        welcome_secret=welcome_secret,
        epoch_secret=epoch_secret,
        sender_data_secret=ds(epoch_secret, b"sender data"),
        encryption_secret=ds(epoch_secret, b"encryption"),
        exporter_secret=ds(epoch_secret, b"exporter"),
        external_secret=ds(epoch_secret, b"external"),
        confirmation_key=ds(epoch_secret, b"confirm"),
        membership_key=ds(epoch_secret, b"membership"),
        resumption_psk=ds(epoch_secret, b"resumption"),
        epoch_authenticator=ds(epoch_secret, b"authentication"),
        init_secret=ds(epoch_secret, b"init"),
    )


def welcome_key_nonce(suite: CipherSuite, welcome_secret: bytes) -> tuple[bytes, bytes]:
    """AEAD key and nonce protecting a Welcome's GroupInfo (s.12.4.3.1)."""
    key = suite.expand_with_label(welcome_secret, b"key", b"", suite.aead_key_len)
    nonce = suite.expand_with_label(welcome_secret, b"nonce", b"", suite.aead_nonce_len)
    return key, nonce


def mls_exporter(
    suite: CipherSuite, exporter_secret: bytes, label: bytes, context: bytes, length: int
) -> bytes:
    """MLS-Exporter (s.8.5): secrets for applications, bound to label and context."""
    derived = suite.derive_secret(exporter_secret, label)
    return suite.expand_with_label(derived, b"exported", suite.hash(context), length)


def sender_data_key_nonce(
    suite: CipherSuite, sender_data_secret: bytes, ciphertext: bytes
) -> tuple[bytes, bytes]:
    """Key and nonce for a PrivateMessage's encrypted sender data (s.6.3.2).

    Bound to a sample of the content ciphertext (its first Nh bytes, or all of
    it when shorter) so each message gets a fresh sender-data key.
    """
    sample = bytes(ciphertext[: suite.hash_len])
    key = suite.expand_with_label(sender_data_secret, b"key", sample, suite.aead_key_len)
    nonce = suite.expand_with_label(sender_data_secret, b"nonce", sample, suite.aead_nonce_len)
    return key, nonce


# --------------------------------------------------------------------------
# secret tree (s.9)

HANDSHAKE = 0
"""Ratchet type index for handshake (proposal/commit) messages."""
APPLICATION = 1
"""Ratchet type index for application messages."""

_RATCHET_LABELS = (b"handshake", b"application")
_RATCHET_NAMES = ("handshake", "application")


class SecretTreeError(MLSError):
    """A requested ratchet key is unavailable: already consumed (replay or
    deleted), too far ahead of the ratchet, or for a leaf outside the tree.

    ``code`` is ``"replay"`` for a generation already used or expired,
    ``"generationTooFar"`` for one beyond the forward window, and
    ``"invalidLeaf"`` for a leaf index outside the tree.
    """

    code = "secretTree"


class _Ratchet:
    """One hash ratchet (s.9.1): the secret for generation ``next_gen`` plus
    keys of skipped generations kept for out-of-order delivery.

    ``owner`` is the token of the :class:`SecretTree` allowed to mutate it in
    place; a tree that finds a foreign owner clones first (copy-on-write), which
    is what makes :meth:`SecretTree.copy` cheap.
    """

    __slots__ = ("secret", "next_gen", "skipped", "owner")

    def __init__(
        self, secret: bytes, next_gen: int, skipped: dict[int, tuple[bytes, bytes]], owner: object
    ) -> None:
        self.secret = secret
        self.next_gen = next_gen
        self.skipped = skipped
        self.owner = owner

    def clone(self, owner: object) -> _Ratchet:
        return _Ratchet(self.secret, self.next_gen, dict(self.skipped), owner)


class SecretTree:
    """Per-epoch tree of message keys rooted at ``encryption_secret`` (s.9).

    The sender side (:meth:`next_handshake`, :meth:`next_application`) hands
    out the next generation of the caller's own leaf; the receiver side
    (:meth:`handshake_key`, :meth:`application_key`) returns the key for a
    given generation, ratcheting forward at most ``max_forward`` generations
    and remembering at most ``max_skipped`` skipped keys per leaf and type
    (oldest dropped first). Every key is handed out at most once; asking again
    raises :class:`SecretTreeError`, which is how replays are rejected.
    """

    __slots__ = ("suite", "n_leaves", "max_forward", "max_skipped", "_nodes", "_ratchets", "_token", "_root")

    def __init__(
        self,
        suite: CipherSuite,
        encryption_secret: bytes,
        n_leaves: int,
        *,
        max_forward: int = 1024,
        max_skipped: int = 256,
    ) -> None:
        if n_leaves <= 0:
            raise ValueError("a secret tree needs at least one leaf")
        self.suite = suite
        self.n_leaves = n_leaves
        self.max_forward = max_forward
        self.max_skipped = max_skipped
        self._root = treemath.root(n_leaves)
        # Node secrets not yet split into children, by node index.
        self._nodes: dict[int, bytes] = {self._root: bytes(encryption_secret)}
        # Seeded ratchets, by (leaf, HANDSHAKE|APPLICATION).
        self._ratchets: dict[tuple[int, int], _Ratchet] = {}
        self._token = object()

    # ------------------------------------------------------------ internals

    def _seed_leaf(self, leaf: int) -> None:
        """Derive the leaf's node secret along its path, then both ratchets.

        Starts from the lowest ancestor still holding a secret; every parent on
        the way down is replaced by its two children (s.9.2 deletion).
        """
        if not 0 <= leaf < self.n_leaves:
            raise SecretTreeError(f"leaf {leaf} outside a tree of {self.n_leaves} leaves", "invalidLeaf")
        nodes = self._nodes
        x = 2 * leaf
        path = [x]
        while x not in nodes:
            if x == self._root:
                # Both ratchets of this leaf were seeded and since dropped.
                raise SecretTreeError(f"secrets for leaf {leaf} were deleted", "replay")
            x = treemath.parent(x, self.n_leaves)
            path.append(x)
        suite = self.suite
        nh = suite.hash_len
        expand = suite.expand_with_label
        for i in range(len(path) - 1, 0, -1):
            a = path[i]
            s = nodes.pop(a)
            nodes[treemath.left(a)] = expand(s, b"tree", b"left", nh)
            nodes[treemath.right(a)] = expand(s, b"tree", b"right", nh)
        leaf_secret = nodes.pop(2 * leaf)
        tok = self._token
        for t, label in enumerate(_RATCHET_LABELS):
            self._ratchets[(leaf, t)] = _Ratchet(expand(leaf_secret, label, b"", nh), 0, {}, tok)

    def _ratchet(self, leaf: int, t: int) -> _Ratchet:
        r = self._ratchets.get((leaf, t))
        if r is None:
            self._seed_leaf(leaf)
            r = self._ratchets[(leaf, t)]
        elif r.owner is not self._token:
            r = r.clone(self._token)
            self._ratchets[(leaf, t)] = r
        return r

    def _key_nonce(self, secret: bytes, generation: int) -> tuple[bytes, bytes]:
        s = self.suite
        return (
            s.derive_tree_secret(secret, b"key", generation, s.aead_key_len),
            s.derive_tree_secret(secret, b"nonce", generation, s.aead_nonce_len),
        )

    def _advance(self, secret: bytes, generation: int) -> bytes:
        return self.suite.derive_tree_secret(secret, b"secret", generation, self.suite.hash_len)

    def _next(self, leaf: int, t: int) -> tuple[int, bytes, bytes]:
        r = self._ratchet(leaf, t)
        g = r.next_gen
        if g >= 1 << 32:
            raise SecretTreeError("generation counter exhausted", "generationTooFar")
        key, nonce = self._key_nonce(r.secret, g)
        r.secret = self._advance(r.secret, g)
        r.next_gen = g + 1
        return g, key, nonce

    def _get(self, leaf: int, t: int, generation: int) -> tuple[bytes, bytes]:
        if generation < 0 or generation >= 1 << 32:
            raise SecretTreeError(f"generation {generation} out of range", "generationTooFar")
        r = self._ratchet(leaf, t)
        g = r.next_gen
        if generation < g:
            kn = r.skipped.pop(generation, None)
            if kn is None:
                raise SecretTreeError(
                    f"{_RATCHET_NAMES[t]} key for leaf {leaf} generation {generation} already used or expired",
                    "replay",
                )
            return kn
        if generation - g > self.max_forward:
            raise SecretTreeError(
                f"{_RATCHET_NAMES[t]} generation {generation} for leaf {leaf} is more than "
                f"{self.max_forward} ahead of {g}",
                "generationTooFar",
            )
        secret = r.secret
        # Only the last max_skipped skipped generations can be kept; skip
        # computing keys for earlier ones (they would be evicted at once).
        keep_from = generation - self.max_skipped
        skipped = r.skipped
        while g < generation:
            if g >= keep_from:
                skipped[g] = self._key_nonce(secret, g)
            secret = self._advance(secret, g)
            g += 1
        if len(skipped) > self.max_skipped:
            # Dicts keep insertion order and generations are inserted ascending.
            for old in list(skipped)[: len(skipped) - self.max_skipped]:
                del skipped[old]
        kn = self._key_nonce(secret, generation)
        r.secret = self._advance(secret, generation)
        r.next_gen = generation + 1
        return kn

    # ------------------------------------------------------------ public API

    def next_handshake(self, leaf: int) -> tuple[int, bytes, bytes]:
        """Sender: (generation, key, nonce) for our next handshake message."""
        return self._next(leaf, HANDSHAKE)

    def next_application(self, leaf: int) -> tuple[int, bytes, bytes]:
        """Sender: (generation, key, nonce) for our next application message."""
        return self._next(leaf, APPLICATION)

    def handshake_key(self, leaf: int, generation: int) -> tuple[bytes, bytes]:
        """Receiver: (key, nonce) for ``leaf``'s handshake message of ``generation``."""
        return self._get(leaf, HANDSHAKE, generation)

    def application_key(self, leaf: int, generation: int) -> tuple[bytes, bytes]:
        """Receiver: (key, nonce) for ``leaf``'s application message of ``generation``."""
        return self._get(leaf, APPLICATION, generation)

    def copy(self) -> SecretTree:
        """An independent tree in the same state, in O(live entries) time.

        Ratchets are shared copy-on-write: each tree clones a ratchet the first
        time it mutates one it does not own, so staging a message on a copy and
        discarding it costs one small clone at most. The original must not be
        used to mutate shared ratchets in place either, so it takes a fresh
        ownership token too.
        """
        other = object.__new__(SecretTree)
        other.suite = self.suite
        other.n_leaves = self.n_leaves
        other.max_forward = self.max_forward
        other.max_skipped = self.max_skipped
        other._root = self._root
        other._nodes = dict(self._nodes)
        other._ratchets = dict(self._ratchets)
        other._token = object()
        self._token = object()
        return other

    def __repr__(self) -> str:
        return (
            f"SecretTree(n_leaves={self.n_leaves}, nodes={len(self._nodes)}, ratchets={len(self._ratchets)})"
        )
