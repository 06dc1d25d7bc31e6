"""The notebooks are committed with their outputs, and those outputs are current.

Each notebook is rebuilt from notebooks/make_notebooks.py, executed at the
small size, and its outputs compared with the committed ones: printed text,
tables (their text form) and SVG diagrams exactly; a PNG plot by its
presence (its data is the table printed beside it, compared exactly). A
mismatch means: run ``python notebooks/make_notebooks.py`` and commit.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _nbformat() -> Any:
    """nbformat, imported by the test that needs it, not at collection:
    importing it costs more than a second of CPU, paid by every pytest
    process (each xdist worker) even when the test does not run there."""
    return pytest.importorskip("nbformat")


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("make_notebooks", ROOT / "notebooks" / "make_notebooks.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _outputs(nb: Any) -> list[list[str]]:
    """What a reader sees, per code cell, in a form that must not change between runs."""
    out: list[list[str]] = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        seen: list[str] = []
        for o in cell.outputs:
            if o.output_type == "stream":
                if o.name == "stdout":
                    seen.append("stdout: " + o.text)
            elif o.output_type == "error":
                seen.append(f"error: {o.ename}: {o.evalue}")
            else:
                data = o.get("data", {})
                if "image/svg+xml" in data:
                    svg = data["image/svg+xml"]
                    seen.append("svg: " + ("".join(svg) if isinstance(svg, list) else svg))
                elif "image/png" in data:
                    seen.append("png: " + re.sub(r"at 0x[0-9a-f]+", "", data.get("text/plain", "")))
                else:
                    seen.append("text: " + re.sub(r"at 0x[0-9a-f]+", "", data.get("text/plain", "")))
        out.append(seen)
    return out


def test_notebooks_are_generated_and_committed_with_outputs() -> None:
    nbformat = _nbformat()
    gen = _generator()
    built = gen.build_all()
    assert {p.stem for p in NOTEBOOKS} == set(built), "run python notebooks/make_notebooks.py"
    assert {"teaching-flows", "teaching-faults"} <= set(built)
    for p in NOTEBOOKS:
        nb = nbformat.read(p, as_version=4)
        want = built[p.stem]
        assert [c.source for c in nb.cells] == [c.source for c in want.cells], \
            f"{p.name}: cells differ from make_notebooks.py; run python notebooks/make_notebooks.py {p.stem}"
        first = nb.cells[0].source
        assert "small size by default" in first and 'SIZE = "full"' in first, p.name
        setup = next(c.source for c in nb.cells if c.cell_type == "code")
        assert 'MIMISIM_NOTEBOOK_SIZE", "small")' in setup, p.name
        outs = _outputs(nb)
        assert all(not any(s.startswith("error:") for s in cell) for cell in outs), p.name
        assert any(s.startswith(("svg:", "png:")) for cell in outs for s in cell), f"{p.name}: no figure"


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_outputs_are_current(path: Path, tmp_path: Path) -> None:
    nbformat = _nbformat()
    pytest.importorskip("nbclient")
    gen = _generator()
    nb = gen.build_all()[path.stem]
    gen.execute(nb, tmp_path, timeout=300)
    committed = _outputs(nbformat.read(path, as_version=4))
    fresh = _outputs(nb)
    assert len(committed) == len(fresh)
    for i, (a, b) in enumerate(zip(committed, fresh, strict=True)):
        assert a == b, (f"{path.name}: code cell {i} shows something else when run today; "
                        f"run python notebooks/make_notebooks.py {path.stem}")
