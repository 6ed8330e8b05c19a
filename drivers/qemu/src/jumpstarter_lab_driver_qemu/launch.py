"""Run a command that dies with the exporter, even when the exporter is killed with SIGKILL.

    python -m jumpstarter_lab_driver_qemu.launch EXPORTER_PID COMMAND [ARG...]

Sets PR_SET_PDEATHSIG (kept across exec) and then becomes COMMAND. A separate process
rather than a preexec_fn: forking the multi-threaded exporter (gRPC) to run Python code
before exec is unsafe, whereas spawning a fresh interpreter is not.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main() -> None:
    parent, command = int(sys.argv[1]), sys.argv[2:]
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the exporter died before prctl took effect
        sys.exit(1)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
