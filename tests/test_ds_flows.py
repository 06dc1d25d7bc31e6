"""The draft's flows in the ds profile, end to end through the sans-IO cores
(DSClient, DSHub, DSGuest) with real MLS groups: create a group, add clients
of another DS (their KeyPackages fetched from it), send a message, a client
proposes its own removal and another commits it, a new client joins by
external commit, delete group. The requests and responses are checked in
order, and every fanout is checked by the recipients' guest DS."""

from __future__ import annotations

from mimisim.mimi.ds import wire as D
from mimisim.mimi.ds.client import DSClient
from mimisim.mimi.ds.guest import DSGuest
from mimisim.mimi.ds.hub import DSHub, HubResult, fanout_extension
from mimisim.mls.crypto import DeterministicRandom, get_suite
from mimisim.mls.keypackage import create_key_package, default_capabilities
from mimisim.mls.structs import (
    Credential,
    Extension,
    ExtensionType,
    ExternalSender,
    ExternalSenders,
    KeyPackage,
)

SUITE = get_suite(1)


def domain_of(cid: bytes) -> str:
    return cid.split(b"@", 1)[1].decode()


class Flow:
    def __init__(self) -> None:
        self.rng = DeterministicRandom(3, "flows")
        self.guests = {d: DSGuest(d, f"secret-{d}".encode()) for d in ("a.example", "b.example", "c.example")}
        self.stores: dict[str, dict[bytes, KeyPackage]] = {d: {} for d in self.guests}
        self.hub_sig, self.hub_pub = SUITE.generate_signature_key_pair(self.rng.fork("hub"))
        self.dss = {
            d: DSHub(d, domain_of, key_package_store=lambda cid, d=d: self.stores[d].pop(cid, None),  # type: ignore[misc]
                     signature_priv=self.hub_sig if d == "a.example" else None)
            for d in self.guests
        }
        self.hub = self.dss["a.example"]
        self.clients: dict[bytes, DSClient] = {}
        self.log: list[tuple[str, str, str]] = []

    def client(self, cid: bytes) -> DSClient:
        guest = self.guests[domain_of(cid)]
        guest.add_client(cid)
        sig, _ = SUITE.generate_signature_key_pair(self.rng.fork("sig" + cid.decode()))
        caps = default_capabilities(SUITE)
        caps.extensions = [*caps.extensions, D.FANOUT_AUTH_EXTENSION]
        kp, priv = create_key_package(SUITE, Credential.basic(cid), sig, self.rng.fork("kp" + cid.decode()),
                                      extensions=[fanout_extension(guest.token(cid))], capabilities=caps)
        self.stores[domain_of(cid)][cid] = kp
        c = DSClient(cid, SUITE, sig, self.rng.fork("c" + cid.decode()), kp, priv)
        self.clients[cid] = c
        return c

    def ask(self, c: DSClient, ds: str, req: D.DSRequest) -> object:
        """Send through the wire to a DS, log, deliver fanouts, apply the response."""
        res: HubResult = self.dss[ds].handle(req.encode())
        response = D.DSResponse.decode(res.response.encode())
        self.log.append((c.client_id.decode(), D.DSRequestType(req.request_body.request_type).name,
                         D.DSResponseType(response.response_body.response_type).name))
        out = c.on_response(response)
        self.fan_out(res)
        return out

    def fan_out(self, res: HubResult) -> None:
        for f in res.fanout:
            g = self.guests[f.domain].handle_fanout(f.request.encode())
            assert g.ok, g.response
            for cid, msg in g.deliveries:
                self.clients[cid].receive(msg)


def test_the_drafts_flows_in_order() -> None:
    fl = Flow()
    alice, bob, carol = fl.client(b"alice@a.example"), fl.client(b"bob@b.example"), fl.client(b"carol@b.example")
    ext = [Extension(ExtensionType.external_senders,
                     ExternalSenders([ExternalSender(fl.hub_pub, Credential.basic(b"a.example"))]).encode())]
    # create a group (creator and its own DS, C10)
    gi = alice.create_group(b"room", ext)
    fl.hub.create_group(gi, None, alice.key_package)
    # add clients of another DS: fetch their KeyPackages from b.example, commit with Welcome
    kps = fl.ask(alice, "b.example", alice.key_packages_request([bob.client_id, carol.client_id]))
    assert isinstance(kps, D.KeyPackages) and len(kps.key_packages) == 2
    fl.ask(alice, "a.example", alice.add(kps.key_packages))
    assert bob.welcome is not None and carol.welcome is not None  # delivered by b.example
    for c in (bob, carol):
        fl.ask(c, "a.example", c.welcome_info_request())
        assert c.member
    assert fl.hub.retained_bytes() == 0
    # send a message
    fl.ask(bob, "a.example", bob.send(b"hello"))
    assert alice.received == [b"hello"] and carol.received == [b"hello"] and bob.received == []
    # carol proposes her own removal; bob commits it (by reference)
    fl.ask(carol, "a.example", carol.propose_leave())
    fl.ask(bob, "a.example", bob.commit())
    assert not carol.member and alice.member and bob.member
    # dave joins by external commit
    dave = fl.client(b"dave@c.example")
    info = fl.ask(dave, "a.example", dave.group_info_request(b"room"))
    assert isinstance(info, D.ExternalCommitInfo)
    caps = default_capabilities(SUITE)
    caps.extensions = [*caps.extensions, D.FANOUT_AUTH_EXTENSION]
    fl.ask(dave, "a.example", dave.external_join(info, [fanout_extension(fl.guests["c.example"].token(dave.client_id))], caps))
    assert dave.member
    fl.ask(dave, "a.example", dave.send(b"hi, I am dave"))
    assert alice.received[-1] == bob.received[-1] == b"hi, I am dave"
    epochs = {c.group.epoch for c in (alice, bob, dave)}  # type: ignore[union-attr]
    assert epochs == {fl.hub.groups[b"room"].observer.epoch}
    # delete group
    fl.ask(alice, "a.example", alice.delete_group())
    assert b"room" not in fl.hub.groups and not bob.member and not dave.member
    assert fl.log == [
        ("alice@a.example", "ds_key_packages", "KeyPackages"),
        ("alice@a.example", "ds_commits", "Ok"),
        ("bob@b.example", "ds_welcome_info", "WelcomeInfo"),
        ("carol@b.example", "ds_welcome_info", "WelcomeInfo"),
        ("bob@b.example", "ds_send_message", "Ok"),
        ("carol@b.example", "ds_proposals", "Ok"),
        ("bob@b.example", "ds_commits", "Ok"),
        ("dave@c.example", "ds_group_info", "ExternalCommitInfo"),
        ("dave@c.example", "ds_commits", "Ok"),
        ("dave@c.example", "ds_send_message", "Ok"),
        ("alice@a.example", "ds_delete_group", "Ok"),
    ]


def test_a_losing_commit_is_discarded_and_the_client_recovers() -> None:
    fl = Flow()
    alice, bob = fl.client(b"alice@a.example"), fl.client(b"bob@b.example")
    fl.hub.create_group(alice.create_group(b"room"), None, alice.key_package)
    fl.ask(alice, "a.example", alice.add([fl.stores["b.example"].pop(bob.client_id)]))
    fl.ask(bob, "a.example", bob.welcome_info_request())
    req_b = bob.commit()  # both commit on the same epoch; alice reaches the hub first
    res_a = fl.hub.handle(alice.commit().encode())
    alice.on_response(res_a.response)
    res_b = fl.hub.handle(req_b.encode())
    err = bob.on_response(res_b.response)
    assert isinstance(err, D.DSError) and err.code == D.DSErrorCode.wrong_epoch
    fl.fan_out(res_a)  # bob processes alice's commit, then commits again
    fl.ask(bob, "a.example", bob.commit())
    assert alice.group.epoch == bob.group.epoch == fl.hub.groups[b"room"].observer.epoch == 3  # type: ignore[union-attr]


def test_scenario_profile_defaults_to_mimi_and_ds_refuses_mimi_adversaries(capsys) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    from mimisim.cli import main
    from mimisim.sim.scenario import load_scenario

    root = Path(__file__).resolve().parents[1] / "scenarios"
    assert load_scenario(root / "quickstart.yaml").protocol.profile == "mimi"
    assert load_scenario(root / "ds-quickstart.yaml").protocol.profile == "ds"
    status = main(["validate", str(root / "adversaries.yaml"), "--set", "protocol.profile=ds"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "not defined under protocol.profile ds" in err
