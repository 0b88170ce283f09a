"""Small helpers to turn timings into figures and figures into text."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence


def per_second(count: int, seconds: float) -> float:
    """A rate; infinite when no time could be measured."""
    return count / seconds if seconds > 0 else math.inf


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value below which `fraction` of the values lie (nearest rank)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def rate_text(rate: float, unit: str = "/s") -> str:
    """A rate such as 1,234/s."""
    return f"{rate:,.0f}{unit}"


def ratio_text(ratio: float) -> str:
    """A ratio such as 0.42."""
    return f"{ratio:.2f}"


def ms_text(seconds: float) -> str:
    """A duration in milliseconds such as 3.1 ms."""
    return f"{seconds * 1000:,.1f} ms"


def us_text(seconds: float) -> str:
    """A duration in microseconds such as 85 µs."""
    return f"{seconds * 1e6:,.0f} µs"
