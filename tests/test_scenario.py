"""Scenario files: units, schema, one-line errors with file and line,
overrides, sweeps, and the ``validate``/``schema`` commands.

The error tests pin the exact line and key path, because "names the file,
the line and the key" is the whole point of the loader (shared/DESIGN.md,
"Scenarios"): a message that points at the wrong line is a bug.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mimisim.sim import scenario_cli
from mimisim.sim.scenario import (
    Scenario,
    ScenarioError,
    apply_override,
    expand_sweep,
    format_key_path,
    json_schema,
    load_scenario,
    load_scenario_text,
    parse_key_path,
    resolved_hash,
)
from mimisim.sim.units import (
    UnitError,
    format_bandwidth,
    format_duration,
    format_rate,
    format_size,
    parse_bandwidth,
    parse_duration,
    parse_rate,
    parse_size,
    per_ms,
)

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
BAD = Path(__file__).resolve().parent / "data" / "bad_scenarios"
QUICKSTART = SCENARIOS / "quickstart.yaml"
CLUBHOUSE = SCENARIOS / "clubhouse.yaml"

MINIMAL = """\
name: minimal
duration: 10s
providers:
  a.example: {}
  b.example: {}
users:
  alice: {provider: a.example, clients: [phone, laptop]}
  bob: {provider: b.example, clients: [phone]}
rooms:
  lounge:
    hub: a.example
    participants: {alice: group_admin, bob: ordinary_user}
"""


# ---------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("40ms", 40.0),
        ("2s", 2000.0),
        ("1.5min", 90_000.0),
        ("10min", 600_000.0),
        ("1h", 3_600_000.0),
        ("1d", 86_400_000.0),
        ("250us", 0.25),
        ("0s", 0.0),
        (" 3 ms ", 3.0),
        ("1e3ms", 1000.0),
    ],
)
def test_durations_parse_to_milliseconds(text: str, ms: float) -> None:
    assert parse_duration(text) == pytest.approx(ms)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("40", "expected a duration like '40ms' or '2s', got '40' (a bare number has no unit)"),
        (40, "got '40' (a bare number has no unit)"),
        ("5m", "unknown duration unit 'm'"),
        ("-5s", "a duration must not be negative, got '-5s'"),
        ("fast", "expected a duration like '40ms' or '2s', got 'fast'"),
        ("", "expected a duration"),
        ("1e999s", "not a finite number"),
        (None, "expected a duration"),
        (True, "expected a duration"),
    ],
)
def test_durations_reject_garbage(value: object, fragment: str) -> None:
    with pytest.raises(UnitError) as e:
        parse_duration(value)
    assert fragment in str(e.value)


def test_rates_sizes_bandwidths() -> None:
    assert parse_rate("0.5/s") == 0.5
    assert parse_rate("30/min") == 0.5
    assert parse_rate("2/h") == pytest.approx(2 / 3600)
    assert parse_rate("1/ms") == 1000.0
    assert per_ms(parse_rate("0.5/s")) == 0.0005
    assert parse_size("512B") == 512
    assert parse_size("64KiB") == 65536
    assert parse_size("1MB") == 1_000_000
    assert parse_size("8kbit") == 1000
    assert parse_bandwidth("10Mbit/s") == 1_250_000.0
    assert parse_bandwidth("1MB/s") == 1e6
    assert parse_bandwidth("100Mbps") == 12_500_000.0
    for bad, fragment in [
        (lambda: parse_rate("3s"), "a rate is a count per time unit"),
        (lambda: parse_rate("-1/s"), "a rate must not be negative"),
        (lambda: parse_rate("2"), "a bare number has no unit"),
        (lambda: parse_size("0.3B"), "whole number of bytes"),
        (lambda: parse_size("12 parsecs"), "unknown size unit 'parsecs'"),
        (lambda: parse_size("a lot"), "expected a size like '512B' or '64KiB', got 'a lot'"),
        (lambda: parse_bandwidth("10Mbit"), "expected a bandwidth"),
        (lambda: parse_bandwidth("5B/min"), "expected a bandwidth"),
    ]:
        with pytest.raises(UnitError) as e:
            bad()
        assert fragment in str(e.value)


finite = st.floats(min_value=0, max_value=1e15, allow_nan=False, allow_infinity=False)


@given(finite)
def test_duration_round_trip(ms: float) -> None:
    assert parse_duration(format_duration(ms)) == ms


@given(finite, st.sampled_from([("ms", 1.0), ("s", 1e3), ("min", 6e4), ("h", 3.6e6)]))
def test_duration_units_scale(x: float, unit: tuple[str, float]) -> None:
    name, factor = unit
    assert parse_duration(f"{x!r}{name}") == pytest.approx(x * factor, rel=1e-12)


@given(finite)
def test_rate_and_bandwidth_round_trip(x: float) -> None:
    assert parse_rate(format_rate(x)) == x
    assert parse_bandwidth(format_bandwidth(x)) == x


@given(st.integers(min_value=0, max_value=2**53))
def test_size_round_trip(n: int) -> None:
    assert parse_size(format_size(n)) == n


@given(st.text(max_size=20))
def test_garbage_never_crashes(text: str) -> None:
    """Any text is either a valid non-negative duration or a UnitError, never another exception."""
    try:
        ms = parse_duration(text)
    except UnitError:
        return
    assert ms >= 0 and math.isfinite(ms)


# ---------------------------------------------------------------- shipped scenarios


def test_quickstart_validates() -> None:
    s = load_scenario(QUICKSTART)
    assert s.name == "quickstart"
    assert s.counts() == (3, 4, 1)
    assert s.duration == 60_000.0
    assert s.workload.messages is not None and s.workload.messages.rate == 0.5
    leave = [st_ for st_ in s.workload.script if st_.action == "leave"]
    assert [x.client for x in leave] == ["mimi://b.example/d/bob/ClientB1"]
    assert s.network.default.loss.kind == "bernoulli"
    # the a<>c override applies in both directions, on top of the default
    ac = s.link("a.example", "c.example")
    assert ac.latency.kind == "lognormal" and ac.jitter == 10.0
    assert s.link("c.example", "a.example") == ac
    assert s.link("a.example", "b.example") == s.network.default
    up, down = s.access("mobile")
    assert up.bandwidth == 1_250_000.0 and down == up


def test_clubhouse_is_the_drafts_flow() -> None:
    s = load_scenario(CLUBHOUSE)
    assert s.counts() == (3, 6, 1)
    steps = [(x.at, x.action, x.client.rsplit("/", 1)[1], x.user) for x in s.workload.script]
    assert steps == [
        (1000.0, "create_room", "ClientA1", None),
        (2000.0, "add_user", "ClientA1", "bob"),
        (4000.0, "add_user", "ClientB1", "cathy"),
        (6000.0, "send", "ClientC1", None),
        (8000.0, "leave", "ClientB1", None),
        (12000.0, "join_room", "ClientC3", None),
    ]
    assert s.room_uri("clubhouse") == "mimi://a.example/r/clubhouse"
    assert s.client("ClientC3").uri == "mimi://c.example/d/cathy/ClientC3"
    assert not s.client("cathy/ClientC3").spec.joined
    assert s.rooms["clubhouse"].policy.pending_proposals is not None


@pytest.mark.parametrize("path", [QUICKSTART, CLUBHOUSE], ids=lambda p: p.name)
def test_resolved_scenario_round_trips(path: Path) -> None:
    """The JSON dump (units written back) validates, as a file would, to the same scenario."""
    s = load_scenario(path)
    dumped = s.model_dump(mode="json")
    again = Scenario.model_validate(dumped, context={"strict_units": True})
    assert again.model_dump() == s.model_dump()
    assert resolved_hash(again) == resolved_hash(s)


def test_resolved_hash_ignores_spelling_not_content() -> None:
    a = load_scenario_text(MINIMAL)
    spelled = MINIMAL.replace("duration: 10s", "duration: 10000ms").replace(
        "[phone, laptop]", "{phone: {}, laptop: {}}"
    )
    b = load_scenario_text(spelled)
    assert resolved_hash(a) == resolved_hash(b)
    c = load_scenario_text(MINIMAL, overrides=["duration=11s"])
    assert resolved_hash(c) != resolved_hash(a)
    assert len(resolved_hash(a)) == 64


# ---------------------------------------------------------------- broken files

# file -> (line, key path, message). The line is the line of the offending key.
BROKEN = {
    "unknown_key.yaml": (8, "network.default.latncy", "unknown key 'latncy' (did you mean 'latency'?)"),
    "wrong_unit.yaml": (
        10,
        "network.default.latency.value",
        "expected a duration like '40ms' or '2s', got '40' (a bare number has no unit)",
    ),
    "negative_rate.yaml": (14, "workload.messages.rate", "a rate must not be negative, got '-2/s'"),
    "missing_provider.yaml": (
        12,
        "users.bob.provider",
        "unknown provider 'z.example' (providers: a.example, b.example)",
    ),
    "unknown_hub.yaml": (11, "rooms.lounge.hub", "unknown hub provider 'q.example' (providers: a.example)"),
    "probability.yaml": (
        12,
        "network.links[a.example<>b.example].loss.p",
        "a probability must be in [0, 1], got 1.5",
    ),
    "bad_distribution.yaml": (8, "network.default.latency.high", "must be at least low (50ms), got 10ms"),
    "unknown_kind.yaml": (9, "network.default.latency.kind", "unknown kind 'gaussian'"),
    "unknown_client.yaml": (
        13,
        "workload.script[1].client",
        "user 'alice' has no client 'laptop' (clients: phone)",
    ),
    "failover_without_standby.yaml": (16, "faults.schedule[1].hub", "provider 'a.example' has no standby"),
    "missing_required.yaml": (2, "duration", "missing required key"),
    "bad_sweep_value.yaml": (
        18,
        "sweep.grid[workload.messages.rate][1]",
        "workload.messages.rate: expected a rate like '0.5/s' or '30/min', got '5 per second'",
    ),
}
# Errors without a key path: the YAML itself is broken.
BROKEN_YAML = {
    "yaml_syntax.yaml": (6, "YAML syntax error: expected ',' or '}', but got '<scalar>'"),
    "duplicate_key.yaml": (6, "duplicate key 'a.example' (first at line 5)"),
}


def test_every_bad_file_has_an_expectation() -> None:
    assert {p.name for p in BAD.glob("*.yaml")} == set(BROKEN) | set(BROKEN_YAML)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_file_gives_one_line_with_file_line_and_key(name: str) -> None:
    line, key, message = BROKEN[name]
    path = BAD / name
    with pytest.raises(ScenarioError) as e:
        load_scenario(path)
    text = str(e.value)
    assert "\n" not in text
    assert text.startswith(f"{path}:{line}: {key}: {message}"), text
    assert (e.value.file, e.value.line, e.value.path) == (str(path), line, key)


@pytest.mark.parametrize("name", sorted(BROKEN_YAML))
def test_broken_yaml_gives_one_line_with_file_and_line(name: str) -> None:
    line, message = BROKEN_YAML[name]
    path = BAD / name
    with pytest.raises(ScenarioError) as e:
        load_scenario(path)
    assert "\n" not in str(e.value)
    assert str(e.value).startswith(f"{path}:{line}: {message}"), str(e.value)


@pytest.mark.parametrize("name", sorted(BROKEN) + sorted(BROKEN_YAML))
def test_validate_command_exits_2_with_the_line_on_stderr(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = BAD / name
    assert scenario_cli.main(["validate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(f"{path}:")
    with pytest.raises(ScenarioError) as e:
        load_scenario(path)
    assert err.strip() == str(e.value)


def test_validate_exit_status_in_a_real_process() -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "mimisim.sim.scenario_cli", "validate", str(BAD / "unknown_hub.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().endswith(
        "rooms.lounge.hub: unknown hub provider 'q.example' (providers: a.example)"
    )
    good = subprocess.run(
        [sys.executable, "-m", "mimisim.sim.scenario_cli", "validate", str(QUICKSTART)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert good.returncode == 0, good.stderr
    assert good.stdout == "ok: quickstart (3 providers, 4 clients, 1 room)\n"


def test_validate_ok_and_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert scenario_cli.main(["validate", str(CLUBHOUSE)]) == 0
    assert capsys.readouterr().out == "ok: clubhouse (3 providers, 6 clients, 1 room)\n"
    missing = tmp_path / "nope.yaml"
    assert scenario_cli.main(["validate", str(missing)]) == 2
    assert capsys.readouterr().err == f"{missing}: cannot read: No such file or directory\n"


def test_schema_command_prints_the_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert scenario_cli.main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema == json.loads(json.dumps(json_schema()))
    assert set(schema["properties"]) == set(Scenario.model_fields)
    assert set(schema["required"]) == {"name", "duration", "providers"}
    assert schema["additionalProperties"] is False
    link = schema["$defs"]["LinkSpec"]["properties"]
    assert "description" in link["latency"]  # attribute docstrings reach editors
    # the shorthand ``latency: 40ms`` is allowed by the schema too
    assert {"type": "string", "description": "a constant duration, e.g. 40ms"} in link["latency"]["anyOf"]


# ---------------------------------------------------------------- other errors


def test_more_cross_field_errors() -> None:
    cases = {
        "rooms.lounge.participants.carol": (
            ["rooms.lounge.participants.carol=ordinary_user"],
            "unknown user 'carol' (users: alice, bob)",
        ),
        "rooms.lounge.participants.bob": (
            ["rooms.lounge.participants.bob=banned"],
            "role 'banned' (index 1) is not an active participant role",
        ),
        "users.bob.clients.phone.access": (
            ["users.bob.clients.phone.access=satellite"],
            "unknown access profile",
        ),
        "faults.schedule[0].client": (
            ["faults.schedule=[{kind: offline, at: 1s, client: phone}]"],
            "client name 'phone' is ambiguous (users alice, bob); write user/device",
        ),
        "faults.schedule[0].links[0]": (
            ["faults.schedule=[{kind: degrade, at: 1s, links: [a.example>b.example]}]"],
            "degradations apply to both directions; write 'a.example<>b.example'",
        ),
        "faults.schedule[0].at": (
            ["faults.schedule=[{kind: crash, at: 10s, node: a.example}]"],
            "10000ms is not before the end of the run (duration 10000ms)",
        ),
        "providers[a.example].standby.lag": (
            ["providers.a.example.standby={replication: lag}"],
            "replication 'lag' needs a lag distribution",
        ),
        "rooms.lounge.policy.roles.ordinary_user.capabilities[0]": (
            [
                "rooms.lounge.policy.roles={ordinary_user: {index: 2, capabilities: [canSendMesage]}, group_admin: {index: 3}}"
            ],
            "unknown room-policy capability 'canSendMesage' (did you mean 'canSendMessage'?)",
        ),
    }
    for path, (overrides, message) in cases.items():
        with pytest.raises(ScenarioError) as e:
            load_scenario_text(MINIMAL, "min.yaml", overrides)
        assert e.value.path == path, str(e.value)
        assert message in e.value.message, str(e.value)
        assert "(from --set " in e.value.message


def test_cross_field_errors_from_python_data() -> None:
    """Built in Python, a scenario is checked the same way, without file and line."""
    with pytest.raises(ScenarioError) as e:
        Scenario.model_validate(
            {
                "name": "x",
                "duration": 1000,
                "providers": {"a.example": {}},
                "rooms": {"r": {"hub": "b.example"}},
            }
        )
    assert str(e.value).startswith("rooms.r.hub: unknown hub provider 'b.example'")
    # in Python, bare numbers are the canonical units (ms, per second, bytes)
    s = Scenario.model_validate({"name": "x", "duration": 1000, "providers": {"a.example": {}}})
    assert s.duration == 1000.0
    with pytest.raises(ScenarioError) as e2:
        load_scenario_text("name: x\nduration: 1000\nproviders: {a.example: {}}\n", "x.yaml")
    assert (
        str(e2.value)
        == "x.yaml:2: duration: expected a duration like '40ms' or '2s', got '1000' (a bare number has no unit)"
    )


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(ScenarioError) as e:
        load_scenario_text("- a\n- b\n", "list.yaml")
    assert (
        str(e.value)
        == "list.yaml:1: a scenario is a mapping of keys (name, duration, providers, ...), got a list"
    )


def test_empirical_file_is_relative_to_the_scenario(tmp_path: Path) -> None:
    (tmp_path / "rtt.csv").write_text("ms\n12\n15\n40\n")
    text = MINIMAL + "network:\n  default:\n    latency: {kind: empirical, file: rtt.csv}\n"
    (tmp_path / "s.yaml").write_text(text)
    s = load_scenario(tmp_path / "s.yaml")
    assert s.network.default.latency.file == "rtt.csv"
    assert s.network.default.to_link_dict(s.base_dir)["latency"]["file"] == str(tmp_path / "rtt.csv")
    (tmp_path / "rtt.csv").unlink()
    with pytest.raises(ScenarioError) as e:
        load_scenario(tmp_path / "s.yaml")
    assert str(e.value).startswith(
        f"{tmp_path / 's.yaml'}:15: network.default.latency.file: no such file: 'rtt.csv'"
    )


# ---------------------------------------------------------------- overrides


def test_override_sets_a_nested_value() -> None:
    s = load_scenario(QUICKSTART, ["network.default.latency.value=80ms"])
    assert s.network.default.latency.value == 80.0
    assert resolved_hash(s) != resolved_hash(load_scenario(QUICKSTART))


def test_overrides_with_dotted_keys_brackets_lists_and_new_keys() -> None:
    s = load_scenario(
        QUICKSTART,
        [
            "providers.b.example.state=volatile",  # greedy: the key 'b.example'
            "network.links[a.example>b.example].loss=2%",  # bracketed new key
            "network.links.a.example<>c.example.duplicate=0.1",  # existing dotted key
            "workload.script.0.at=45s",  # list index
            "protocol.dedup={strategy: transaction_id, window_entries: 10}",  # a YAML mapping
            "outputs.plots=[]",
        ],
    )
    assert s.providers["b.example"].state == "volatile"
    assert s.link("a.example", "b.example").loss.p == 0.02
    assert s.link("b.example", "a.example").loss.p == 0.01  # one-way only
    assert s.link("c.example", "a.example").duplicate == 0.1
    assert s.workload.script[0].at == 45_000.0
    assert s.protocol.dedup.strategy == "transaction_id" and s.protocol.dedup.window_entries == 10
    assert s.outputs.plots == []


def test_bad_override_names_the_override_and_the_line() -> None:
    with pytest.raises(ScenarioError) as e:
        load_scenario(QUICKSTART, ["network.default.latency.value=80"])
    line = next(
        i for i, t in enumerate(QUICKSTART.read_text().splitlines(), 1) if "latency: {kind: constant" in t
    )
    assert str(e.value) == (
        f"{QUICKSTART}:{line}: network.default.latency.value: expected a duration like '40ms' or '2s', "
        "got '80' (a bare number has no unit) (from --set network.default.latency.value=80)"
    )
    with pytest.raises(ScenarioError) as e2:
        load_scenario(QUICKSTART, ["name.first=x"])
    assert "--set name.first=x: cannot set 'name.first': name is the text 'quickstart', not a mapping" in str(
        e2.value
    )
    with pytest.raises(ScenarioError) as e3:
        load_scenario(QUICKSTART, ["workload.script.5.at=1s"])
    assert "workload.script is a list of 1 items; '5' is not an index into it" in str(e3.value)
    with pytest.raises(ScenarioError) as e4:
        load_scenario(QUICKSTART, ["seed"])
    assert str(e4.value) == f"{QUICKSTART}: --set seed: expected key.path=value"


def test_validate_command_with_set(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        scenario_cli.main(["validate", str(QUICKSTART), "--set", "network.default.latency.value=80ms"]) == 0
    )
    assert scenario_cli.main(["validate", str(QUICKSTART), "--set", "protocol.dedup.strategy=sometimes"]) == 2
    err = capsys.readouterr().err
    assert (
        "protocol.dedup.strategy: expected 'none', 'body_hash' or 'transaction_id', got the text 'sometimes'"
        in err
    )


def test_key_paths() -> None:
    assert parse_key_path("a.b[c.d].0") == [("a", False), ("b", False), ("c.d", True), ("0", False)]
    assert format_key_path(("providers", "a.example", "cost")) == "providers[a.example].cost"
    assert format_key_path(("faults", "schedule", 0, "at")) == "faults.schedule[0].at"
    for bad in ["", "a..b", "a[b", "a[]", "a."]:
        with pytest.raises(ValueError):
            parse_key_path(bad)
    data: dict = {"x": {"1": "one", "y.z": {}}}
    assert apply_override(data, "x.y.z.w", 5) == ("x", "y.z", "w")
    assert data["x"]["y.z"] == {"w": 5}
    assert apply_override(data, "new.deep.key", 1) == ("new", "deep", "key")
    assert data["new"] == {"deep": {"key": 1}}


# ---------------------------------------------------------------- sweeps

SWEEP = (
    MINIMAL
    + """\
workload:
  updates: {rate: 1/min}
sweep:
  grid:
    workload.updates.rate: [1/min, 5/min, 20/min]
    network.default.latency: [20ms, 80ms]
  seeds: 4
"""
)


def test_sweep_expansion_is_grid_times_seeds() -> None:
    s = load_scenario_text(SWEEP, "sweep.yaml", overrides=["seed=10"])
    runs = expand_sweep(s)
    assert len(runs) == 3 * 2 * 4
    params, seed, first = runs[0]
    assert params == {"workload.updates.rate": "1/min", "network.default.latency": "20ms"}
    assert seed == 10 and first.seed == 10 and first.sweep is None
    assert [r[1] for r in runs[:4]] == [10, 11, 12, 13]
    assert runs[4][0] == {"workload.updates.rate": "1/min", "network.default.latency": "80ms"}
    last_params, last_seed, last = runs[-1]
    assert last_params == {"workload.updates.rate": "20/min", "network.default.latency": "80ms"}
    assert last_seed == 13
    assert last.workload.updates is not None and last.workload.updates.rate == pytest.approx(20 / 60)
    assert last.network.default.latency.value == 80.0
    assert len({resolved_hash(r[2]) for r in runs}) == len(runs)


def test_sweep_with_explicit_seeds_and_without_sweep() -> None:
    s = load_scenario_text(
        SWEEP, "sweep.yaml", overrides=["sweep.seeds=[7, 3]", "sweep.grid={protocol.suite: [1, 3]}"]
    )
    runs = expand_sweep(s)
    assert [(p["protocol.suite"], seed) for p, seed, _ in runs] == [(1, 7), (1, 3), (3, 7), (3, 3)]
    assert [r[2].protocol.suite for r in runs] == [1, 1, 3, 3]
    plain = load_scenario_text(MINIMAL)
    assert expand_sweep(plain) == [({}, 0, plain)]


@given(
    st.lists(st.integers(min_value=1, max_value=4), min_size=0, max_size=3),
    st.integers(min_value=1, max_value=3),
)
@settings(deadline=None)  # up to 192 validations: over 200 ms when the machine is shared
def test_sweep_count_property(sizes: list[int], seeds: int) -> None:
    keys = ["protocol.dedup.window_entries", "protocol.notify.retry.max_attempts", "epoch_base_ms"]
    grid = {k: list(range(1, n + 1)) for k, n in zip(keys, sizes, strict=False)}
    s = load_scenario_text(MINIMAL, overrides=[f"sweep={json.dumps({'grid': grid, 'seeds': seeds})}"])
    assert len(expand_sweep(s)) == math.prod(sizes) * seeds


def test_sweep_grid_values_are_checked_at_load() -> None:
    with pytest.raises(ScenarioError) as e:
        load_scenario_text(SWEEP.replace("[20ms, 80ms]", "[20ms, 80]"), "sweep.yaml")
    assert str(e.value).startswith(
        "sweep.yaml:18: sweep.grid[network.default.latency][1]: network.default.latency.value: expected a duration"
    )


def test_validate_sweep_counts_runs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = tmp_path / "sweep.yaml"
    f.write_text(SWEEP)
    assert scenario_cli.main(["validate", str(f), "--sweep"]) == 0
    assert capsys.readouterr().out == "ok: minimal (2 providers, 3 clients, 1 room, sweep of 24 runs)\n"


#: What the unit types say of themselves; a property whose only description
#: is one of these says what it is, not what it does.
_TYPE_ONLY = {
    "a duration with its unit: ns, us, ms, s, min, h, d",
    "events per time unit: 0.5/s, 30/min, 2/h",
    "a size: B, kB, MB, GB, KiB, MiB, GiB, bit, kbit, Mbit, Gbit",
    "bytes or bits per second: 10Mbit/s, 1MB/s, 100Mbps",
}


def _undescribed(node: object, where: str, out: list[str]) -> int:
    """Walk a JSON Schema; collect every property without its own description; count them all."""
    count = 0
    if isinstance(node, dict):
        for name, prop in (node.get("properties") or {}).items():
            count += 1
            desc = prop.get("description") if isinstance(prop, dict) else None
            if not desc or desc in _TYPE_ONLY:
                out.append(f"{where}.{name}")
        for key, sub in node.items():
            count += _undescribed(sub, f"{where}/{key}" if key != "properties" else where, out)
    elif isinstance(node, list):
        for sub in node:
            count += _undescribed(sub, where, out)
    return count


def test_every_schema_property_is_described() -> None:
    missing: list[str] = []
    total = _undescribed(json_schema(), "", missing)
    assert total > 250  # the walk reaches every model (the generators' included)
    assert missing == []
    # and the walk does find a property without one
    found: list[str] = []
    _undescribed({"properties": {"a": {"type": "string"}, "b": {"description": "x"}}}, "", found)
    assert found == [".a"]
