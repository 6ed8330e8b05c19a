"""Label selectors as upstream writes them: `k=v,k2!=v2,k3` (all must hold)."""

from __future__ import annotations

import functools
import re

from ..wire.errors import DriverInvalidArgument

MAX_LENGTH = 4096  # characters of a selector; a lab's are tens
_KEY = re.compile(r"[A-Za-z0-9_./-]+")
_VALUE = re.compile(r"[A-Za-z0-9_./:-]*")


@functools.lru_cache(maxsize=4096)
def parse(selector: str) -> tuple[tuple[str, str, str | None], ...]:
    """((key, op, value), ...) with op one of =, !=, exists, !exists (parsed once per distinct text).

    Linear in the selector's length (no pattern that can backtrack), at most MAX_LENGTH characters;
    an error quotes the bad term, shortened."""
    selector = selector or ""
    if len(selector) > MAX_LENGTH:
        raise DriverInvalidArgument(f"label selector of {len(selector)} characters: at most {MAX_LENGTH}")
    terms = []
    for part in filter(None, (p.strip() for p in selector.split(","))):
        term = _term(part)
        if term is None:
            shown = part if len(part) <= 60 else part[:57] + "..."
            raise DriverInvalidArgument(f"invalid label selector term {shown!r} "
                                        "(expected key=value, key!=value, key or !key)")
        terms.append(term)
    return tuple(terms)


def _term(part: str) -> tuple[str, str, str | None] | None:
    for op, meaning in (("!=", "!="), ("==", "="), ("=", "=")):
        key, found, value = part.partition(op)
        if found:
            key, value = key.strip(), value.strip()
            return (key, meaning, value) if _KEY.fullmatch(key) and _VALUE.fullmatch(value) else None
    negated = part.startswith("!")
    key = part[1:].strip() if negated else part
    return (key, "!exists" if negated else "exists", None) if _KEY.fullmatch(key) else None


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
