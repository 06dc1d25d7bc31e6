"""Quantities with units, as scenario files write them.

Why units are mandatory: a bare ``40`` in a scenario could be milliseconds or
seconds, and a wrong guess silently shifts every result by a factor of
1000. So every duration, rate, size and bandwidth in a scenario carries its
unit, and a bare number is an error (``UnitError``) unless a field says
otherwise.

The canonical internal units, fixed here once for the whole simulator:

============  =====================  =====================================
quantity      written as             parsed to
============  =====================  =====================================
duration      ``40ms`` ``2s``        milliseconds, ``float``
              ``1.5min`` ``1h``
rate          ``0.5/s`` ``30/min``   events **per second**, ``float``
              ``2/h``
size          ``512B`` ``64KiB``     bytes, ``int``
              ``1MB`` ``8kbit``
bandwidth     ``10Mbit/s``           bytes per second, ``float``
              ``1MB/s`` ``10Mbps``
============  =====================  =====================================

Rates are per second (not per millisecond) because that is how people state
and read them (``0.5/s`` stays ``0.5`` in the resolved scenario); the
simulation clock is in milliseconds, so use :func:`per_ms` (or divide by
1000) to get the Poisson intensity on the clock's scale.

Every ``format_*`` function is an exact inverse of its ``parse_*`` function
(``parse_duration(format_duration(x)) == x`` for every finite ``x``), which
is what lets a resolved scenario be dumped to JSON and validated again
unchanged.
"""

from __future__ import annotations

import math
import re

__all__ = [
    "UnitError",
    "DURATION_UNITS",
    "RATE_UNITS",
    "SIZE_UNITS",
    "parse_duration",
    "parse_rate",
    "parse_size",
    "parse_bandwidth",
    "format_duration",
    "format_rate",
    "format_size",
    "format_bandwidth",
    "per_ms",
]


class UnitError(ValueError):
    """A quantity that is malformed, lacks its unit, or is out of range.

    The message says what was expected and quotes what was given, e.g.
    ``expected a duration like '40ms' or '2s', got '40'``.
    """


#: Duration units -> milliseconds. ``m`` is deliberately absent: it reads as
#: minutes to some and metres or milli to others.
DURATION_UNITS: dict[str, float] = {
    "ns": 1e-6,
    "us": 1e-3,
    "\u00b5s": 1e-3,  # micro sign
    "\u03bcs": 1e-3,  # greek mu
    "ms": 1.0,
    "s": 1000.0,
    "sec": 1000.0,
    "min": 60_000.0,
    "h": 3_600_000.0,
    "d": 86_400_000.0,
}

#: The time unit in the denominator of a rate -> seconds.
RATE_UNITS: dict[str, float] = {
    "ms": 1e-3,
    "s": 1.0,
    "sec": 1.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}

#: Size units -> bytes. Decimal prefixes (kB, MB) are powers of 1000, binary
#: ones (KiB, MiB) powers of 1024, as in IEC 80000-13; ``bit`` units are
#: eighths of a byte.
SIZE_UNITS: dict[str, float] = {
    "B": 1,
    "kB": 1e3,
    "KB": 1e3,
    "MB": 1e6,
    "GB": 1e9,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "bit": 1 / 8,
    "kbit": 1e3 / 8,
    "Kbit": 1e3 / 8,
    "Mbit": 1e6 / 8,
    "Gbit": 1e9 / 8,
}

#: Bandwidth shorthands in bits per second -> bytes per second.
_BPS_UNITS: dict[str, float] = {
    "bps": 1 / 8,
    "kbps": 1e3 / 8,
    "Kbps": 1e3 / 8,
    "Mbps": 1e6 / 8,
    "Gbps": 1e9 / 8,
}

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_QUANTITY = re.compile(rf"^\s*({_NUMBER})\s*([A-Za-z\u00b5\u03bc]*(?:\s*/\s*[A-Za-z]+)?)\s*$")


def _split(text: object, what: str, example: str) -> tuple[float, str]:
    """Split ``'1.5 min'`` into ``(1.5, 'min')`` or raise a precise error."""
    expected = f"expected {what} like {example}"
    if isinstance(text, bool) or not isinstance(text, str):
        if isinstance(text, int | float):
            raise UnitError(f"{expected}, got '{text}' (a bare number has no unit)")
        raise UnitError(f"{expected}, got {type(text).__name__} {text!r}")
    m = _QUANTITY.match(text)
    if m is None:
        raise UnitError(f"{expected}, got '{text}'")
    if not m.group(2):
        raise UnitError(f"{expected}, got '{text}' (a bare number has no unit)")
    value = float(m.group(1))
    if not math.isfinite(value):
        raise UnitError(f"{expected}, got '{text}' (not a finite number)")
    return value, re.sub(r"\s+", "", m.group(2))


def _check_sign(value: float, text: str, what: str, allow_negative: bool) -> None:
    if value < 0 and not allow_negative:
        raise UnitError(f"{what} must not be negative, got '{text}'")


def parse_duration(text: object, *, allow_negative: bool = False) -> float:
    """``'40ms'`` -> ``40.0``; ``'1.5min'`` -> ``90000.0`` (milliseconds)."""
    value, unit = _split(text, "a duration", "'40ms' or '2s'")
    factor = DURATION_UNITS.get(unit)
    if factor is None:
        units = ", ".join(u for u in DURATION_UNITS if u.isascii())
        raise UnitError(f"unknown duration unit '{unit}' in '{text}' (units: {units})")
    _check_sign(value, str(text), "a duration", allow_negative)
    return value * factor + 0.0  # + 0.0 turns -0.0 into 0.0


def parse_rate(text: object) -> float:
    """``'0.5/s'`` -> ``0.5``; ``'30/min'`` -> ``0.5`` (events per second)."""
    value, unit = _split(text, "a rate", "'0.5/s' or '30/min'")
    if not unit.startswith("/"):
        raise UnitError(
            f"expected a rate like '0.5/s' or '30/min', got '{text}' (a rate is a count per time unit)"
        )
    seconds = RATE_UNITS.get(unit[1:])
    if seconds is None:
        raise UnitError(f"unknown rate unit '{unit}' in '{text}' (units: /ms, /s, /min, /h, /d)")
    _check_sign(value, str(text), "a rate", False)
    return value / seconds + 0.0


def parse_size(text: object) -> int:
    """``'64KiB'`` -> ``65536``; ``'1MB'`` -> ``1000000`` (bytes)."""
    value, unit = _split(text, "a size", "'512B' or '64KiB'")
    factor = SIZE_UNITS.get(unit)
    if factor is None:
        raise UnitError(f"unknown size unit '{unit}' in '{text}' (units: {', '.join(SIZE_UNITS)})")
    _check_sign(value, str(text), "a size", False)
    nbytes = value * factor
    whole = round(nbytes)
    if abs(nbytes - whole) > 1e-6 * max(1.0, abs(nbytes)):
        raise UnitError(f"a size must be a whole number of bytes, got '{text}' ({nbytes:g} bytes)")
    return int(whole)


def parse_bandwidth(text: object) -> float:
    """``'10Mbit/s'`` -> ``1250000.0``; ``'1MB/s'`` -> ``1e6`` (bytes per second)."""
    value, unit = _split(text, "a bandwidth", "'10Mbit/s' or '1MB/s'")
    if unit in _BPS_UNITS:
        factor = _BPS_UNITS[unit]
    else:
        size_unit, slash, per = unit.partition("/")
        if not slash or size_unit not in SIZE_UNITS or per not in ("s", "sec"):
            raise UnitError(
                f"expected a bandwidth like '10Mbit/s' or '1MB/s', got '{text}' "
                "(a size unit per second, or bps/kbps/Mbps/Gbps)"
            )
        factor = SIZE_UNITS[size_unit]
    _check_sign(value, str(text), "a bandwidth", False)
    return value * factor + 0.0


def _num(x: float) -> str:
    """The shortest text that reads back as exactly ``x``; integers without
    a trailing ``.0`` so that resolved scenarios stay readable."""
    if float(x).is_integer() and abs(x) < 1e16:
        return str(int(x))
    return repr(float(x))


def format_duration(ms: float) -> str:
    """Inverse of :func:`parse_duration`: milliseconds -> ``'40ms'``."""
    return f"{_num(ms)}ms"


def format_rate(per_second: float) -> str:
    """Inverse of :func:`parse_rate`: events per second -> ``'0.5/s'``."""
    return f"{_num(per_second)}/s"


def format_size(nbytes: int) -> str:
    """Inverse of :func:`parse_size`: bytes -> ``'512B'``."""
    return f"{int(nbytes)}B"


def format_bandwidth(bytes_per_second: float) -> str:
    """Inverse of :func:`parse_bandwidth`: bytes per second -> ``'1250000B/s'``."""
    return f"{_num(bytes_per_second)}B/s"


def per_ms(per_second: float) -> float:
    """A rate in events per second on the simulation clock's scale (per ms)."""
    return per_second / 1000.0
