"""``generate:`` blocks for users and rooms (mimisim.sim.scenario.generate).

A generated scenario must be exactly its hand-written expansion (same
resolved hash), scale to a thousand users in a few lines, and keep the
loader's promise that every error is one line naming file:line and key.
"""

from __future__ import annotations

import collections
import re
from pathlib import Path

import pytest

from mimisim.sim.scenario import (
    Scenario,
    ScenarioError,
    expand_sweep,
    load_scenario_text,
    resolved_hash,
)
from mimisim.sim.world import World

GENERATED = """\
name: gen
duration: 10s
providers: {a.example: {}, b.example: {}}
users:
  carol: {provider: a.example, clients: [phone]}
  generate:
    count: 4
    provider: round_robin
    clients: 2
rooms:
  generate:
    count: 3
    prefix: r
    hub: round_robin
    participants: {count: 2}
"""

# What GENERATED stands for, written out by hand (another order of keys,
# the policy's default roles spelled out): the same scenario.
HAND_WRITTEN = """\
name: gen
duration: 10000ms
providers: {a.example: {}, b.example: {}}
users:
  carol: {provider: a.example, clients: [phone]}
  user1: {provider: a.example, clients: [client1, client2]}
  user2: {provider: b.example, clients: [client1, client2]}
  user3: {provider: a.example, clients: [client1, client2]}
  user4: {provider: b.example, clients: [client1, client2]}
rooms:
  r1: {hub: a.example, participants: {carol: group_admin, user1: ordinary_user}}
  r2: {hub: b.example, participants: {user2: group_admin, user3: ordinary_user}}
  r3: {hub: a.example, participants: {user4: ordinary_user, carol: group_admin}, created_by: carol/phone}
"""


def test_generated_scenario_equals_its_hand_written_expansion() -> None:
    gen = load_scenario_text(GENERATED, "gen.yaml")
    hand = load_scenario_text(HAND_WRITTEN, "hand.yaml")
    assert gen.model_dump() == hand.model_dump()
    assert resolved_hash(gen) == resolved_hash(hand)
    # the order of the mapping is the order written: the generator's entries
    # take its place
    assert list(gen.users) == ["carol", "user1", "user2", "user3", "user4"]
    # r3 (hub a.example by round robin) takes the next two in the ring, user4
    # (on b) and carol (on a): the participant on the hub comes first and
    # creates the room
    assert list(gen.rooms["r3"].participants) == ["carol", "user4"]
    assert gen.rooms["r3"].created_by == "mimi://a.example/d/carol/phone"


def test_the_file_keeps_its_generator_so_overrides_and_sweeps_reach_it() -> None:
    s = load_scenario_text(GENERATED, overrides=["users.generate.count=6"])
    assert len(s.users) == 7
    swept = load_scenario_text(GENERATED + "sweep: {grid: {users.generate.count: [2, 4, 8]}}\n")
    assert [len(point.users) for _, _, point in expand_sweep(swept)] == [3, 5, 9]


def test_weights_are_followed_on_every_prefix() -> None:
    text = GENERATED.replace("provider: round_robin", "provider: {weights: {a.example: 3, b.example: 1}}")
    s = load_scenario_text(text.replace("count: 4", "count: 1000"), overrides=["rooms={}"])
    order = [u.provider for name, u in s.users.items() if name != "carol"]
    assert collections.Counter(order) == {"a.example": 750, "b.example": 250}
    for n in range(1, len(order) + 1):  # smooth: never more than one off the exact share
        assert abs(order[:n].count("a.example") - 0.75 * n) <= 1


def test_fixed_provider_fraction_and_all_participants() -> None:
    text = """\
name: g
duration: 1s
providers: {a.example: {}, b.example: {}}
users:
  generate: [{count: 10, prefix: a, provider: a.example}, {count: 10, prefix: b, provider: {fixed: b.example}}]
rooms:
  generate:
    - {count: 2, prefix: half, users: "a*", participants: {fraction: 0.5}}
    - {count: 1, prefix: everyone, participants: all, role: super_admin}
"""
    s = load_scenario_text(text)
    assert {u.provider for n, u in s.users.items() if n.startswith("a")} == {"a.example"}
    assert {u.provider for n, u in s.users.items() if n.startswith("b")} == {"b.example"}
    assert list(s.rooms["half1"].participants) == ["a01", "a02", "a03", "a04", "a05"]
    assert list(s.rooms["half2"].participants) == ["a06", "a07", "a08", "a09", "a10"]
    assert s.rooms["half1"].hub == "a.example"  # hub: creator (default)
    every = s.rooms["everyone1"].participants
    assert len(every) == 20 and every["a01"] == "group_admin" and every["b10"] == "super_admin"


GEN_FILE = """\
name: g
duration: 10s
providers: {a.example: {}, b.example: {}}
users:
  alice: {provider: a.example, clients: [phone]}
  generate: {count: 20, provider: round_robin, clients: 1}
rooms:
  generate: {count: 5, participants: 4}
"""


@pytest.mark.parametrize(
    ("override", "line", "where", "message"),
    [
        ("users.generate.count=0", 6, "users.generate.count", "greater than or equal to 1"),
        ("users.generate.provider=z.example", 6, "users.generate.provider", "unknown provider 'z.example'"),
        ("users.generate.provider={weights: {a.example: -1}}", 6, "users.generate.provider.weights[a.example]",
         "a weight must be greater than 0"),
        ("users.generate.provider={round_robin: [a.example, q.example]}", 6,
         "users.generate.provider.round_robin[1]", "unknown provider 'q.example'"),
        ("users.generate.provider=7", 6, "users.generate.provider", "expected round_robin, a provider domain"),
        ("users.generate.clients=0", 6, "users.generate.clients", "at least 1 client"),
        ("users.generate.prefx=u", 6, "users.generate.prefx", "unknown key 'prefx' (did you mean 'prefix'?)"),
        ("users.user07={provider: a.example, clients: [x]}", 6, "users.generate",
         "generated user 'user07' is already declared"),
        ("users.generate.access=nope", 6, "users.generate.access",
         "unknown access profile 'nope' (profiles: default) (generated user 'user01')"),
        ("rooms.generate.participants=50", 8, "rooms.generate.participants.count",
         "50 participants per room, but only 21 candidate users"),
        ("rooms.generate.role=banned", 8, "rooms.generate.participants",
         "role 'banned' (index 1) is not an active participant role (generated room 'room1')"),
        ("rooms.generate={count: 2, participants: 1, hub: b.example}", 8, "rooms.generate.hub",
         "room 'room1' has no participant on its hub 'b.example' to create it (participants: alice)"),
        ("rooms.generate.users=zz*", 8, "rooms.generate.users", "no user matches 'zz*'"),
        ("rooms.generate.policy={creator_role: boss}", 8, "rooms.generate.policy.creator_role",
         "unknown role 'boss'"),
        ("users.generate=[]", 6, "users.generate", "expected a generator or a non-empty list of generators"),
    ],
)  # fmt: skip
def test_generator_errors_are_one_line_at_the_generator(override: str, line: int, where: str, message: str) -> None:
    with pytest.raises(ScenarioError) as e:
        load_scenario_text(GEN_FILE, "g.yaml", overrides=[override])
    text = str(e.value)
    assert "\n" not in text
    assert text.startswith(f"g.yaml:{line}: {where}: "), text
    assert message in text, text


def test_generator_error_without_override_names_the_generators_line() -> None:
    bad = GEN_FILE.replace("clients: 1}", "clients: 1, access: wifi}")
    with pytest.raises(ScenarioError) as e:
        load_scenario_text(bad, "g.yaml")
    assert re.fullmatch(
        r"g\.yaml:6: users\.generate\.access: unknown access profile 'wifi' .*\(generated user 'user01'\)", str(e.value)
    )


def test_generators_in_python_built_scenarios() -> None:
    s = Scenario.model_validate(
        {
            "name": "py",
            "duration": 1000,
            "providers": {"a.example": {}},
            "users": {"generate": {"count": 3}},
            "rooms": {"generate": {"count": 1, "participants": "all"}},
        }
    )
    assert list(s.rooms["room1"].participants) == ["user1", "user2", "user3"]


CROWD = """\
name: crowd
duration: 500ms
providers: {a.example: {}, b.example: {}, c.example: {}}
users:
  generate: {count: 1000, provider: round_robin, clients: 1}
rooms:
  generate: {count: 100, hub: round_robin, participants: 3}
"""


def test_a_thousand_users_in_a_few_lines_validate() -> None:
    s = load_scenario_text(CROWD, "crowd.yaml")
    assert s.counts() == (3, 1000, 100)
    # 100 rooms of 3 consecutive users: the first 300 users, each in one room
    members = [u for r in s.rooms.values() for u in r.participants]
    assert len(members) == len(set(members)) == 300
    for r in s.rooms.values():  # each created by a client of its hub
        assert r.created_by is not None and r.created_by.startswith(f"mimi://{r.hub}/")


def _run_crowd(users: int, rooms: int) -> None:
    s = load_scenario_text(CROWD, "crowd.yaml", overrides=[f"users.generate.count={users}", f"rooms.generate.count={rooms}"])
    kinds = World(s).run(progress=False).trace.to_pandas().kind.value_counts()
    assert kinds.get("client.fail", 0) == 0
    assert kinds["client.commit"] == rooms * 2  # every room created, its two others added


def test_a_generated_crowd_runs() -> None:
    _run_crowd(100, 30)  # a tenth of the crowd: about 1 s of CPU


@pytest.mark.slow
def test_a_thousand_users_run() -> None:
    _run_crowd(1000, 100)  # about 8 s of CPU, most of it in the clients' KeyPackages


def test_the_readme_generator_example_validates() -> None:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "generate:" in b)
    head = "name: readme\nduration: 1s\nproviders: {a.example: {}, b.example: {}}\n"
    s = load_scenario_text(head + block, "README.md")
    assert s.counts() == (2, 1001, 200)
    assert all(set(r.participants) <= set(s.users) and len(r.participants) == 5 for r in s.rooms.values())
