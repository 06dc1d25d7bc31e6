"""A driver that runs many members of one MLS group plus a hub observer, with
every handshake going through the observer first (as through a MIMI hub),
and checks agreement after every epoch."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from mimisim.mls.crypto import CipherSuite, DeterministicRandom, get_suite
from mimisim.mls.errors import WrongEpochError
from mimisim.mls.group import Group, GroupConfig, PSKStore, StagedCommit
from mimisim.mls.keypackage import create_key_package
from mimisim.mls.observer import GroupObserver, external_proposal, partial_group_info
from mimisim.mls.structs import (
    Add,
    Credential,
    Extension,
    ExtensionType,
    ExternalSender,
    ExternalSenders,
    MLSMessage,
    PreSharedKey,
    PreSharedKeyID,
    Proposal,
    Remove,
    WireFormat,
)

EXTERNAL_PSK_ID = b"shared psk"
EXTERNAL_PSK = b"shared psk value"


@dataclass
class Client:
    name: str
    sig_priv: bytes
    group: Group | None = None


@dataclass
class World:
    suite: CipherSuite
    rng: DeterministicRandom
    hub_sig: bytes
    observer: GroupObserver
    clients: dict[str, Client] = field(default_factory=dict)
    counter: int = 0
    epochs: int = 0
    log: list[str] = field(default_factory=list)
    handshake_wire_format: WireFormat = WireFormat.public_message
    _pending_joiners: dict = field(default_factory=dict)

    # ------------------------------------------------------------ setup

    @classmethod
    def create(cls, seed: int, suite_id: int = 1) -> World:
        suite = get_suite(suite_id)
        rng = DeterministicRandom(seed, "world")
        hub_sig, hub_pub = suite.generate_signature_key_pair(rng.fork("hub"))
        ext = [
            Extension(
                ExtensionType.external_senders,
                ExternalSenders([ExternalSender(hub_pub, Credential.basic(b"hub.example"))]).encode(),
            )
        ]
        creator = cls._new_client_static(suite, rng, "c0")
        kp, priv = create_key_package(suite, Credential.basic(b"c0"), creator.sig_priv, rng.fork("kp-c0"))
        creator.group = Group.create(
            suite, b"group-" + str(seed).encode(), kp, priv, rng.fork("g-c0"), extensions=ext,
            psks=PSKStore({EXTERNAL_PSK_ID: EXTERNAL_PSK}), config=GroupConfig(),
        )
        gi = creator.group.group_info(with_tree=True)
        obs = GroupObserver.from_group_info(gi)
        w = cls(suite, rng, hub_sig, obs)
        w.clients["c0"] = creator
        w.counter = 1
        return w

    @staticmethod
    def _new_client_static(suite: CipherSuite, rng: DeterministicRandom, name: str) -> Client:
        sig, _ = suite.generate_signature_key_pair(rng.fork("sig-" + name))
        return Client(name, sig)

    def new_client(self) -> Client:
        name = f"c{self.counter}"
        self.counter += 1
        c = self._new_client_static(self.suite, self.rng, name)
        self.clients[name] = c
        return c

    def members(self) -> list[Client]:
        return [c for c in self.clients.values() if c.group is not None and c.group.active]

    def member_at(self, leaf: int) -> Client:
        for c in self.members():
            assert c.group is not None
            if c.group.own_leaf == leaf:
                return c
        raise KeyError(leaf)

    # ------------------------------------------------------------ delivery

    def deliver_proposal(self, msg: MLSMessage, sender: Client | None) -> None:
        """Hub validates and caches, then every other member caches it."""
        self.observer.process_proposal(msg)
        for c in self.members():
            if c is sender:
                continue
            assert c.group is not None
            c.group.process(msg)

    def deliver_commit(self, msg: MLSMessage, committer: Client | None, pgi: object = None, check: bool = True) -> None:
        staged = self.observer.stage_commit(msg)
        self.observer.merge(staged, pgi)  # type: ignore[arg-type]
        for c in self.members():
            assert c.group is not None
            if c is committer:
                c.group.merge_pending_commit()
                continue
            sc = c.group.process(msg)
            assert isinstance(sc, StagedCommit)
            c.group.merge(sc)
        self.epochs += 1
        if check:
            self.check_agreement(membership=not self._pending_joiners)

    def check_agreement(self, membership: bool = True) -> None:
        ms = self.members()
        assert ms, "group has no members"
        obs = self.observer
        for c in ms:
            g = c.group
            assert g is not None
            assert g.epoch == obs.epoch, (c.name, g.epoch, obs.epoch)
            assert g.context == obs.context, f"{c.name}: GroupContext differs from the hub's"
            assert g.tree_hash == obs.tree.tree_hash()
        auths = {c.group.epoch_authenticator for c in ms if c.group}
        assert len(auths) == 1, "members disagree on the epoch authenticator"
        if membership:
            assert obs.tree.leaf_indices() == sorted(c.group.own_leaf for c in ms if c.group)

    # ------------------------------------------------------------ operations

    def _commit(self, committer: Client, proposals: list[Proposal] = (), **kw: object) -> None:  # type: ignore[assignment]
        g = committer.group
        assert g is not None
        out = g.commit(list(proposals), **kw)  # type: ignore[arg-type]
        pgi = partial_group_info(out.group_info)
        welcome = out.welcome
        self.deliver_commit(out.message, committer, pgi)
        if welcome is not None:
            for idx, _ref in out.added:
                joiner = self._pending_joiners.pop(idx_key(out, idx))
                kp, priv = joiner[1], joiner[2]
                joiner[0].group = Group.join(
                    welcome, kp, priv, self.rng.fork("g-" + joiner[0].name),
                    psks=PSKStore({EXTERNAL_PSK_ID: EXTERNAL_PSK}),
                )
            self.check_agreement()

    def op_add(self, r: random.Random, n: int = 1) -> None:
        committer = r.choice(self.members())
        props = []
        self._pending_joiners = {}
        for _ in range(n):
            c = self.new_client()
            kp, priv = create_key_package(self.suite, Credential.basic(c.name.encode()), c.sig_priv, self.rng.fork("kp-" + c.name))
            props.append(Proposal.of(Add(kp)))
            self._pending_joiners[kp.leaf_node.signature_key] = (c, kp, priv)
        self.log.append(f"add {n} by {committer.name}")
        self._commit(committer, props)

    def op_remove(self, r: random.Random) -> None:
        ms = self.members()
        if len(ms) < 2:
            return self.op_add(r)
        committer, victim = r.sample(ms, 2)
        assert victim.group is not None
        self.log.append(f"remove {victim.name} by {committer.name}")
        self._commit(committer, [Proposal.of(Remove(victim.group.own_leaf))])
        victim.group = None

    def op_update(self, r: random.Random) -> None:
        ms = self.members()
        if len(ms) < 2:
            return self.op_empty_commit(r)
        proposer, committer = r.sample(ms, 2)
        assert proposer.group is not None
        self.log.append(f"update {proposer.name} committed by {committer.name}")
        self.deliver_proposal(proposer.group.propose_update(), proposer)
        self._commit(committer)

    def op_empty_commit(self, r: random.Random) -> None:
        committer = r.choice(self.members())
        self.log.append(f"path commit by {committer.name}")
        self._commit(committer)

    def op_self_remove(self, r: random.Random) -> None:
        ms = self.members()
        if len(ms) < 3:
            return self.op_add(r)
        leaver, committer = r.sample(ms, 2)
        assert leaver.group is not None
        self.log.append(f"self-remove {leaver.name} committed by {committer.name}")
        self.deliver_proposal(leaver.group.propose_self_remove(), leaver)
        self._commit(committer)
        assert leaver.group is not None
        # The leaver processes the commit that removes it.
        leaver.group = None

    def op_psk(self, r: random.Random) -> None:
        committer = r.choice(self.members())
        g = committer.group
        assert g is not None
        if r.random() < 0.5 or g.epoch == 0:
            pid = PreSharedKeyID.external(EXTERNAL_PSK_ID, self.rng.random_bytes(self.suite.hash_len))
            kind = "external"
        else:
            pid = g.resumption_psk_id(g.epoch - 1 if g.epoch > 0 else 0)
            # Only members who were present in that epoch know its resumption PSK.
            if not all(c.group and c.group._psk_known(pid) for c in self.members()):
                pid = PreSharedKeyID.external(EXTERNAL_PSK_ID, self.rng.random_bytes(self.suite.hash_len))
                kind = "external"
            else:
                kind = "resumption"
        self.log.append(f"{kind} psk by {committer.name}")
        self._commit(committer, [Proposal.of(PreSharedKey(pid))], path=r.random() < 0.5)

    def op_external_join(self, r: random.Random) -> None:
        c = self.new_client()
        gi = self.observer.group_info()
        self.log.append(f"external join {c.name}")
        group, msg = Group.external_join(
            gi, Credential.basic(c.name.encode()), c.sig_priv, self.rng.fork("ext-" + c.name),
            ratchet_tree=self.observer.ratchet_tree(), psk_store=PSKStore({EXTERNAL_PSK_ID: EXTERNAL_PSK}),
        )
        self.deliver_commit(msg, None, partial_group_info(group.group_info()), check=False)
        c.group = group
        self.check_agreement()

    def op_resync(self, r: random.Random) -> None:
        c = r.choice(self.members())
        assert c.group is not None
        old_leaf = c.group.own_leaf
        gi = self.observer.group_info()
        self.log.append(f"resync {c.name}")
        c.group = None  # it lost its state
        group, msg = Group.external_join(
            gi, Credential.basic(c.name.encode()), c.sig_priv, self.rng.fork(f"resync-{c.name}-{self.epochs}"),
            ratchet_tree=self.observer.ratchet_tree(), resync_leaf=old_leaf,
            psk_store=PSKStore({EXTERNAL_PSK_ID: EXTERNAL_PSK}),
        )
        self.deliver_commit(msg, None, partial_group_info(group.group_info()), check=False)
        c.group = group
        self.check_agreement()

    def op_hub_remove(self, r: random.Random) -> None:
        ms = self.members()
        if len(ms) < 3:
            return self.op_add(r)
        victim, committer = r.sample(ms, 2)
        assert victim.group is not None
        self.log.append(f"hub removes {victim.name}, committed by {committer.name}")
        msg = external_proposal(
            self.suite, self.observer.group_id, self.observer.epoch, 0, self.hub_sig,
            Proposal.of(Remove(victim.group.own_leaf)),
        )
        self.deliver_proposal(msg, None)
        self._commit(committer)
        victim.group = None

    def op_race(self, r: random.Random) -> None:
        """Two members commit on the same epoch; the hub takes the first; the
        loser discards, processes the winner and commits again."""
        ms = self.members()
        if len(ms) < 2:
            return self.op_add(r)
        a, b = r.sample(ms, 2)
        assert a.group is not None and b.group is not None
        out_a = a.group.commit()
        out_b = b.group.commit()
        self.log.append(f"race {a.name} vs {b.name}")
        self.deliver_commit_with_loser(out_a, a, b, out_b)

    def deliver_commit_with_loser(self, out_a, a: Client, b: Client, out_b) -> None:  # type: ignore[no-untyped-def]
        self.observer.merge(self.observer.stage_commit(out_a.message), partial_group_info(out_a.group_info))
        try:
            self.observer.stage_commit(out_b.message)
        except WrongEpochError as e:
            assert e.current_epoch == self.observer.epoch
        else:
            raise AssertionError("hub accepted two commits for one epoch")
        for c in self.members():
            assert c.group is not None
            if c is a:
                c.group.merge_pending_commit()
            elif c is b:
                c.group.discard_pending_commit()
                c.group.merge(c.group.process(out_a.message))  # type: ignore[arg-type]
            else:
                c.group.merge(c.group.process(out_a.message))  # type: ignore[arg-type]
        self.epochs += 1
        self.check_agreement()
        self._commit(b)

    def op_message(self, r: random.Random) -> None:
        sender = r.choice(self.members())
        assert sender.group is not None
        data = f"hello {self.epochs}".encode()
        msg = sender.group.protect(data)
        for c in self.members():
            if c is sender:
                continue
            assert c.group is not None
            out = c.group.process(msg)
            assert out.data == data  # type: ignore[union-attr]


def idx_key(out: object, idx: int) -> bytes:
    """Find a joiner's signature key from the staged tree (leaf idx)."""
    staged = out.staged  # type: ignore[attr-defined]
    leaf = staged.state.tree.leaf(idx)
    return leaf.signature_key


OPS = [
    ("add", 3),
    ("remove", 2),
    ("update", 2),
    ("empty_commit", 1),
    ("self_remove", 1),
    ("psk", 1),
    ("external_join", 1),
    ("resync", 1),
    ("hub_remove", 1),
    ("race", 1),
    ("message", 2),
]


def run_random(seed: int, epochs: int, max_members: int = 50, suite_id: int = 1) -> World:
    w = World.create(seed, suite_id)
    r = random.Random(seed)
    names = [n for n, wgt in OPS for _ in range(wgt)]
    while w.epochs < epochs:
        n = len(w.members())
        op = r.choice(names)
        if n >= max_members and op in ("add", "external_join"):
            op = "remove"
        if n < 4 and op in ("remove", "self_remove", "hub_remove"):
            op = "add"
        if op == "add":
            w.op_add(r, r.randint(1, 3))
        else:
            getattr(w, "op_" + op)(r)
    return w
