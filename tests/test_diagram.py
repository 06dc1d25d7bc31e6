"""Sequence diagrams and the explorer page (mimisim diagram / explore).

The draft's flows come out of scenarios/clubhouse.yaml in the draft's order;
faults show as drops, duplicates, retries and shaded periods; the explorer
page is driven in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``; skipped, with the reason, where they are not installed).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from mimisim.analysis import diagram as D
from mimisim.api import run
from mimisim.cli import main

ROOT = Path(__file__).resolve().parent.parent
CLUB = ROOT / "scenarios" / "clubhouse.yaml"


@pytest.fixture(scope="module")
def club(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("club")
    res = run(CLUB, out=out, progress=False)
    assert res.dir is not None
    return res.dir


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The clubhouse with a lossy, duplicating network and a crash of b.example during the leave."""
    out = tmp_path_factory.mktemp("faulty")
    res = run(CLUB, out=out, progress=False, overrides=[
        "network.default.loss=0.2", "network.default.duplicate=0.2", "protocol.notify.timeout=300ms",
        "protocol.requests.timeout=300ms",
        "faults.schedule=[{kind: crash, node: b.example, at: 8010ms, duration: 500ms, state: durable}]"])
    assert res.dir is not None
    return res.dir


def _labels(d: D.Diagram) -> list[str]:
    return [a.label for a in sorted(d.arrows, key=lambda a: (a.t_send, a.seq))]


def test_the_draft_flows_in_the_draft_order(club: Path) -> None:
    tr, _ = D.load_trace(club)
    steps = D.flows(tr)
    assert [f.action for f in steps] == ["create_room", "add_user", "add_user", "send", "leave", "join_room"]

    def step(i: int) -> list[str]:
        return _labels(D.build(tr, t_from=steps[i].t0, t_to=steps[i].t1))

    def in_order(labels: list[str], want: list[str]) -> bool:
        it = iter(labels)
        return all(any(w == x for x in it) for w in want)

    # fig-ab-kp-fetch then fig-ab-add
    assert in_order(step(1), ["Request KPs", "/keyMaterial", "success", "KPs", "Commit(+bob)", "Accepted",
                              "/notify Welcome", "201 Created", "Welcome"])
    # fig-bc-kp-fetch (the hub relays /keyMaterial to c.example) then fig-bc-add
    assert in_order(step(2), ["Request KPs", "/keyMaterial", "/keyMaterial", "success", "success", "KPs",
                              "Commit(+cathy)", "/update Commit(+cathy)", "success", "Welcome"])
    # fig-c-msg
    assert in_order(step(3), ["PrivateMessage", "/submitMessage PrivateMessage", "accepted",
                              "/notify PrivateMessage", "PrivateMessage"])
    # fig-b-leave: proposals cached by the hub, then a commit of them
    leave = step(4)
    assert in_order(leave, ["Proposals(Remove*, AppSync)", "/update Proposals(Remove*, AppSync)", "success",
                            "/notify Proposals(Remove*, AppSync)", "Commit(Props, -bob)"])
    notes = [n.text for n in D.build(tr, t_from=steps[4].t0, t_to=steps[4].t1).notes]
    assert any(t.startswith("cached Proposals(Remove*, AppSync)") for t in notes)
    # ClientC1, the committer the room policy names (as in the figure), commits them; nobody races.
    assert not any(t.startswith("wrongEpoch") for t in notes)
    # fig-c3-new-client
    assert in_order(step(5), ["Fetch GroupInfo", "/groupInfo", "success", "GroupInfo + tree",
                              "External Commit", "/update External Commit", "success", "Accepted"])


def test_lanes_grouped_by_provider_first_actor_first(club: Path) -> None:
    tr, _ = D.load_trace(club)
    f = D.flows(tr)[3]  # Cathy sends
    d = D.build(tr, t_from=f.t0, t_to=f.t1)
    labels = [ln.label for ln in d.lanes]
    assert labels[:4] == ["ClientC1", "ClientC2", "c.example", "a.example"]
    assert [ln.provider for ln in d.lanes] == sorted([ln.provider for ln in d.lanes],
                                                      key=["c.example", "a.example", "b.example"].index)
    assert [ln.key for ln in d.lanes if ln.hub] == ["a.example"]
    ends = D.build(tr, t_from=f.t0, t_to=f.t1, lanes="clients")
    assert all(ln.is_client for ln in ends.lanes)
    assert sorted(a.dst.rsplit("/", 1)[-1] for a in ends.arrows) == ["ClientA1", "ClientB1", "ClientB2", "ClientC2"]
    # 5 ms access links and 20 ms between providers: the hub's own client gets it first
    assert {a.dst.rsplit("/", 1)[-1]: a.t_recv - a.t_send for a in ends.arrows if a.t_recv is not None} == {
        "ClientA1": 30.0, "ClientB1": 50.0, "ClientB2": 50.0, "ClientC2": 50.0}
    assert {a.label for a in ends.arrows} == {"PrivateMessage"}
    provs = D.build(tr, t_from=f.t0, t_to=f.t1, lanes="providers")
    assert all(a.mimi for a in provs.arrows) and not any(ln.is_client for ln in provs.lanes)


def test_a_trace_without_typed_columns_is_refused_in_one_line(club: Path) -> None:
    """Results folders written before the typed columns existed: detail is
    never parsed, so such a trace is refused with a clear message."""
    tr, _ = D.load_trace(club)
    old = tr[["t_ms", "seq", "kind", "node", "peer", "room", "epoch", "msg_id", "req_id", "bytes", "status",
              "detail"]]
    with pytest.raises(D.DiagramError, match="no typed columns"):
        D.build(old)
    with pytest.raises(D.DiagramError, match="no typed columns"):
        D.flows(old)


def test_collapsed_lanes_like_the_draft(club: Path) -> None:
    tr, _ = D.load_trace(club)
    f = D.flows(tr)[1]  # Alice adds Bob: the draft's lanes are ClientA1 ServerA ServerB ClientB*
    full = D.build(tr, t_from=f.t0, t_to=f.t1)
    d = D.build(tr, t_from=f.t0, t_to=f.t1, collapse=True)
    assert [ln.label for ln in d.lanes] == ["ClientA*", "a.example", "b.example", "ClientB*"]
    to_bob = [a.label for a in d.arrows if a.dst.endswith("/bob/*")]
    assert to_bob == ["Welcome"]  # the draft's figure: b.example gets the Welcome only
    assert len([a for a in full.arrows if "/bob/" in a.dst]) == 2 * len(to_bob)


def test_text_looks_like_the_draft(club: Path) -> None:
    tr, _ = D.load_trace(club)
    f = D.flows(tr)[1]
    text = D.to_text(D.build(tr, t_from=f.t0, t_to=f.t1), times=False)
    lines = text.splitlines()
    assert lines[0].split() == ["ClientA1", "a.example", "(hub)", "b.example", "ClientB1", "ClientB2"]
    assert any(re.fullmatch(r"\s*\+~+>\|.*", ln) for ln in lines)      # ClientA1 -> a.example, wavy
    assert any(re.fullmatch(r"\s*\|\s+\+-+>\|.*", ln) for ln in lines)  # a.example -> b.example, straight
    i = next(i for i, ln in enumerate(lines) if "Request KPs" in ln)
    assert lines[i + 1].strip().startswith("+~")


def test_svg_is_deterministic_and_well_formed(club: Path) -> None:
    import xml.etree.ElementTree as ET

    tr, _ = D.load_trace(club)
    for mode in ("compressed", "scaled"):
        d = D.build(tr)
        a = D.to_svg(d, D.layout(d, mode))  # type: ignore[arg-type]
        b = D.to_svg(D.build(tr), D.layout(D.build(tr), mode))  # type: ignore[arg-type]
        assert a == b
        root = ET.fromstring(a)
        groups = [g for g in root.iter("{http://www.w3.org/2000/svg}g") if "arrow" in (g.get("class") or "")]
        assert len(groups) == len(d.arrows)


def test_faults_are_marked(faulty: Path) -> None:
    tr, _ = D.load_trace(faulty)
    d = D.build(tr)
    kinds = {a.kind for a in d.arrows}
    assert "net.drop" in kinds and "net.duplicate" in kinds
    assert all(a.drop_reason for a in d.arrows if a.kind == "net.drop")
    assert any(a.t_recv is None for a in d.arrows if a.kind == "net.drop")
    assert any(a.retry > 1 and "(retry" in a.label for a in d.arrows)
    assert [(p.kind, p.lanes, p.t0, p.t1) for p in d.periods] == [("crash", ("b.example",), 8010.0, 8510.0)]
    drops = int((tr.kind == "net.drop").sum())
    assert len([a for a in d.arrows if a.kind == "net.drop"]) <= drops
    text = D.to_text(d)
    assert "X" in text and "====== crash: b.example down (durable)" in text and "(dup)" in text
    svg = D.to_svg(d)
    assert svg.count('class="period"') == 1 and "M-5,-5 L5,5" in svg


def test_failover_is_a_lane_change(tmp_path: Path) -> None:
    res = run(CLUB, out=False, progress=False, overrides=[
        "providers.a.example.standby={replication: sync, takeover: 200ms}",
        "faults.schedule=[{kind: failover, hub: a.example, at: 6010ms}]"])
    d = D.build(res.trace, t_from=6000, t_to=8000)
    assert [(c.lane, c.t) for c in d.changes] == [("a.example", 6010.0)]
    assert "standby takes over a.example" in D.to_text(d)
    assert 'stroke-dasharray="6 3"' in D.to_svg(d)


def test_cli(club: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for suffix in ("svg", "txt", "html"):
        out = tmp_path / f"flows.{suffix}"
        assert main(["diagram", str(club), "--out", str(out), "--time", "scaled"]) == 0
        assert out.stat().st_size > 1000
    assert main(["diagram", str(club / "trace.parquet"), "--flow", "3", "--lanes", "providers"]) == 0
    assert "/submitMessage" in capsys.readouterr().out
    for bad in (["--room", "nowhere"], ["--from", "3 parsecs"], ["--flow", "9"], ["--out", str(tmp_path / "x.pdf")],
                ["--from", "30s"]):
        assert main(["diagram", str(club), *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("mimisim diagram: ") and "\n" not in err, err
    assert main(["diagram", str(tmp_path / "missing")]) == 2
    capsys.readouterr()
    assert main(["explore", str(club), "--out", str(tmp_path / "e.svg")]) == 2
    err = capsys.readouterr().err.strip()
    assert "must end in .html" in err and "\n" not in err and not (tmp_path / "e.svg").exists()
    assert main(["explore", str(club), "--out", str(tmp_path / "e.html")]) == 0
    page = (tmp_path / "e.html").read_text()
    assert "<script src" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    blob = re.search(r'<script type="application/json" id="events">(.*?)</script>', page, re.S)
    assert blob is not None and len(json.loads(blob.group(1))["events"]) > 100


# ---------------------------------------------------------------- the page in a real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip("no headless browser: install Debian's chromium and chromium-driver "
                    "(apt-get install -y chromium chromium-driver) to run the explorer page test")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000", f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield drv
    drv.quit()


def test_explorer_page_in_a_browser(browser, faulty: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    assert main(["explore", str(faulty), "--out", str(tmp_path / "page.html")]) == 0
    browser.get((tmp_path / "page.html").as_uri())
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []

    def shown() -> int:
        return int(browser.execute_script(
            "return Array.prototype.filter.call(document.querySelectorAll('#msc .el'),"
            " function (e) { return e.style.display !== 'none'; }).length;"))

    total = shown()
    assert total > 50 and browser.find_element(By.ID, "count").text == f"{total} of {total} shown"
    Select(browser.find_element(By.ID, "f-kind")).select_by_value("net.drop")
    drops = shown()
    assert 0 < drops < total
    Select(browser.find_element(By.ID, "f-kind")).select_by_value("")
    Select(browser.find_element(By.ID, "f-node")).select_by_value("c.example")
    assert 0 < shown() < total
    Select(browser.find_element(By.ID, "f-node")).select_by_value("")
    msg_box = browser.find_element(By.ID, "f-msg")
    some_msg = browser.execute_script(
        "var e = document.querySelector('#msc .el[data-msg]:not([data-msg=\"\"])'); return e.getAttribute('data-msg');")
    msg_box.send_keys(some_msg)
    assert 0 < shown() < total
    msg_box.clear()
    msg_box.send_keys(" ")  # an input event with an empty filter shows everything again
    assert shown() == total
    Select(browser.find_element(By.ID, "f-epoch")).select_by_value("1")
    assert 0 < shown() < total
    Select(browser.find_element(By.ID, "f-epoch")).select_by_value("")
    # a click on an arrow shows its fields
    arrow = browser.find_element(By.CSS_SELECTOR, "#msc .arrow[data-kind='net.deliver'] text")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", arrow)
    arrow.click()
    fields = json.loads(browser.find_element(By.ID, "fields").text)
    assert fields["type"] == "arrow" and fields["fields"]["send"]["kind"] == "net.send" and fields["label"]
    # zoom stretches time
    h0 = float(browser.find_element(By.ID, "msc").get_attribute("height"))
    browser.find_element(By.ID, "zin").click()
    assert float(browser.find_element(By.ID, "msc").get_attribute("height")) > h0 * 1.3
    assert browser.find_element(By.ID, "summary").text.count("\n") >= 10
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


@pytest.mark.long  # about 6 s of CPU (37 runs drawn): CI's long step, like the notebooks' currency check
def test_docs_flows_are_current(tmp_path: Path) -> None:
    """docs/flows/ holds what docs/flows/make_flows.py draws today (re-run it after a change in behaviour;
    ``python -m pytest -m long`` checks it)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_flows", ROOT / "docs" / "flows" / "make_flows.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    files = mod.generate(tmp_path)
    assert len(files) == 37
    stale = [name for name, text in files.items() if (ROOT / "docs" / "flows" / name).read_text() != text]
    assert not stale, f"docs/flows is out of date, run python docs/flows/make_flows.py: {stale}"
    # the fault variants show what they are there to show
    loss = "".join(files[n] for n in files if n.endswith("-loss.txt"))
    crash = "".join(files[n] for n in files if n.endswith("-crash.txt"))
    assert " X loss" in loss or "X loss" in loss
    assert "(retry 2)" in loss and "(dup)" in loss and "duplicate /notify" in loss
    assert "crash: c.example down" in crash and "timed out" in crash
