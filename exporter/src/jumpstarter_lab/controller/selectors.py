"""Label selectors as upstream writes them: `k=v,k2!=v2,k3` (all must hold)."""

from __future__ import annotations

import functools
import re

from ..wire.errors import DriverInvalidArgument

_TERM = re.compile(r"^\s*(!?)([A-Za-z0-9_./-]+)\s*(?:(==|=|!=)\s*([A-Za-z0-9_./:-]*))?\s*$")


@functools.lru_cache(maxsize=4096)
def parse(selector: str) -> tuple[tuple[str, str, str | None], ...]:
    """((key, op, value), ...) with op one of =, !=, exists, !exists (parsed once per distinct text)."""
    terms = []
    for part in filter(None, (p.strip() for p in (selector or "").split(","))):
        match = _TERM.match(part)
        if not match:
            raise DriverInvalidArgument(f"invalid label selector term '{part}' (expected key=value, key!=value or key)")
        negated, key, op, value = match.groups()
        if op is None:
            terms.append((key, "!exists" if negated else "exists", None))
        else:
            terms.append((key, "!=" if op == "!=" else "=", value))
    return tuple(terms)


def matches(selector: str, labels: dict[str, str]) -> bool:
    for key, op, value in parse(selector):
        if op == "=" and labels.get(key) != value:
            return False
        if op == "!=" and labels.get(key) == value:
            return False
        if op == "exists" and key not in labels:
            return False
        if op == "!exists" and key in labels:
            return False
    return True
