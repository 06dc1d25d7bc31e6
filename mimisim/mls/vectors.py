"""Run the official RFC 9420 interoperability vectors (mlswg/mls-implementations).

The runner knows each file by its name, runs every case through the matching
checker and counts passes and failures per file and cipher suite. Implementers
use it through ``mimisim vectors DIR``; the test suite uses the same checkers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Checker = Callable[[Mapping[str, Any]], None]


def checkers() -> dict[str, Checker]:
    """File name -> checker, for every vector file this core understands."""
    from mimisim.mls import vectors_basic, vectors_framing, vectors_group, vectors_tree

    table: dict[str, Checker] = {}
    table.update(vectors_basic.CHECKERS)
    table.update(
        {
            "crypto-basics.json": _crypto_basics,
            "message-protection.json": vectors_framing.check_message_protection,
            "transcript-hashes.json": vectors_framing.check_transcript_hashes,
            "tree-validation.json": vectors_tree.check_tree_validation,
            "tree-operations.json": vectors_tree.check_tree_operations,
            "treekem.json": vectors_tree.check_treekem,
        }
    )
    table.update(vectors_group.CHECKERS)
    return table


def _crypto_basics(case: Mapping[str, Any]) -> None:
    from mimisim.mls.vectors_crypto import check_crypto_basics

    check_crypto_basics(case)


@dataclass
class FileResult:
    name: str
    passed: dict[int, int] = field(default_factory=dict)  # suite -> count
    failed: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    failed_cases: dict[int, str] = field(default_factory=dict)  # case index -> why it failed

    @property
    def total_passed(self) -> int:
        return sum(self.passed.values())

    @property
    def total_failed(self) -> int:
        return sum(self.failed.values())


@dataclass
class VectorReport:
    files: list[FileResult]
    unrecognised: list[str]

    @property
    def ok(self) -> bool:
        return bool(self.files) and all(f.total_failed == 0 for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "files": [
                {
                    "file": f.name,
                    "passed": f.total_passed,
                    "failed": f.total_failed,
                    "by_suite": {
                        str(s): {"passed": f.passed.get(s, 0), "failed": f.failed.get(s, 0)}
                        for s in sorted(set(f.passed) | set(f.failed))
                    },
                    "failures": f.failures[:20],
                }
                for f in self.files
            ],
            "unrecognised": self.unrecognised,
        }


def run_file(path: Path, checker: Checker) -> FileResult:
    cases = json.loads(path.read_text())
    res = FileResult(path.name)
    for i, case in enumerate(cases):
        suite = int(case.get("cipher_suite", 0)) if isinstance(case, dict) else 0
        try:
            checker(case)
        except Exception as e:  # noqa: BLE001 - a failing case is reported, never fatal
            res.failed[suite] = res.failed.get(suite, 0) + 1
            res.failures.append(f"case {i} (suite {suite}): {type(e).__name__}: {e}")
            res.failed_cases[i] = f"{type(e).__name__}: {e}"
        else:
            res.passed[suite] = res.passed.get(suite, 0) + 1
    return res


def run_directory(
    directory: Path,
    progress: Callable[[str], None] | None = None,
    run: Callable[[Path, Checker], FileResult] | None = None,
) -> VectorReport:
    """Run every recognised file of ``directory``; ``run`` replaces :func:`run_file`
    (the test suite passes one that runs each official file once per session)."""
    run_one = run_file if run is None else run
    table = checkers()
    files: list[FileResult] = []
    unrecognised: list[str] = []
    for path in sorted(directory.glob("*.json")):
        checker = table.get(path.name)
        if checker is None:
            unrecognised.append(path.name)
            continue
        if progress:
            progress(path.name)
        files.append(run_one(path, checker))
    return VectorReport(files, unrecognised)


def format_report(report: VectorReport) -> str:
    lines = [f"{'file':38} {'suite':>5} {'passed':>7} {'failed':>7}"]
    for f in report.files:
        for s in sorted(set(f.passed) | set(f.failed)):
            lines.append(f"{f.name:38} {s or '-':>5} {f.passed.get(s, 0):>7} {f.failed.get(s, 0):>7}")
    total_p = sum(f.total_passed for f in report.files)
    total_f = sum(f.total_failed for f in report.files)
    lines.append(f"{'TOTAL':38} {'':>5} {total_p:>7} {total_f:>7}")
    for f in report.files:
        for msg in f.failures[:5]:
            lines.append(f"FAIL {f.name}: {msg}")
    if report.unrecognised:
        lines.append("not recognised (skipped): " + ", ".join(report.unrecognised))
    lines.append("OK" if report.ok else "FAILED")
    return "\n".join(lines)
