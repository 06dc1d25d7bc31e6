"""Every official vector file through the same runner ``mimisim vectors`` uses,
and the group-level files case by case (welcome, passive clients, messages)."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from mimisim.codec import DecodeError
from mimisim.mls import vectors_group
from mimisim.mls.errors import MLSError
from mimisim.mls.vectors import checkers, run_directory
from tests.vectors import VECTORS, load

EXPECTED_FILES = {
    "crypto-basics.json", "deserialization.json", "key-schedule.json", "message-protection.json",
    "messages.json", "passive-client-handling-commit.json", "passive-client-welcome.json", "psk_secret.json",
    "secret-tree.json", "transcript-hashes.json", "tree-math.json", "tree-operations.json",
    "tree-validation.json", "treekem.json", "welcome.json",
}


def test_every_shared_vector_file_is_recognised() -> None:
    present = {p.name for p in VECTORS.glob("*.json")}
    assert EXPECTED_FILES <= present
    assert present <= set(checkers()), f"unrecognised: {present - set(checkers())}"


@pytest.mark.parametrize("case", load("welcome.json"), ids=lambda c: f"suite{c['cipher_suite']}")
def test_welcome(case: dict) -> None:
    vectors_group.check_welcome(case)


@pytest.mark.parametrize(
    "name,index",
    [(n, i) for n in ("passive-client-welcome.json", "passive-client-handling-commit.json") for i in range(len(load(n)))],
)
def test_passive_client_both_directions(name: str, index: int) -> None:
    vectors_group.check_passive_client(load(name)[index])


def test_passive_client_detects_wrong_authenticator() -> None:
    case = dict(load("passive-client-welcome.json")[0])
    case["initial_epoch_authenticator"] = "00" * 32
    with pytest.raises(AssertionError):
        vectors_group.check_passive_client(case)


def test_messages_round_trip() -> None:
    for case in load("messages.json"):
        vectors_group.check_messages(case)


def _all_message_bytes() -> list[tuple[str, type, bytes]]:
    out = []
    for case in load("messages.json"):
        for field, (cls, _) in vectors_group.MESSAGE_FIELDS.items():
            out.append((field, cls, bytes.fromhex(case[field])))
    return out


def _truncations(cls: type, raw: bytes) -> None:
    for n in range(len(raw)):
        with pytest.raises(DecodeError):
            cls.decode(raw[:n])


def _bit_flips(cls: type, raw: bytes, r: random.Random, count: int) -> None:
    for _ in range(count):
        b = bytearray(raw)
        i = r.randrange(len(b))
        b[i] ^= 1 << r.randrange(8)
        try:
            obj = cls.decode(bytes(b))
        except (DecodeError, MLSError):
            continue
        assert obj.encode() == bytes(b)  # decoding is canonical: what decodes re-encodes exactly


def test_messages_bad_input_bit_flips() -> None:
    """Eight random bit flips of every message: DecodeError or a clean decode, never another exception."""
    r = random.Random(0)
    for _field, cls, raw in _all_message_bytes():
        _bit_flips(cls, raw, r, 8)


def test_messages_bad_input_every_truncation() -> None:
    """Every truncation of every message in messages.json is a DecodeError."""
    for _field, cls, raw in _all_message_bytes():
        _truncations(cls, raw)


def test_runner_reports_all_pass() -> None:
    report = run_directory(VECTORS)
    assert report.ok, json.dumps(report.to_json(), indent=1)[:4000]
    suites = {s for f in report.files for s in f.passed}
    assert {1, 2, 3, 4, 5, 6, 7} <= suites


def test_cli_json_and_exit_status(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = subprocess.run(
        [sys.executable, "-m", "mimisim.cli", "vectors", str(VECTORS), "--json"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["ok"] and data["files"]
    # A corrupted vector file makes it fail with status 1.
    bad = json.loads((VECTORS / "tree-math.json").read_text())
    bad[0]["root"] += 1
    (tmp_path / "tree-math.json").write_text(json.dumps(bad))
    out = subprocess.run([sys.executable, "-m", "mimisim.cli", "vectors", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 1 and "FAILED" in out.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    out = subprocess.run([sys.executable, "-m", "mimisim.cli", "vectors", str(empty)], capture_output=True, text=True)
    assert out.returncode == 2
