"""Every official vector file through the same runner ``mimisim vectors`` uses,
and the group-level and tree files case by case (welcome, passive clients,
messages, tree validation, TreeKEM). The case-by-case tests of files the
runner checks read its one run per process (``tests/vectors.py``); they live
in this file so that under xdist (``--dist loadfile``) that run is not
repeated on another worker."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import SupportsIndex

import pytest

from mimisim import cli
from mimisim.codec import DecodeError, Reader
from mimisim.mls import vectors as vectors_mod
from mimisim.mls import vectors_group
from mimisim.mls.errors import MLSError
from mimisim.mls.vectors import checkers, run_directory
from tests.vectors import VECTORS, case_failure, load, needs_vectors, run_file_once

EXPECTED_FILES = {
    "crypto-basics.json", "deserialization.json", "key-schedule.json", "message-protection.json",
    "messages.json", "passive-client-handling-commit.json", "passive-client-welcome.json", "psk_secret.json",
    "secret-tree.json", "transcript-hashes.json", "tree-math.json", "tree-operations.json",
    "tree-validation.json", "treekem.json", "welcome.json",
}


@needs_vectors
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
    # Checked once by the shared run of the official files (tests/vectors.py).
    assert case_failure(name, index) is None, case_failure(name, index)


VALIDATION = load("tree-validation.json")
TREEKEM = load("treekem.json")


@pytest.mark.parametrize(
    "index", range(len(VALIDATION)), ids=[f"s{c['cipher_suite']}-{i}" for i, c in enumerate(VALIDATION)]
)
def test_tree_validation_vector(index: int) -> None:
    # check_tree_validation on the case, run once for the session and shared with the runner tests
    assert case_failure("tree-validation.json", index) is None, case_failure("tree-validation.json", index)


@pytest.mark.parametrize("index", range(len(TREEKEM)), ids=[f"s{c['cipher_suite']}-{i}" for i, c in enumerate(TREEKEM)])
def test_treekem_vector(index: int) -> None:
    # check_treekem on the case, run once for the session and shared with the runner tests
    assert case_failure("treekem.json", index) is None, case_failure("treekem.json", index)


@needs_vectors
def test_passive_client_detects_wrong_authenticator() -> None:
    case = dict(load("passive-client-welcome.json")[0])
    case["initial_epoch_authenticator"] = "00" * 32
    with pytest.raises(AssertionError):
        vectors_group.check_passive_client(case)


@needs_vectors
def test_messages_round_trip() -> None:
    for case in load("messages.json"):
        vectors_group.check_messages(case)


def _all_message_bytes() -> list[tuple[str, type, bytes]]:
    out = []
    for case in load("messages.json"):
        for field, (cls, _) in vectors_group.MESSAGE_FIELDS.items():
            out.append((field, cls, bytes.fromhex(case[field])))
    return out


def _truncations(cls: type, raw: bytes, points: Iterable[int]) -> None:
    for n in points:
        with pytest.raises(DecodeError):
            cls.decode(raw[:n])


class _FieldMarks(list[str]):
    """A Reader path that notes the reader's position whenever a field (at
    any depth: struct fields, vector items, the top-level struct) starts or
    ends; those positions are the field boundaries of the encoding."""

    def __init__(self, reader: Reader) -> None:
        super().__init__()
        self.reader = reader
        self.marks = {0, len(reader.data)}

    def append(self, item: str) -> None:
        self.marks.add(self.reader.pos)
        super().append(item)

    def pop(self, index: SupportsIndex = -1) -> str:
        self.marks.add(self.reader.pos)
        return super().pop(index)


def _truncation_points(cls: type, raw: bytes, r: random.Random, extra: int) -> set[int]:
    """Every field boundary of ``raw`` and the positions either side of it
    (cut just before, at, and just after the start and end of every field and
    length prefix), plus ``extra`` deterministic random cut points."""
    reader = Reader(raw)
    marks = _FieldMarks(reader)
    reader.path = marks
    cls.decode_prefix(reader)
    assert reader.pos == len(raw)
    points = {p for m in marks.marks for p in (m - 1, m, m + 1) if 0 <= p < len(raw)}
    points.update(r.randrange(len(raw)) for _ in range(extra))
    return points


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


@needs_vectors
def test_messages_bad_input_bit_flips() -> None:
    """Eight random bit flips of every message: DecodeError or a clean decode, never another exception."""
    r = random.Random(0)
    for _field, cls, raw in _all_message_bytes():
        _bit_flips(cls, raw, r, 8)


@needs_vectors
def test_messages_bad_input_truncations() -> None:
    """Truncations of every message in messages.json are DecodeErrors: at every
    field boundary (and one byte either side) plus 8 random points each."""
    r = random.Random(0)
    for _field, cls, raw in _all_message_bytes():
        _truncations(cls, raw, sorted(_truncation_points(cls, raw, r, 8)))


@pytest.mark.slow
@needs_vectors
def test_messages_bad_input_every_truncation() -> None:
    """Every truncation of every message in messages.json is a DecodeError."""
    for _field, cls, raw in _all_message_bytes():
        _truncations(cls, raw, range(len(raw)))


@needs_vectors
def test_runner_reports_all_pass() -> None:
    report = run_directory(VECTORS, run=run_file_once)
    assert report.ok, json.dumps(report.to_json(), indent=1)[:4000]
    assert not report.unrecognised
    assert {f.name for f in report.files} >= EXPECTED_FILES
    suites = {s for f in report.files for s in f.passed}
    assert {1, 2, 3, 4, 5, 6, 7} <= suites


@needs_vectors
def test_cli_json_and_exit_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    # The command over the official files, in process; each official file's
    # cases are run once per session (tests/vectors.py), the report is real.
    monkeypatch.setattr(vectors_mod, "run_file", run_file_once)
    assert cli.main(["vectors", str(VECTORS), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] and data["files"]
    assert data == run_directory(VECTORS, run=run_file_once).to_json()
    monkeypatch.undo()
    # A corrupted vector file makes the command fail with status 1.
    bad = json.loads((VECTORS / "tree-math.json").read_text())
    bad[0]["root"] += 1
    (tmp_path / "tree-math.json").write_text(json.dumps(bad))
    assert cli.main(["vectors", str(tmp_path)]) == 1
    assert "FAILED" in capsys.readouterr().out
    # No vector files: status 2, from a real process (the exit status is the return value of main).
    empty = tmp_path / "empty"
    empty.mkdir()
    out = subprocess.run([sys.executable, "-m", "mimisim.cli", "vectors", str(empty)], capture_output=True, text=True)
    assert out.returncode == 2
