# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""Data for the board as shell text typed to its console: base64 lines the tty takes whole (gzip-
compressed when that pays), decoded by a `head` that reads exactly them, so the shell never parses
the data; long lines of an input taken from the board's cache (serial_cache)."""

from __future__ import annotations

import base64
import gzip
import hashlib

from ansible_collections.jumpstarter.lab.plugins.plugin_utils import serial_cache
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.serial_console import SerialConsole
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.serial_markers import PATCH_END, working

LINE = 4000  # base64 characters per line typed to the board: under the tty's canonical limit of 4095


def encode(data: bytes) -> tuple[str, str]:
    """`data` as base64 in lines the tty takes whole (gzip-compressed when that pays), and the shell
    command that decodes it."""
    packed = gzip.compress(data, 6, mtime=0)
    compressed = len(packed) < len(data) * 0.9
    text = base64.b64encode(packed if compressed else data).decode()
    lines = "".join(text[i:i + LINE] + "\n" for i in range(0, len(text), LINE))
    return lines, "base64 -d | gunzip -c" if compressed else "base64 -d"


def sums_to(summed: str, digest: str) -> str:
    """Shell text, a condition: the sha256sum printed by the command `summed` is `digest` (read by the shell: no
    `cut`, a process more on the board; a command that fails prints nothing, which is no match)."""
    return f'{{ {summed}; }} 2>/dev/null | {{ read -r __jl_h _; [ "$__jl_h" = {digest} ]; }}'


PRINTED = 2048  # inputs up to this size (a command, a module's arguments) are written by the shell's printf


def printf_text(data: bytes, target: str) -> str:
    """Shell text writing `data` to `target` with printf, a builtin: no process on the board (a `head` and a
    decoder cost ~40 ms on a TCG guest, for every command). Only printable ASCII is typed, every other byte
    and the format's own specials as an octal escape, in lines under the tty's limit."""
    pieces = [chr(b) if 0x20 <= b < 0x7F and b not in b"'\\%" else f"\\{b:03o}" for b in data]
    lines, line, room = [], "", LINE - len(target) - 20
    for piece in pieces:
        if len(line) + len(piece) > room:
            lines.append(line)
            line = ""
        line += piece
    lines.append(line)
    return "".join(f"printf '{text}' {'>' if index == 0 else '>>'} {target}\n" for index, text in enumerate(lines))


def write_text(console: SerialConsole, tmpdir: str, data: bytes, target: str) -> str:
    """Shell text that writes `data` to `target`: `head` reads exactly the base64 that follows
    the line, so the shell never parses it (gzip-compressed on the wire when that pays). Should
    the decoder stop early (a full disk), `cat` reads the rest: it never reaches the shell.

    Long lines of a large input (the zipped code of an Ansible module, the same in every task
    that runs the module) are kept in a cache on the board and not sent again: the board is
    asked which it has (on `console`, at once), and the file put together is checked against
    the input's sha256. Each step of putting it together ends with the board printing WORKING,
    so a slow board is told from a stuck one by its silence, not by a clock.
    """
    segments = serial_cache.segments(data)
    if len(segments) == 1 and not segments[0][1]:
        if len(data) <= PRINTED and len(printed := printf_text(data, target)) <= len(data) * 4 // 3 + 100:
            return printed  # mostly text: as short as base64 (binary, escaped, would be up to 4x longer)
        encoded, decode = encode(data)
        return f"head -c {len(encoded)} | {{ {decode} > {target}; cat > /dev/null; }}\n{encoded}"
    cache = serial_cache.cache_dir(tmpdir)
    wanted = [hashlib.sha256(segment).hexdigest() for segment, cacheable in segments if cacheable]
    # A line the board lacks may differ from one it has in a few bytes only (Ansible zips a
    # module anew on every run: the same code, new timestamps): then only those bytes cross.
    bases = {digest: base for digest, (segment, cacheable) in zip(wanted, [s for s in segments if s[1]])
             if (base := serial_cache.similar(segment, digest))}
    have = serial_cache.ask(console, cache, wanted + [base[0] for base in bases.values()])
    text, stored = f": > {target}\n", False
    for segment, cacheable in segments:
        digest = hashlib.sha256(segment).hexdigest() if cacheable else ""
        if cacheable:
            serial_cache.remember(segment, digest)
        if digest in have:
            text += f"cat {cache}/{digest} >> {target}; {working()}\n"
            continue
        if digest in bases and bases[digest][0] in have:
            base, patches = bases[digest]
            text += patch_text(f"{cache}/{base}", f"{cache}/{digest}", patches)
            text += f"cat {cache}/{digest} >> {target}; {working()}\n"
            stored = True
            continue
        encoded, decode = encode(segment)
        if cacheable:
            entry, stored = f"{cache}/{digest}", True
            text += (f"head -c {len(encoded)} | {{ {decode} | tee {entry}.part >> {target}; cat > /dev/null; }}; "
                     f"mv -f {entry}.part {entry} 2>/dev/null; {working()}\n{encoded}")
        else:
            text += f"head -c {len(encoded)} | {{ {decode} >> {target}; cat > /dev/null; }}; {working()}\n{encoded}"
    # A damaged or tampered entry: start the cache afresh, and no input file rather than a wrong one.
    text += f"{sums_to(f'sha256sum < {target}', hashlib.sha256(data).hexdigest())} || rm -f {cache}/* {target}\n"
    if stored:
        text += serial_cache.trim(cache)
    return text


# Applies every patch in one process: a `dd` a patch costs ~20 ms each on a TCG guest, ~50 of them for a module's
# zip from one Ansible run to the next. Read as `python3 -c` argv: base, differing blocks, result; places on stdin.
_PATCHER = ("import sys\\nbase, blocks, out = sys.argv[1:4]\\ndata = bytearray(open(base, 'rb').read())\\n"
            "new = open(blocks, 'rb').read()\\nk = 0\\nfor line in sys.stdin:\\n    o, n = map(int, line.split())\\n"
            "    piece = new[k * {block}:(k + n) * {block}]\\n    data[o * {block}:o * {block} + len(piece)] = piece\\n"
            "    k += n\\nopen(out, 'wb').write(data)\\n").replace("'", '\\"')


def patch_text(base: str, entry: str, patches: list[tuple[int, bytes]]) -> str:
    """Shell text making `entry` from `base` with the blocks that differ (serial_cache.similar): their
    bytes cross as one encoded file and land at their places in one python3 process, or, on a board
    without python3 (or should it fail), with one `dd` of whole PATCH_BLOCKs each (the last block of a
    line may be short: dd writes the short read as it is). The file put together is checked against
    the input's sha256 as a whole, as any cached line is."""
    block = serial_cache.PATCH_BLOCK
    encoded, decode = encode(b"".join(data for _offset, data in patches))
    places = "".join(f"{offset // block} {-(-len(data) // block)}\n" for offset, data in patches)
    patcher = _PATCHER.format(block=block)
    return (f"__jl_e={entry}; head -c {len(encoded)} | {{ {decode} > \"$__jl_e.d\"; cat > /dev/null; }}; {working()}\n"
            f"{encoded}{{ python3 -c 'exec(\"{patcher}\")' {base} \"$__jl_e.d\" \"$__jl_e.part\" 2>/dev/null || "
            f"{{ cp {base} \"$__jl_e.part\" && __jl_k=0 && while read -r __jl_o __jl_n; do "
            f"dd if=\"$__jl_e.d\" of=\"$__jl_e.part\" bs={block} skip=$__jl_k seek=$__jl_o count=$__jl_n conv=notrunc "
            f"2>/dev/null; __jl_k=$((__jl_k + __jl_n)); {working()}; done; }}; }} "
            f"<<'{PATCH_END}'\n{places}{PATCH_END}\n"
            f"{working()}; mv -f \"$__jl_e.part\" {entry} 2>/dev/null; rm -f \"$__jl_e.d\"\n")
