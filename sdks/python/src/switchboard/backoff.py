"""Reconnect delays: exponential backoff with full jitter.

Full jitter (a uniform delay between zero and the exponential bound) spreads the reconnects of
many clients that lost the same server at the same instant.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Attempt ``n`` waits a uniform random time in ``[0, min(max, initial × multiplier^n)]``
    (seconds)."""

    initial: float = 0.1
    max: float = 10.0
    multiplier: float = 2.0

    def bound(self, attempt: int) -> float:
        """The upper bound of the delay before retry number ``attempt`` (0-based)."""
        try:
            value = self.initial * max(self.multiplier, 1.0) ** min(attempt, 64)
        except OverflowError:
            return self.max
        if not math.isfinite(value) or value >= self.max:
            return self.max
        return value

    def delay(self, attempt: int, unit: float | None = None) -> float:
        """The delay before retry ``attempt``; ``unit`` is a sample of ``[0, 1)`` (random when
        omitted)."""
        sample = random.random() if unit is None else min(max(unit, 0.0), 1.0)
        return self.bound(attempt) * sample
