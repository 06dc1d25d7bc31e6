"""Every bad input on the command line ends the same way: one line on
stderr, exit status 2, no traceback (issue 17). Each case of the issue is
run here; a closed pipe ends quietly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mimisim.cli import main

ROOT = Path(__file__).resolve().parents[1]
Q = str(ROOT / "scenarios" / "quickstart.yaml")

TINY_SWEEP = """\
name: tiny-sweep
seed: 1
duration: 6s
providers: {a.example: {}, b.example: {}}
network: {default: {latency: {kind: constant, value: 40ms}}}
users:
  alice: {provider: a.example, clients: {A1: {}}}
  bob: {provider: b.example, clients: {B1: {}}}
rooms:
  r: {hub: a.example, participants: {alice: group_admin, bob: ordinary_user}}
workload:
  messages: {rate: 2/s, start: 1s}
sweep:
  grid: {network.default.latency.value: [20ms, 60ms]}
  seeds: 1
"""


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``mimisim ARGS`` in this process: (status, stdout, stderr)."""
    try:
        status = main(args)
    except SystemExit as e:  # argparse's exit
        status = int(e.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line(status: int, err: str, *, contains: str) -> None:
    assert status == 2, err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert contains in err, err


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "bad.json").write_text("{bad\n")
    (tmp_path / "dir").mkdir()
    (tmp_path / "at.json").write_text('[{"kind":"crash","node":"zz.example","at":5000}]\n')
    (tmp_path / "zz.json").write_text('[\n  {"kind": "crash", "node": "zz.example", "at_ms": 5000}\n]\n')
    (tmp_path / "a1.json").write_text('{"a":1}\n')
    (tmp_path / "late.yaml").write_text("- {kind: offline, node: alice/ClientA1, at_ms: 90000}\n")
    (tmp_path / "sweep.yaml").write_text(TINY_SWEEP)
    (tmp_path / "matrix.yaml").write_text("configurations:\n  a:\n    set: [1, 2\n")
    return {p.name: str(p) for p in tmp_path.iterdir()} | {"missing.json": str(tmp_path / "missing.json")}


CASES = [
    (["run", Q, "--seed", "-1"], "argument --seed: seed must be an integer in 0..9223372036854775807"),
    (["run", Q, "--seed", "99999999999999999999999"], "argument --seed: seed must be an integer in 0.."),
    (["run", Q, "--seed", "x"], "argument --seed: expected an integer, got 'x'"),
    (["run", Q, "--faults", "{bad.json}"], "bad.json:1: not valid JSON: expecting property name"),
    (["run", Q, "--faults", "{missing.json}"], "missing.json: cannot read the fault file: No such file"),
    (["run", Q, "--faults", "{dir}"], "dir: cannot read the fault file: Is a directory"),
    (["run", Q, "--faults", "{at.json}"], "at.json:1: faults[0].at: unknown key 'at': this is a scenario's "
                                          "faults.schedule spelling; a fault file says 'at_ms'"),
    (["run", Q, "--faults", "{zz.json}"], "zz.json:2: faults[0].node: unknown provider 'zz.example'"),
    (["run", Q, "--faults", "{a1.json}"], "a1.json:1: expected a list of faults (or a manifest.json"),
    (["run", Q, "--faults", "{late.yaml}"], "late.yaml:1: faults[0].at_ms: 90000 ms is not before the end"),
    (["check", Q, "--seeds", "0"], "mimisim check: argument --seeds: must be at least 1, got 0"),
    (["check", Q, "--workers", "-1"], "mimisim check: argument --workers: must be 0 (one per CPU)"),
    (["check", Q, "--start", "9223372036854775807", "--seeds", "2"], "goes past the largest seed"),
    (["sweep", "{sweep.yaml}", "--workers", "-1"], "mimisim sweep: argument --workers: must be 0"),
    (["sweep", "{sweep.yaml}", "--seeds", "0"], "mimisim sweep: argument --seeds: must be at least 1"),
    (["sweep", Q], "quickstart.yaml: no 'sweep:' block, so there is nothing to sweep"),
    (["sweep", "{sweep.yaml}", "--study", "nope"], "unknown study 'nope'"),
    (["run", Q, "--out", "/dev/null/x"], "--out /dev/null/x: /dev/null is a file, so no folder can be made"),
    (["run", Q, "--out", "/proc/nope"], "--out /proc/nope: "),  # root may "write" /proc: a probe folder decides
    (["run", Q, "--set", "seed=99999999999999999999999"], "quickstart.yaml:12: seed: expected less than or equal to "
                                                           "9223372036854775807"),
    (["check", Q, "--seeds", "1", "--dask", "nonsense"], "--dask nonsense: cannot reach a Dask scheduler there"),
    (["sweep", "{sweep.yaml}", "--dask", "nonsense"], "--dask nonsense: cannot reach a Dask scheduler there"),
    (["run", Q, "--no-such-flag"], "mimisim: unrecognized arguments: --no-such-flag"),
    (["check", Q, "--json", "/dev/null/r.json"], "--json /dev/null/r.json: cannot write there"),
    (["check", "--matrix", "{matrix.yaml}"], "matrix.yaml:4: not YAML: expected ',' or ']'"),
    (["diagram", "{dir}", "--kinds", "net"], "dir: no trace.parquet in this folder"),
]


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(a[2:] or a[:1]) for a, _ in CASES])
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, files: dict[str, str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    args = [files[a[1:-1]] if a.startswith("{") else a for a in args]
    status, out, err = run_cli(args, capsys)
    assert_one_line(status, err, contains=message)


def test_workers_0_means_one_per_cpu_in_sweep_and_check(files: dict[str, str], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run_cli(["sweep", files["sweep.yaml"], "--workers", "0", "--out", str(tmp_path / "sw"),
                                "--no-progress"], capsys)
    assert status == 0, err
    assert f"on {os.cpu_count()} worker(s)" in err and "latency_p95_ms" in out  # the generic study
    status, out, err = run_cli(["check", files["sweep.yaml"], "--seeds", "2", "--workers", "0", "--no-progress",
                                "--no-shrink", "--determinism", "0"], capsys)
    assert status in (0, 1) and "invariant" in out, err


@pytest.mark.long  # two fresh processes, about 4 s of CPU: CI's long step
def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """``mimisim run Q | head -3``: the reader goes away; no traceback, no
    "Exception ignored" from the final flush, status 141 (as for SIGPIPE)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(TINY_SWEEP.replace("tiny-sweep", "tiny").split("sweep:")[0])
    proc = subprocess.Popen([sys.executable, "-m", "mimisim.cli", "run", str(tiny), "--out", str(tmp_path), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == ""
    # and through a shell pipe, as a user types it
    shell = subprocess.run(f"{sys.executable} -m mimisim.cli run {tiny} --out {tmp_path} --no-progress | head -1",
                           shell=True, capture_output=True, text=True, env=env, timeout=120)
    assert shell.stdout.startswith("tiny (seed 1)") and shell.stderr == ""


def test_faults_file_replays_a_manifest_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A manifest.json is a fault file: replaying its schedule gives the same trace."""
    import pandas as pd

    chaos = str(ROOT / "scenarios" / "chaos.yaml")
    status, _, err = run_cli(["run", chaos, "--seed", "3", "--out", str(tmp_path), "--quiet", "--no-progress"],
                             capsys)
    assert status == 0, err
    first = tmp_path / "seed-3"
    faults = json.loads((first / "manifest.json").read_text())["faults"]
    assert faults  # chaos draws random faults
    (tmp_path / "f.json").write_text(json.dumps(faults))
    status, _, err = run_cli(["run", chaos, "--seed", "3", "--out", str(tmp_path), "--quiet", "--no-progress",
                              "--faults", str(tmp_path / "f.json")], capsys)
    assert status == 0, err
    replay = [p for p in tmp_path.iterdir() if p.name.startswith("seed-3-")]
    assert len(replay) == 1  # an explicit schedule gets its own folder
    pd.testing.assert_frame_equal(pd.read_parquet(first / "trace.parquet"), pd.read_parquet(replay[0] / "trace.parquet"))


def test_schema_faults_describes_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_cli(["schema", "--faults"], capsys)
    schema = json.loads(out)
    props = schema["items"]["properties"]
    assert status == 0 and {"kind", "at_ms", "end_ms", "node", "groups", "links"} <= set(props)
    assert all(p.get("description") for p in props.values())


def test_validate_says_rooms_in_the_singular_and_when_there_is_no_sweep(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run_cli(["validate", "--sweep", Q], capsys)
    assert status == 0 and out == "ok: quickstart (3 providers, 4 clients, 1 room); no sweep block, one run\n", err


def test_a_sweep_with_overrides_gets_its_own_folder(files: dict[str, str]) -> None:
    """Two sweeps of one file with different --set never share (and overwrite) tables."""
    from mimisim.sweep import plan

    plain = plan(files["sweep.yaml"])
    a = plan(files["sweep.yaml"], ["duration=4s"])
    b = plan(files["sweep.yaml"], ["duration=5s"])
    assert plain.out.name == "sweep" and plan(files["sweep.yaml"], seeds=3).out == plain.out
    assert a.out.name.startswith("sweep-") and len({plain.out, a.out, b.out}) == 3
    assert a.out == plan(files["sweep.yaml"], ["duration=4s"]).out and a.overrides == ["duration=4s"]


def test_diagram_kinds_must_name_trace_kinds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown --kinds is one line naming it; a one-seed results folder is
    read through its only seed."""
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(TINY_SWEEP.replace("tiny-sweep", "tiny").split("sweep:")[0].replace("6s", "2s"))
    assert run_cli(["run", str(tiny), "--out", str(tmp_path / "r"), "--no-progress"], capsys)[0] == 0
    status, out, err = run_cli(["diagram", str(tmp_path / "r"), "--kinds", "net.bogus", "--out",
                                str(tmp_path / "d.txt")], capsys)
    assert_one_line(status, err, contains="--kinds: no trace kind is or starts with 'net.bogus'")
    status, out, err = run_cli(["diagram", str(tmp_path / "r"), "--kinds", "net", "hub.", "--out",
                                str(tmp_path / "d.txt")], capsys)
    assert status == 0 and (tmp_path / "d.txt").is_file(), err
