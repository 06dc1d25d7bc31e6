"""Checkers for the group-level official vectors: messages.json,
deserialization.json, welcome.json and passive-client-*.json.

Like the other ``vectors_*`` modules, each ``check_*`` takes one parsed JSON
case and raises :class:`AssertionError` naming what differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mimisim.codec import Codec, Reader, decode_varint
from mimisim.mls.crypto import DeterministicRandom, get_suite
from mimisim.mls.group import Group, PSKStore
from mimisim.mls.keypackage import (
    KeyPackagePrivate,
    create_key_package,
    default_capabilities,
    verify_group_info,
)
from mimisim.mls.keyschedule import compute_psk_secret, derive_epoch_secrets, welcome_key_nonce
from mimisim.mls.observer import GroupObserver
from mimisim.mls.structs import (
    Add,
    Capabilities,
    Commit,
    Credential,
    ExternalInit,
    GroupContextExtensions,
    GroupInfo,
    GroupSecrets,
    MLSMessage,
    PreSharedKey,
    Proposal,
    RatchetTreeCodec,
    RatchetTreeExt,
    ReInit,
    Remove,
    Update,
    WireFormat,
)
from mimisim.mls.validation import required_capabilities

Case = Mapping[str, Any]

MESSAGE_FIELDS: dict[str, tuple[Any, WireFormat | None]] = {
    "mls_welcome": (MLSMessage, WireFormat.welcome),
    "mls_group_info": (MLSMessage, WireFormat.group_info),
    "mls_key_package": (MLSMessage, WireFormat.key_package),
    "ratchet_tree": (RatchetTreeExt, None),
    "group_secrets": (GroupSecrets, None),
    "add_proposal": (Add, None),
    "update_proposal": (Update, None),
    "remove_proposal": (Remove, None),
    "pre_shared_key_proposal": (PreSharedKey, None),
    "re_init_proposal": (ReInit, None),
    "external_init_proposal": (ExternalInit, None),
    "group_context_extensions_proposal": (GroupContextExtensions, None),
    "commit": (Commit, None),
    "public_message_application": (MLSMessage, WireFormat.public_message),
    "public_message_proposal": (MLSMessage, WireFormat.public_message),
    "public_message_commit": (MLSMessage, WireFormat.public_message),
    "private_message": (MLSMessage, WireFormat.private_message),
}


def _h(v: str) -> bytes:
    return bytes.fromhex(v)


def check_messages(case: Case) -> None:
    for name, (cls, wf) in MESSAGE_FIELDS.items():
        raw = _h(case[name])
        obj = cls.decode(raw)
        if wf is not None and obj.wire_format != wf:
            raise AssertionError(f"{name}: wire format {obj.wire_format.name}, want {wf.name}")
        if obj.encode() != raw:
            raise AssertionError(f"{name}: re-encoding differs")


def check_deserialization(case: Case) -> None:
    header = _h(case["vlbytes_header"])
    n, end = decode_varint(header)
    if end != len(header) or n != case["length"]:
        raise AssertionError(f"header {header.hex()}: decoded {n} over {end} bytes, want {case['length']}")


def check_welcome(case: Case) -> None:
    suite = get_suite(int(case["cipher_suite"]))
    kp = MLSMessage.decode(_h(case["key_package"])).body
    welcome = MLSMessage.decode(_h(case["welcome"])).body
    ref = suite.make_key_package_ref(kp.encode())
    mine = [s for s in welcome.secrets if s.new_member == ref]
    if len(mine) != 1:
        raise AssertionError("no Welcome entry for the KeyPackage")
    egs = mine[0].encrypted_group_secrets
    gs = GroupSecrets.decode(
        suite.decrypt_with_label(
            _h(case["init_priv"]), b"Welcome", welcome.encrypted_group_info, egs.kem_output, egs.ciphertext
        )
    )
    psk_secret = compute_psk_secret(suite, [])
    welcome_secret = suite.derive_secret(suite.kdf_extract(gs.joiner_secret, psk_secret), b"welcome")
    key, nonce = welcome_key_nonce(suite, welcome_secret)
    gi = GroupInfo.decode(suite.aead_open(key, nonce, b"", welcome.encrypted_group_info))
    if not verify_group_info(suite, gi, _h(case["signer_pub"])):
        raise AssertionError("GroupInfo signature does not verify")
    secrets = derive_epoch_secrets(suite, gs.joiner_secret, psk_secret, gi.group_context.encode())
    tag = suite.mac(secrets.confirmation_key, gi.group_context.confirmed_transcript_hash)
    if tag != gi.confirmation_tag:
        raise AssertionError("confirmation tag mismatch")


def check_passive_client(case: Case) -> None:
    """Join from the Welcome and follow every epoch, comparing epoch authenticators."""
    suite = get_suite(int(case["cipher_suite"]))
    kp = MLSMessage.decode(_h(case["key_package"])).body
    if suite.signature_public_key(_h(case["signature_priv"])) != kp.leaf_node.signature_key:
        raise AssertionError("signature_priv does not match the KeyPackage")
    if suite.hpke_public_key(_h(case["encryption_priv"])) != kp.leaf_node.encryption_key:
        raise AssertionError("encryption_priv does not match the KeyPackage")
    if suite.hpke_public_key(_h(case["init_priv"])) != kp.init_key:
        raise AssertionError("init_priv does not match the KeyPackage")
    psks = PSKStore({_h(p["psk_id"]): _h(p["psk"]) for p in case["external_psks"]})
    tree = None
    if case["ratchet_tree"] is not None:
        r = Reader(_h(case["ratchet_tree"]))
        tree = _decode_tree(RatchetTreeCodec, r)
    priv = KeyPackagePrivate(_h(case["init_priv"]), _h(case["encryption_priv"]), _h(case["signature_priv"]))
    group = Group.join(
        _h(case["welcome"]), kp, priv, DeterministicRandom(b"vectors"), ratchet_tree=tree, psks=psks
    )
    if group.epoch_authenticator != _h(case["initial_epoch_authenticator"]):
        raise AssertionError("initial epoch authenticator mismatch")
    for n, epoch in enumerate(case["epochs"]):
        for p in epoch["proposals"]:
            group.process(_h(p))
        staged = group.process(_h(epoch["commit"]))
        group.merge(staged)  # type: ignore[arg-type]
        if group.epoch_authenticator != _h(epoch["epoch_authenticator"]):
            raise AssertionError(f"epoch {n}: epoch authenticator mismatch")
    _send_from_vector_state(group)


def _send_from_vector_state(group: Group) -> None:
    """The other direction: from the state the vector led to, the passive
    client commits a new UpdatePath that adds a fresh member. A keyless hub
    observer (started from the client's GroupInfo) and the new member (from
    the Welcome) must both accept it and agree with the committer."""
    suite = group.suite
    rng = DeterministicRandom(b"vectors", "reverse")
    obs = GroupObserver.from_group_info(group.group_info(with_tree=True))
    sig, _ = suite.generate_signature_key_pair(rng)
    kp, kp_priv = create_key_package(
        suite, Credential.basic(b"reverse-joiner"), sig, rng,
        capabilities=_capabilities_like(group, suite),
    )
    out = group.commit([Proposal.of(Add(kp))], path=True)
    staged = obs.stage_commit(out.message)
    obs.merge(staged)
    group.merge_pending_commit()
    if obs.context != group.context:
        raise AssertionError("reverse: hub observer disagrees with the committer")
    assert out.welcome is not None
    joiner = Group.join(out.welcome, kp, kp_priv, rng.fork("joiner"), psks=group.psks)
    if joiner.epoch_authenticator != group.epoch_authenticator or joiner.context != group.context:
        raise AssertionError("reverse: the new member disagrees with the committer")
    m = joiner.process(group.protect(b"reverse direction"))
    if getattr(m, "data", None) != b"reverse direction":
        raise AssertionError("reverse: application message not delivered")


def _capabilities_like(group: Group, suite: Any) -> Capabilities:
    """A joiner's capabilities that cover the group's extensions and every
    credential type in use (vector groups carry GREASE and custom types)."""
    caps = default_capabilities(suite)
    exts = set(caps.extensions)
    creds = set(caps.credentials)
    for _, leaf in group.members():
        creds.add(leaf.credential.credential_type)
        creds.update(leaf.capabilities.credentials)
    for e in group.extensions:
        if e.extension_type > 5:
            exts.add(e.extension_type)
    rc = required_capabilities(group.extensions)
    if rc is not None:
        exts.update(t for t in rc.extension_types if t > 5)
        creds.update(rc.credential_types)
    props = set(caps.proposals) | ({t for t in rc.proposal_types if t > 7} if rc else set())
    return Capabilities(caps.versions, caps.cipher_suites, sorted(exts), sorted(props), sorted(creds))


def _decode_tree(codec: Codec, r: Reader) -> Any:
    v = codec.decode(r, {})
    r.done()
    return v


CHECKERS = {
    "messages.json": check_messages,
    "deserialization.json": check_deserialization,
    "welcome.json": check_welcome,
    "passive-client-welcome.json": check_passive_client,
    "passive-client-handling-commit.json": check_passive_client,
    "passive-client-random.json": check_passive_client,
}
