"""Asset metadata values as people read them in the Dagster UI: durations, percentages, 4 significant digits.

The UI prints a float with every digit it has and a number of seconds as a bare number. Numbers that other steps or
commands read back (val_loss, success_rate, wall_s, episode counts) stay raw under their keys; these helpers make the
values shown beside them, or replace numbers that nothing reads back.
"""

from __future__ import annotations

import math

DIGITS = 4


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(float(value))


def significant(value: float, digits: int = DIGITS) -> float:
    """A float rounded to `digits` significant digits; still a number, so the UI can plot it across runs."""
    value = float(value)
    return float(f"{value:.{digits}g}") if math.isfinite(value) else value


def number(value: float | None, digits: int = DIGITS) -> str:
    """A float as text with `digits` significant digits ("n/a" when there is none)."""
    return f"{float(value):.{digits}g}" if _finite(value) else "n/a"


def duration(seconds: float | None) -> str:
    """'350 ms', '4.2 s', '2 min 05 s', '1 h 02 min'."""
    if not _finite(seconds) or seconds < 0:
        return "n/a"
    if seconds < 1.0:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60.0:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min"


def percent(rate: float | None) -> str:
    """A rate in [0, 1] as a percentage with up to 4 significant digits: '94%', '33.33%'."""
    return f"{100.0 * float(rate):.{DIGITS}g}%" if _finite(rate) else "n/a"


def share(part: int, whole: int) -> str:
    """'47 of 50 (94%)'."""
    return f"{part} of {whole} ({percent(part / whole) if whole else 'n/a'})"
