# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""The markers of the serial shell: the words it has the board print, and looks for, on the console.

Each marker means one thing and is defined here only. What the board prints after a marker is given
beside it (`token`: fresh random hex per use, so no marker from an earlier use ever counts; `tag`:
token.attempt, for what a command's emit prints). The text typed to the board never contains a
marker whole (it is cut in two by split_word or split_marker, or travels base64-encoded in a file),
so the tty's echo of that text can never match; only what the board prints can.
"""

from __future__ import annotations

# --- the shell on the console (serial_login) ---------------------------------------------------------
READY = "JL"  # + 12 random hex digits, alone on a line: a line typed to the shell has run (attach: the
#               set-up line, the shell is machine-friendly; detach: the prompt and echo are back). Those
#               digits are lowercase; the other markers' third letters are capitals.

# --- a command (serial_commands) ---------------------------------------------------------------------
ARRIVED = "JLA"  # JLA:token, twice: the command and its input arrived intact; the board runs them
DAMAGED = "JLN"  # JLN:token, twice: they arrived damaged; the board removed them and ran nothing
WORKING = "JLW"  # alone on a line: a step of putting a command's input together is done (the board is busy,
#                  not stuck), so the wait for JLA is the wait for the board falling silent
START = "JLS"  # JLS:tag:rc:stdout size:stderr size:stdout sha256:stderr sha256, twice: an emit's first line
STDOUT = "O"  # Otag:base64: a line of the command's stdout, in an emit
STDERR = "E"  # Etag:base64: a line of the command's stderr, in an emit
END = "JLE"  # JLE:tag, twice: an emit's last line

# --- the board's cache of long input lines (serial_cache) ----------------------------------------------
CACHED = "JLC"  # JLC:token:bits, twice: which of the lines asked about the board's cache holds intact (1 each)
PATCH_END = "JLD"  # alone on a line of shell input: ends the here-document of a patch's differing blocks

# --- the agent: one python3 kept on the board for a play (serial_agent; printed by serial_agent_board) --
AGENT = "JLG"  # JLG:token:pid, twice: the agent `token` runs and has the console
AGENT_GONE = "JLX"  # JLX:token: the agent's shell line ended (the console is the people's again), or the board
#                     has no python3 for it
REQUEST = "#JLQ"  # typed: #JLQ token flag size sha256, a request's first line (a shell takes it for a comment)
REQUEST_END = "#JLZ"  # typed: a request's last line
REPLY = "JLR"  # JLR:token:flag:lines:size:sha256, twice: a reply's first line (then its lines, then END:token)
REPLY_LINE = "R"  # Rtoken:index:crc32:base64: a numbered line of a reply
#                   (ARRIVED and DAMAGED answer a request, END ends a reply, as they do for a command)

# --- files (serial_transfer) -------------------------------------------------------------------------
PUT_ACK = "JLP"  # JLP:token:chunk:size: a put's temp file has `size` bytes after `chunk` (-1: not writable)
PIECE = "F"  # Ftoken:index:sha256:base64: a piece of a file being fetched
FETCHED = "JLF"  # JLF:token: a fetch's last line, after its pieces


def split_word(word: str) -> str:
    """Shell text printing `word` whose own characters never contain `word` (so an echo cannot match)."""
    half = len(word) // 2
    return f"'{word[:half]}''{word[half:]}'"


def split_marker(marker: str) -> str:
    """`marker` as it goes inside a single-quoted shell word: cut after its JL (JL''C), so the typed
    text never contains it whole."""
    return f"{marker[:2]}''{marker[2:]}"


def working() -> str:
    """Shell text printing WORKING (a shell builtin, no process started), never matching its own echo."""
    return f"printf '%s\\n' {split_word(WORKING)}"


def twice(word: str) -> str:
    """Shell text printing `word` on two lines (console noise may cut one), never matching its own echo."""
    return f"printf '%s\\n%s\\n' {split_word(word)} {split_word(word)}"
