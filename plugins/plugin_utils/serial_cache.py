# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""Long lines of a command's input crossing the console once: the board keeps them in a cache and is
asked which it has; the controller keeps a copy of the lines it sent (SENT_LINES), so that a new
version of one (Ansible zips a module anew on every run: the same code, new timestamps) crosses as
the blocks that differ from the old."""

from __future__ import annotations

import os
import secrets

from ansible_collections.jumpstarter.lab.plugins.plugin_utils.serial_console import ConsoleTimeout, SerialConsole
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.serial_markers import CACHED, split_marker

CACHED_LINE = (16 * 1024, 1024 * 1024)  # lengths of an input's lines kept in the board's cache
CACHE_ENTRIES = 32  # lines the board's cache keeps, the newest
CACHED_PER_INPUT = 16  # at most, so that the question to the board stays a short line
PATCH_BLOCK = 64  # bytes compared at a time; a differing block crosses whole
PATCH_GAP = 2  # blocks alike between two that differ which cross too: one patch (one `dd` on the board) fewer

try:  # Ansible's home (ANSIBLE_HOME, ansible.cfg [defaults] home)
    from ansible import constants as _ansible_constants
    _ANSIBLE_HOME = _ansible_constants.ANSIBLE_HOME
except ImportError:  # used without Ansible (the benchmark)
    _ANSIBLE_HOME = os.environ.get("ANSIBLE_HOME", "~/.ansible")

# The controller's copy of the lines it sent to boards: the bases that later versions are sent against.
SENT_LINES = os.path.join(os.path.expanduser(_ANSIBLE_HOME), "jumpstarter-lines")


def cache_dir(tmpdir: str) -> str:
    """The board's cache, as shell text: one per user, under the shell's temp directory (the uid asked once
    per shell: each `id` is a process, ~20 ms on a TCG guest, and the text is used several times a command)."""
    return f"{tmpdir}/.jl-cache-${{__jl_uid:=$(id -u)}}"


def segments(data: bytes) -> list[tuple[bytes, bool]]:
    """`data` cut into (piece, cacheable): lines of a length worth caching alone, what lies between together."""
    pieces: list[tuple[bytes, bool]] = []
    start = position = 0
    cacheable = 0
    while len(data) >= CACHED_LINE[0] and position < len(data):
        end = data.find(b"\n", position) + 1 or len(data)
        if CACHED_LINE[0] <= end - position <= CACHED_LINE[1] and cacheable < CACHED_PER_INPUT:
            cacheable += 1
            if position > start:
                pieces.append((data[start:position], False))
            pieces.append((data[position:end], True))
            start = end
        position = end
    if start < len(data) or not pieces:
        pieces.append((data[start:], False))
    return pieces


def ask(console: SerialConsole, cache: str, digests: list[str]) -> set[str]:
    """Which of `digests` the board's cache holds intact (none, should its answer not come)."""
    token = secrets.token_hex(6)
    names = " ".join(digests)
    # One sha256sum for all the entries (each process costs ~20 ms on a TCG guest); an entry is named by its sum.
    console.send(f"(mkdir -p -m 700 {cache} 2>/dev/null; {{ cd {cache} && sha256sum {names}; }} 2>/dev/null | "
                 f"{{ ok=' '; while read -r s n; do [ \"$s\" = \"$n\" ] && ok=\"$ok$n \"; done; b=; for h in {names}; do "
                 f"case \"$ok\" in *\" $h \"*) b=${{b}}1;; *) b=${{b}}0;; esac; done; "
                 f"printf '{split_marker(CACHED)}:{token}:%s\\n' \"$b\" \"$b\"; }})\n")  # twice: console noise may cut one
    try:
        _name, match = console.expect({"cache": rb"^" + CACHED.encode() + b":" + token.encode() + rb":([01]*)\n"}, 15,
                                      "the board's cache")
    except ConsoleTimeout:
        return set()
    bits = match.group(1).decode()
    return {digest for digest, bit in zip(digests, bits) if bit == "1"} if len(bits) == len(digests) else set()


def trim(cache: str) -> str:
    """Shell text keeping the newest entries of the board's cache only (counted by the shell: the processes that
    remove the oldest run only when there are too many)."""
    return (f"set -- {cache}/*; [ $# -le {CACHE_ENTRIES} ] || "
            f"(cd {cache} && ls -t | tail -n +{CACHE_ENTRIES + 1} | xargs rm -f)\n")


def remember(segment: bytes, digest: str) -> None:
    """Keep `segment` (a cacheable line sent to a board) as a base for its next version."""
    try:
        os.makedirs(SENT_LINES, mode=0o700, exist_ok=True)
        path = os.path.join(SENT_LINES, digest)
        if not os.path.exists(path):
            with open(path + ".part", "wb") as f:
                f.write(segment)
            os.replace(path + ".part", path)
        os.utime(path)
        entries = sorted(os.scandir(SENT_LINES), key=lambda e: e.stat().st_mtime, reverse=True)
        for old in entries[CACHE_ENTRIES:]:
            os.unlink(old.path)
    except OSError:
        pass  # a cache only: without it, lines cross whole


def similar(segment: bytes, digest: str) -> tuple[str, list[tuple[int, bytes]]] | None:
    """(digest of a remembered line of the same length, the blocks where `segment` differs from it),
    for the remembered line that needs the fewest; None when none differs in under a quarter, or
    when `segment` itself (its sha256 `digest`) was sent before: the board has it or needs it whole."""
    if os.path.exists(os.path.join(SENT_LINES, digest)):
        return None
    best = None
    try:
        entries = [e for e in os.scandir(SENT_LINES) if e.is_file() and e.stat().st_size == len(segment)]
    except OSError:
        return None
    for entry in entries:
        try:
            with open(entry.path, "rb") as f:
                base = f.read()
        except OSError:
            continue
        patches: list[tuple[int, bytes]] = []
        for offset in range(0, len(segment), PATCH_BLOCK):
            block = segment[offset:offset + PATCH_BLOCK]
            if block != base[offset:offset + PATCH_BLOCK]:
                if patches and offset - (patches[-1][0] + len(patches[-1][1])) <= PATCH_GAP * PATCH_BLOCK:
                    patches[-1] = (patches[-1][0], segment[patches[-1][0]:offset + PATCH_BLOCK])
                else:
                    patches.append((offset, block))
        size = sum(len(block) for _offset, block in patches)
        if size < len(segment) // 4 and (best is None or size < best[0]):
            best = (size, entry.name, patches)
    return (best[1], best[2]) if best else None
