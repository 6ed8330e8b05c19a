"""jumpstarter-lab-qemu-image: build, find and re-mark the QEMU board's guest image.

  jumpstarter-lab-qemu-image build [--output DIR]   build (as root) unless the cache has it; prints DIR
  jumpstarter-lab-qemu-image path                   the cached image's directory, exit 1 when not built
  jumpstarter-lab-qemu-image config                 an ExporterConfig entry booting the cached image
  jumpstarter-lab-qemu-image mark IMAGE MARKER OUT  a copy of a root filesystem with another marker
  jumpstarter-lab-qemu-image bootdisk OUT [--marker M]
                                                    the guest as a partitioned disk U-Boot boots by itself
                                                    (gzip-compressed when OUT ends in .gz)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .bootdisk import build_boot_disk
from .build import BuildError, build
from .cache import default_dir, find
from .marker import set_marker

CONFIG = """\
board:
  type: jumpstarter_lab_driver_qemu.QemuBoard
  config:
    image_path: {image.rootfs}
    kernel: {image.kernel}
    initrd: {image.initrd}
    append: "{image.append}"
    memory: 512M
    cpu_cores: 2
"""


def _progress(text: str) -> None:
    print(f"jumpstarter-lab-qemu-image: {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jumpstarter-lab-qemu-image", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    build_cmd = commands.add_parser("build", help="build the guest image unless it is cached")
    build_cmd.add_argument("--output", type=Path, help=f"directory to build into (default {default_dir()})")
    build_cmd.add_argument("--mirror", help="Debian mirror URL (default: the host's apt source for bookworm)")
    build_cmd.add_argument("--force", action="store_true", help="build even when the image is there")
    for name, text in (("path", "print the image's directory"), ("config", "print an ExporterConfig entry")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--output", type=Path, help="the image's directory (default: the cache)")
    mark = commands.add_parser("mark", help="copy a root filesystem image with another marker")
    mark.add_argument("image", type=Path)
    mark.add_argument("marker")
    mark.add_argument("output", type=Path)
    bootdisk = commands.add_parser("bootdisk", help="write the guest as a disk that boots through U-Boot")
    bootdisk.add_argument("output", type=Path)
    bootdisk.add_argument("--marker", help="the JUMPSTARTER_MARKER its console shows (default: the image's)")
    bootdisk.add_argument("--image", type=Path, help="the image's directory (default: the cache)")
    args = parser.parse_args(argv)

    try:
        if args.command == "build":
            started = time.monotonic()
            image = build(args.output or default_dir(), mirror=args.mirror, force=args.force, progress=_progress)
            _progress(f"image ready in {time.monotonic() - started:.0f}s: {image.directory}")
            print(image.directory)
        elif args.command == "mark":
            print(set_marker(args.image, args.output, args.marker))
        else:
            where = args.image if args.command == "bootdisk" else args.output
            image = find(where)
            if image is None:
                _progress(f"no image of the current recipe at {where or default_dir()}; "
                          "run `jumpstarter-lab-qemu-image build` (as root)")
                return 1
            if args.command == "bootdisk":
                print(build_boot_disk(image, args.output, args.marker))
            elif args.command == "path":
                print(image.directory)
            else:
                sys.stdout.write(CONFIG.format(image=image))
    except (BuildError, OSError, ValueError, RuntimeError) as e:
        _progress(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
