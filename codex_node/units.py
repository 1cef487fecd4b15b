"""Sizes and durations as operators write them (``20GiB``, ``500MB``, ``30d``, ``1h30m``) and as logs show them.

Pure functions, no I/O. Parsing raises :class:`ValueError` with a message that says what is accepted; callers
turn it into their own error type (the configuration names the flag, the API answers 400).

Sizes: a number of bytes, optionally with a unit. ``KB``/``MB``/``GB``/``TB``/``PB`` are decimal (1000ⁿ),
``KiB``/``MiB``/``GiB``/``TiB``/``PiB`` binary (1024ⁿ), ``B`` is bytes; units are case-insensitive and may
follow a space. Fractions are allowed (``1.5GiB``) and rounded down to whole bytes. A bare ``K``/``M``/``G`` is
refused because tools disagree on whether it means 1000 or 1024.

Durations: whole seconds, or one or more ``<integer><unit>`` parts with units ``s``, ``m``, ``h``, ``d``, ``w``
(``30d``, ``10m``, ``1h30m``). Results are whole seconds because every clock of the node counts whole seconds.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "pb": 1000**5,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
    "pib": 1024**5,
}
_SIZE_RE = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?|\.\d+)\s*(?P<unit>[a-z]*)\s*$", re.IGNORECASE)

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_PART_RE = re.compile(r"(\d+)([smhdw])")

_BINARY_NAMES = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def parse_size(text: str) -> int:
    """``"20GiB"`` → ``21474836480``; ``"500MB"`` → ``500000000``; ``"4096"`` → ``4096``."""
    m = _SIZE_RE.match(text)
    if m is None:
        raise ValueError(f"'{text}' is not a size (examples: 20GiB, 500MB, 1048576)")
    unit = m["unit"].lower()
    if unit not in _SIZE_UNITS:
        raise ValueError(
            f"'{text}' has an unknown unit '{m['unit']}' (use B, KB, MB, GB, TB, PB, KiB, MiB, GiB, TiB or PiB)"
        )
    try:
        number = Decimal(m["number"])
    except InvalidOperation as e:  # the regex admits only decimal numbers; kept for safety
        raise ValueError(f"'{text}' is not a size") from e
    return int(number * _SIZE_UNITS[unit])


def parse_duration(text: str) -> int:
    """``"30d"`` → ``2592000``; ``"1h30m"`` → ``5400``; ``"45"`` → ``45`` (seconds)."""
    s = text.strip().lower()
    if s.isdecimal():
        return int(s)
    parts = _DURATION_PART_RE.findall(s)
    if not s or "".join(n + u for n, u in parts) != s:
        raise ValueError(f"'{text}' is not a duration (examples: 30d, 1h, 10m, 1h30m, 10s, or plain seconds)")
    return sum(int(n) * _DURATION_UNITS[u] for n, u in parts)


def format_size(n: int) -> str:
    """Compact binary size: ``65536`` → ``64KiB``, ``1572864`` → ``1.5MiB``, ``100`` → ``100B``.

    Exact multiples are shown without a fraction; others with one decimal (rounded), so logs stay short.
    """
    sign = "-" if n < 0 else ""
    value = abs(n)
    unit = 0
    while value >= 1024 ** (unit + 1) and unit < len(_BINARY_NAMES) - 1:
        unit += 1
    if unit == 0:
        return f"{sign}{value}B"
    scaled = value / 1024**unit
    if value % 1024**unit == 0:
        return f"{sign}{value // 1024**unit}{_BINARY_NAMES[unit]}"
    return f"{sign}{scaled:.1f}{_BINARY_NAMES[unit]}"


def format_duration(seconds: int) -> str:
    """The shortest exact spelling that :func:`parse_duration` reads back: ``2592000`` → ``30d``, ``90`` → ``1m30s``."""
    if seconds == 0:
        return "0s"
    out = []
    rest = seconds
    for unit, size in sorted(_DURATION_UNITS.items(), key=lambda kv: -kv[1]):
        if unit == "w":
            continue  # "30d" reads better than "4w2d"
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(out)
