"""Demo steps run inside `jumpstarter-lab shell`: flash the sim board, boot it, log in, run commands."""

import sys
import tempfile
import time
from pathlib import Path

from jumpstarter_lab.client import connect


def main() -> int:
    with connect() as root, tempfile.TemporaryDirectory() as tmp:  # JUMPSTARTER_HOST comes from the shell
        board = root.board
        image = Path(tmp) / "demo.img"
        build = time.strftime("demo-%Y%m%d-%H%M%S")
        image.write_bytes(b"\0" * 65536 + f"\nJUMPSTARTER_MARKER={build}\n".encode())
        print(f"[demo] flashing {image.name} ({image.stat().st_size} bytes, marker {build})")
        board.storage.flash(image)
        with board.console.open() as console:
            print("[demo] power on")
            board.power.on()
            booted = console.expect(r"Booting image (\S+)", timeout=30).group(1).decode()
            print(f"[demo] console: booting image {booted}")
            console.expect("login: ", timeout=30)
            console.sendline("root")
            console.expect("Password: ")
            console.sendline("jumpstarter")
            console.expect(r"# ", timeout=30)
            # Quotes split the pattern so the echoed command line cannot match it.
            console.sendline('echo "ker""nel=$(uname -sr) mar""ker=$SIM_MARKER"')
            line = console.expect(r"kernel=[^\r\n]+ marker=\S+", timeout=30).group(0).decode()
            print(f"[demo] shell on the board says: {line}")
        reading = next(board.power.read())
        print(f"[demo] power draw {reading.voltage} V x {reading.current} A")
        board.power.off()
        print("[demo] power off")
        return 0 if booted == build else 1


if __name__ == "__main__":
    sys.exit(main())
