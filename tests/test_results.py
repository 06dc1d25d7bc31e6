"""Results a researcher can trust and parse (issue 17): the numeric summary,
a results folder per resolved scenario, the manifest, the generic study,
sweeps that refuse what they cannot do, ``plot --where`` checks."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pandas as pd
import pytest
import yaml

import mimisim
from mimisim.analysis import generic
from mimisim.api import DEPENDENCIES
from mimisim.cli import main

ROOT = Path(__file__).resolve().parents[1]
Q = str(ROOT / "scenarios" / "quickstart.yaml")


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        status = main(args)
    except SystemExit as e:
        status = int(e.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def test_summary_is_numeric_with_units_and_its_counts_add_up(tmp_path: Path) -> None:
    res = mimisim.run(Q, out=tmp_path, progress=False)
    loaded = mimisim.load(res.dir)  # type: ignore[arg-type]
    s = loaded.summary
    assert list(s.columns) == ["metric", "value", "unit"]
    assert pd.api.types.is_float_dtype(s["value"]) and s["unit"].map(bool).all()
    v = s.set_index("metric")["value"]
    assert v["HTTP requests (first attempts)"] + v["HTTP retries"] == \
        v["HTTP attempts answered"] + v["HTTP attempts unanswered (timeout, loss, crash)"] == len(res.exchanges)
    # Bob's client is asked to send just as his leave goes through: a skipped action, not a failure
    assert v["workload actions skipped (client had left the room)"] == 1 and v["operations failed"] == 0
    assert s.set_index("metric").loc["delivery latency p95", "unit"] == "ms"


def test_different_overrides_keep_both_results_and_another_scenario_is_not_overwritten(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["run", Q, "--out", str(tmp_path), "--quiet", "--no-progress"]
    assert cli(base, capsys)[0] == 0
    assert cli([*base, "--set", "network.default.latency.value=80ms"], capsys)[0] == 0
    assert cli([*base, "--set", "network.default.latency.value=20ms"], capsys)[0] == 0
    folders = sorted(p.name for p in tmp_path.iterdir())
    assert len(folders) == 3 and folders[0] == "seed-1" and all(re.fullmatch(r"seed-1-[0-9a-f]{10}", f)
                                                                for f in folders[1:])
    hashes = {json.loads((tmp_path / f / "manifest.json").read_text())["scenario_hash"] for f in folders}
    assert len(hashes) == 3
    # the same override again reuses its folder
    assert cli([*base, "--set", "network.default.latency.value=80ms"], capsys)[0] == 0
    assert len(list(tmp_path.iterdir())) == 3
    # an edited scenario file would overwrite seed-1: refused without --force
    edited = tmp_path / "quickstart.yaml"
    edited.write_text(Path(Q).read_text().replace("rate: 0.5/s", "rate: 0.6/s"))
    status, _, err = cli(["run", str(edited), "--out", str(tmp_path), "--quiet", "--no-progress"], capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1 and "use --force" in err
    status, _, err = cli(["run", str(edited), "--out", str(tmp_path), "--quiet", "--no-progress", "--force"], capsys)
    assert status == 0, err


def test_manifest_says_what_ran_where_and_how(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["run", Q, "--out", str(tmp_path), "--quiet", "--no-progress", "--seed", "4"], capsys)[0] == 0
    m = json.loads((tmp_path / "seed-4" / "manifest.json").read_text())
    for key in ("resolved_scenario", "git_commit", "git_dirty", "git_diff_sha256", "python", "dependencies",
                "command", "started_utc", "platform", "run_hash", "scenario_hash", "faults"):
        assert key in m, key
    assert m["resolved_scenario"]["name"] == "quickstart" and m["seed"] == 4
    assert m["command"] == f"mimisim run {Q} --out {tmp_path} --quiet --no-progress --seed 4"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", m["started_utc"])
    assert set(m["dependencies"]) == set(DEPENDENCIES) and all(m["dependencies"].values())
    assert isinstance(m["git_dirty"], bool) and (m["git_diff_sha256"] is not None) == m["git_dirty"]
    # the resolved scenario in the manifest validates again to the same run
    scn = mimisim.sim.scenario.Scenario.model_validate(m["resolved_scenario"])
    assert mimisim.sim.scenario.resolved_hash(scn) == m["scenario_hash"]


def test_dependencies_listed_are_pyprojects() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = set()
    for d in deps:
        name = re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower()
        names.add(name)
        names |= set(re.findall(r"\[(.*?)\]", d)[0].split(",")) if "[" in d else set()
    assert names == set(DEPENDENCIES)


def test_generic_study_on_a_run_with_faults() -> None:
    res = mimisim.run(ROOT / "scenarios" / "chaos.yaml", seed=3, out=False, progress=False)
    g = generic.summary(res.trace)
    assert g["messages"] == len(res.messages) and g["deliveries"] == len(res.deliveries)
    assert g["deliveries_made"] + g["deliveries_missing"] == g["deliveries_expected"] > 0
    assert g["http_attempts"] == len(res.exchanges) and g["http_retries"] > 0  # chaos loses requests
    assert g["retries"] == g["http_retries"] + g["client_retries"]
    assert g["latency_p50_ms"] <= g["latency_p95_ms"] <= g["latency_p99_ms"] <= g["latency_max_ms"]
    assert g["duplicate_deliveries"] == 0
    # the run summary's HTTP counts add up on a run with lost requests too
    v = res.summary.set_index("metric")["value"]
    unanswered = v["HTTP attempts unanswered (timeout, loss, crash)"]
    assert unanswered > 0 and v["HTTP requests (first attempts)"] + v["HTTP retries"] == \
        v["HTTP attempts answered"] + unanswered == g["http_attempts"]


def test_sweep_generic_beside_a_named_study_and_plot_where_checks(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sw"
    args = ["sweep", str(ROOT / "scenarios" / "epoch-conflicts.yaml"), "--set", "duration=8s", "--set",
            "sweep.grid={workload.updates.rate: [1/s, 3/s]}", "--seeds", "1", "--workers", "1", "--out", str(out),
            "--no-progress", "--study", "conflicts,generic"]
    status, stdout, err = cli(args, capsys)
    assert status == 0, err
    meta = json.loads((out / "sweep.json").read_text())
    assert meta["studies"] == ["conflicts", "generic"] and meta["study"] == "conflicts"
    gen = pd.read_csv(out / "summary-generic.csv")
    assert len(gen) == 2 and {"latency_p95_ms_mean", "delivery_ratio_pooled"} <= set(gen.columns)
    assert "p_conflict_mean" in pd.read_csv(out / "summary.csv").columns
    # resuming with only the main study runs nothing again
    status, _, err = cli([*args[:-2]], capsys)
    assert status == 0 and "(2 already done)" in err
    assert cli(["plot", str(out), "--study", "generic", "--where", "workload.updates.rate=3/s"], capsys)[0] == 0
    assert (out / "figures" / "epoch-conflicts-latency_p95_ms.svg").is_file()
    for where, msg in [("workload.updates.rate=2/s", "'2/s' is not a value of workload.updates.rate (values: 1/s, 3/s)"),
                       ("duration=8s", "'duration' is not a grid key (keys: workload.updates.rate)"),
                       ("nokey", "--where nokey: expected KEY=VALUE")]:
        status, _, err = cli(["plot", str(out), "--where", where], capsys)
        assert status == 2 and len(err.strip().splitlines()) == 1 and msg in err, err
    status, _, err = cli(["plot", str(out), "--study", "leave"], capsys)
    assert status == 2 and "this sweep computed conflicts, generic only" in err


def test_a_scenario_named_for_no_study_sweeps_the_generic_one(tmp_path: Path) -> None:
    from mimisim.sweep import plan

    sw = plan(Q, ["sweep={grid: {network.default.latency.value: [20ms]}, seeds: 1}"], out=tmp_path)
    assert sw.studies == ["generic"]


def test_readme_fault_example_bites_in_the_quickstart() -> None:
    """The README's faults block, applied to the quickstart: the offline
    window hits a client that is still in the room (fault.effect says bit)."""
    text = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "faults:" in b)
    data = yaml.safe_load(block)
    ov = [f"providers.a.example.standby={json.dumps(data['providers']['a.example']['standby'])}",
          f"faults={json.dumps(data['faults'])}"]
    res = mimisim.run(Q, overrides=ov, out=False, progress=False)
    f = res.faults
    bit = dict(zip(f["kind"], f["bit"], strict=False))
    assert bit["offline"] and bit["crash"] and bit["partition"], f.to_string()  # as the README says


def test_readme_fault_file_example_validates(tmp_path: Path) -> None:
    from mimisim.sim.fault_file import load_fault_file
    from mimisim.sim.scenario import load_scenario

    block = next(b for b in re.findall(r"```json\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
                 if "at_ms" in b)
    (tmp_path / "f.json").write_text(block)
    plan = load_fault_file(tmp_path / "f.json", load_scenario(Q))
    assert [f.kind for f in plan.faults] == ["crash", "offline"]
    assert plan.faults[1].node == "mimi://c.example/d/cathy/ClientC1"


def test_readme_layout_lists_every_scenario() -> None:
    layout = (ROOT / "README.md").read_text().split("## Layout", 1)[1]
    for p in (ROOT / "scenarios").rglob("*.yaml"):
        assert str(p.relative_to(ROOT / "scenarios")) in layout, p.name
