"""The MIMI directory ([P6] s.5.1, issue 13 item 5): served by every
provider, and with ``protocol.directory_discovery`` fetched once per peer,
cached, before any other request to that peer."""

from __future__ import annotations

import pandas as pd

from mimisim.analysis.invariants import Context, check_trace
from mimisim.mimi import wire as W
from mimisim.mimi.endpoints import Endpoint
from mimisim.mimi.provider import ProviderConfig, ProviderCore
from mimisim.mimi.transport import MimiRequest, MimiResponse
from mimisim.sim.rng import protocol_random
from mimisim.sim.scenario import load_scenario_text
from mimisim.sim.world import World
from tests.test_departure import SCENARIO

WELL_KNOWN = "GET /.well-known/mimi-protocol-directory"


def test_directory_is_served() -> None:
    core = ProviderCore.new("b.example", protocol_random(1, "b"), ProviderConfig())
    out = core.handle_request(MimiRequest(Endpoint.DIRECTORY, "", "a.example", "b.example", b""), "a.example", 0)
    assert out.response is not None and out.response.status == 200
    d = W.Directory.from_json(out.response.body)
    assert d.url_template("notify") == "https://b.example/v1/notify/{roomId}"
    assert Endpoint.NOTIFY.url(d, "mimi://a.example/r/x") == "https://b.example/v1/notify/a.example/r/x"
    assert d.url_template("proxyDownload") == "https://b.example/v1/proxyDownload/{downloadUrl}"


def _run(discovery: bool) -> pd.DataFrame:
    scn = load_scenario_text(SCENARIO, overrides=[f"protocol.directory_discovery={str(discovery).lower()}"])
    return World(scn).run(progress=False).trace.to_pandas()


def test_discovery_once_per_peer_before_any_other_request() -> None:
    t = _run(True)
    req = t[t["kind"] == "http.request"]
    dirs = req[req["detail"] == WELL_KNOWN]
    pairs = list(zip(dirs["node"], dirs["peer"], strict=True))
    assert pairs and len(pairs) == len(set(pairs))  # once per (provider, peer)
    talked = {(n, p) for n, p in zip(req["node"], req["peer"], strict=True) if "." in p and "/" not in p}
    assert talked == set(pairs)  # every peer a provider talked to, discovered
    cached = t[t["kind"] == "provider.directory"]
    assert set(cached["status"]) == {"cached"} and len(cached) == len(pairs)
    for n, p in pairs:
        answered = float(cached[(cached["node"] == n) & (cached["peer"] == p)]["t_ms"].iloc[0])
        others = req[(req["node"] == n) & (req["peer"] == p) & (req["detail"] != WELL_KNOWN)]
        assert (others["t_ms"] >= answered).all()
    assert not any(check_trace(t, Context()).values())
    # The same messages reach the same clients as without discovery.
    base = _run(False)
    assert not len(base[(base["kind"] == "http.request") & (base["detail"] == WELL_KNOWN)])

    def got(x: pd.DataFrame) -> list[tuple[str, str]]:
        d = x[x["kind"] == "client.deliver"]
        return sorted(zip(d["node"], d["msg_id"], strict=True))

    assert len(got(t)) == len(got(base)) > 0


def test_an_unusable_directory_is_not_cached_and_asked_again() -> None:
    """A directory whose endpoints live on another host (which the simulated
    network has no name for) is not cached; the held request still goes out
    to the peer's domain, and the next request asks again."""
    a = ProviderCore.new("a.example", protocol_random(1, "a"),
                         ProviderConfig(directory_discovery=True))
    body = W.IdentifierRequest.decode(_identifier_request()).encode()
    from mimisim.mimi.transport import ClientMessage, ClientOp, SendRequest

    msg = ClientMessage("mimi://a.example/d/alice/A1", ClientOp.identifier_query, 1, body, "", "b.example")
    out = a.handle_client(msg, 0)
    (fetch,) = [x for x in out.actions if isinstance(x, SendRequest)]
    assert fetch.request.endpoint == Endpoint.DIRECTORY and fetch.request.host == "b.example"
    other = ProviderCore.new("c.example", protocol_random(1, "c"), ProviderConfig()).directory().to_json()
    out = a.handle_response(fetch.token, MimiResponse(200, other.encode(), "OK"), 10)
    assert [e.status for e in out.events] == ["failed"] and "b.example" not in a.directories
    (released,) = [x for x in out.actions if isinstance(x, SendRequest)]
    assert released.request.endpoint == Endpoint.IDENTIFIER_QUERY and released.request.host == "b.example"
    again = a.handle_client(ClientMessage(msg.client, msg.op, 2, body, "", "b.example"), 20)
    assert [x.request.endpoint for x in again.actions if isinstance(x, SendRequest)] == [Endpoint.DIRECTORY]


def _identifier_request() -> bytes:
    from mimisim.mimi.identifiers import identifier_request, query_element

    return identifier_request(query_element(W.SearchIdentifierType.handle, "im:bob@b.example")).encode()
