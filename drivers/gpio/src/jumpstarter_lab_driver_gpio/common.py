from __future__ import annotations

from enum import Enum


class PinState(Enum):
    """A line's logical level (after active_low), as upstream's client reads it."""

    ACTIVE = 1
    INACTIVE = 0

    def __str__(self) -> str:
        return self.name.lower()
