"""Where the official MLS vectors are: ../shared/vectors/mls, or $MIMISIM_VECTORS."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

VECTORS = Path(os.environ.get("MIMISIM_VECTORS") or Path(__file__).resolve().parents[1].parent / "shared" / "vectors" / "mls")


@cache
def load(name: str) -> list[Any]:
    return json.loads((VECTORS / name).read_text())  # type: ignore[no-any-return]
