"""Copy a guest root filesystem with another marker (the JUMPSTARTER_MARKER line its console shows).

Edits the ext4 image with debugfs, so it needs neither root nor a mount.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ISSUE = "/etc/issue.d/jumpstarter.issue"


def set_marker(source: Path, target: Path, marker: str) -> Path:
    if not marker or any(c.isspace() or c == "\\" for c in marker):
        raise ValueError(f"a marker is one word without backslashes, got {marker!r}")
    debugfs = shutil.which("debugfs", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if debugfs is None:
        raise FileNotFoundError("debugfs not found (package e2fsprogs)")
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise FileNotFoundError(f"no image at {source}")
    subprocess.run(["cp", "--sparse=always", str(source), str(target)], check=True, timeout=300)
    with tempfile.TemporaryDirectory() as tmp:
        issue = Path(tmp, "issue")
        issue.write_text(f"JUMPSTARTER_MARKER={marker}\n")
        commands = Path(tmp, "commands")
        commands.write_text(f"rm {ISSUE}\nwrite {issue} {ISSUE}\n"
                            f"sif {ISSUE} uid 0\nsif {ISSUE} gid 0\nsif {ISSUE} mode 0100644\n")
        done = subprocess.run([debugfs, "-w", "-f", str(commands), str(target)], capture_output=True, text=True,
                              timeout=120, check=False)
    problems = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("debugfs ")]
    if done.returncode != 0 or problems:
        target.unlink(missing_ok=True)
        raise RuntimeError(f"debugfs could not set the marker in {target}: {' '.join(problems) or done.returncode}")
    return target
