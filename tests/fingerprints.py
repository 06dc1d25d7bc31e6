"""Behaviour fingerprints: what a refactor must not change.

For every scenario in ``scenarios/`` at its own seed, the digest of the
event sequence (time, kind, node, peer, room, epoch, msg_id, req_id, bytes,
status; not ``detail``, which is a human rendering and may be reworded) and,
for the study scenarios, the digest of the study's metric rows.

``python -m tests.fingerprints --write`` records them in
``tests/data/fingerprints.json``; ``tests/test_fingerprints.py`` compares.
A change that is *meant* to alter behaviour re-records them and says so in
its commit message.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "fingerprints.json"
COLUMNS = ("t_ms", "kind", "node", "peer", "room", "epoch", "msg_id", "req_id", "bytes", "status")


def _norm(v: object) -> object:
    """One spelling per value whatever the column's dtype: NaN/None/-1 and ''
    all mean "absent" (the typed trace uses real nulls where the first one
    wrote -1 and '')."""
    if v is None or type(v).__name__ == "NAType":  # pandas.NA: a nullable column's null
        return None
    if isinstance(v, float):
        if math.isnan(v):
            return None
        return round(v, 6)
    if hasattr(v, "item"):
        return _norm(v.item())
    if isinstance(v, int) and v == -1:
        return None
    if v == "":
        return None
    return v


def trace_digest(trace: object) -> str:
    h = hashlib.sha256()
    cols = [trace[c].tolist() for c in COLUMNS]  # type: ignore[index]
    for row in zip(*cols, strict=True):
        h.update(json.dumps([_norm(v) for v in row], default=str).encode())
        h.update(b"\n")
    return h.hexdigest()


def rows_digest(rows: list[dict]) -> str:
    canon = [{k: _norm(v) for k, v in sorted(r.items())} for r in rows]
    return hashlib.sha256(json.dumps(canon, default=str, sort_keys=True).encode()).hexdigest()


@functools.cache
def run(path: Path) -> tuple[Any, Any]:
    """``(scenario, RunResult)`` of one scenario file at its own seed, once
    per test session (tests/test_trace_schema.py reads the same runs)."""
    import mimisim
    from mimisim.sim.scenario import load_scenario

    scn = load_scenario(path)
    return scn, mimisim.run(scn, out=False, progress=False)


def fingerprint(path: Path) -> dict[str, object]:
    from mimisim.analysis.studies import SCENARIO_STUDY, STUDIES

    scn, res = run(path)
    out: dict[str, object] = {"events": len(res.trace), "trace": trace_digest(res.trace)}
    study = SCENARIO_STUDY.get(scn.name)
    if study:
        out["study"] = study
        out["study_rows"] = rows_digest(STUDIES[study].rows(res.trace, scn))
    return out


def compute() -> dict[str, dict[str, object]]:
    return {p.name: fingerprint(p) for p in sorted((ROOT / "scenarios").glob("*.yaml"))}


if __name__ == "__main__":
    fps = compute()
    if "--write" in sys.argv:
        DATA.write_text(json.dumps(fps, indent=2, sort_keys=True) + "\n")
    print(json.dumps(fps, indent=2, sort_keys=True))
