"""A whole-disk image that a bootloader boots by itself: an MBR, one ext4 partition, a U-Boot script.

The guest's root filesystem goes into partition 1 with the kernel and initrd in /boot and
/boot/boot.scr, the script U-Boot's distro boot finds on its own (extlinux.conf is not
used: Debian's U-Boot 2023.01 hands zboot a wrong initrd size from it). Written from U-Boot
(`gzwrite`) or through the storage mux, it boots at the next power-on with no prompt typed.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
import zlib
from pathlib import Path

from .cache import GuestImage
from .marker import set_marker

SECTOR = 512
FIRST_SECTOR = 2048  # partition 1 starts at 1 MiB, as fdisk places it
CHUNK = 1 << 20
SLACK_BYTES = 64 << 20  # free on the shrunk root filesystem
BOOTARGS = "console=ttyS0,115200 root=/dev/vda1 rw quiet"
GROWFS_LINK = "/etc/systemd/system/multi-user.target.wants/jumpstarter-growfs.service"  # it grows /dev/vda

SCRIPT = f"""\
echo jumpstarter-lab: booting Linux from ${{devtype}} ${{devnum}}:${{distro_bootpart}}
load ${{devtype}} ${{devnum}}:${{distro_bootpart}} ${{kernel_addr_r}} /boot/vmlinuz
load ${{devtype}} ${{devnum}}:${{distro_bootpart}} ${{ramdisk_addr_r}} /boot/initrd.img
setenv bootargs {BOOTARGS}
zboot ${{kernel_addr_r}} 0 ${{ramdisk_addr_r}} ${{filesize}}
"""


def uboot_script(text: str, name: str = "jumpstarter-lab boot") -> bytes:
    """`text` as a legacy U-Boot script image (what `mkimage -T script` makes): header, length table, text."""
    body = text.encode()
    payload = struct.pack(">II", len(body), 0) + body

    def header(header_crc: int) -> bytes:  # magic, crcs, time, size, load, entry; os linux, arch x86, type script
        return struct.pack(">7I4B32s", 0x27051956, header_crc, int(time.time()), len(payload), 0, 0,
                           zlib.crc32(payload), 5, 3, 6, 0, name.encode()[:31].ljust(32, b"\0"))
    return header(zlib.crc32(header(0))) + payload


def mbr(partition_sectors: int) -> bytes:
    """A DOS partition table with one bootable Linux partition from FIRST_SECTOR (CHS fields saturated)."""
    entry = struct.pack("<B3sB3sII", 0x80, b"\xfe\xff\xff", 0x83, b"\xfe\xff\xff", FIRST_SECTOR, partition_sectors)
    return bytes(446) + entry + bytes(48) + b"\x55\xaa"


def _tool(name: str) -> str:
    found = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if found is None:
        raise FileNotFoundError(f"{name} not found (package e2fsprogs)")
    return found


def _run(*argv: str, ok: tuple[int, ...] = (0,)) -> str:
    done = subprocess.run([_tool(argv[0]), *argv[1:]], capture_output=True, text=True, timeout=300, check=False)
    if done.returncode not in ok:
        raise RuntimeError(f"{' '.join(argv)} failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def _shrink(partition: Path) -> None:
    """Shrink the filesystem to what it holds and some room: the image a bootloader loads whole into RAM."""
    _run("e2fsck", "-f", "-p", str(partition), ok=(0, 1))  # 1: it fixed something, as -p may
    block_size = int(re.search(r"^Block size:\s+(\d+)", _run("dumpe2fs", "-h", str(partition)), re.M).group(1))
    blocks = int(_run("resize2fs", "-P", str(partition)).rsplit(":", 1)[1]) + SLACK_BYTES // block_size
    _run("resize2fs", str(partition), str(blocks))
    os.truncate(partition, blocks * block_size)


def _debugfs(image: Path, commands: str) -> None:
    debugfs = _tool("debugfs")
    with tempfile.NamedTemporaryFile("w", suffix=".debugfs") as script:
        script.write(commands)
        script.flush()
        done = subprocess.run([debugfs, "-w", "-f", script.name, str(image)], capture_output=True, text=True,
                              timeout=120, check=False)
    problems = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("debugfs ")]
    if done.returncode != 0 or problems:
        raise RuntimeError(f"debugfs could not prepare {image}: {' '.join(problems) or done.returncode}")


def _copy_sparse(source, target) -> None:
    while chunk := source.read(CHUNK):
        if chunk.count(0) == len(chunk):
            target.seek(len(chunk), os.SEEK_CUR)
        else:
            target.write(chunk)


def build_boot_disk(image: GuestImage, output: Path, marker: str | None = None) -> Path:
    """Write `output`: the guest as a partitioned disk booting through U-Boot, its root filesystem shrunk to
    what it holds and 64 MiB (so that the bootloader can load it whole into RAM); gzip-compressed when it
    ends in .gz (what U-Boot's gzwrite takes). `marker` replaces the console's JUMPSTARTER_MARKER line."""
    output = Path(output)
    with tempfile.TemporaryDirectory(dir=output.parent) as tmp:
        tmp = Path(tmp)
        partition = set_marker(image.rootfs, tmp / "part.img", marker or image.marker)
        (tmp / "boot.scr").write_bytes(uboot_script(SCRIPT))
        (tmp / "fstab").write_text("/dev/vda1 / ext4 rw,noatime,errors=remount-ro 0 0\n")
        _debugfs(partition, f"write {image.kernel} /boot/vmlinuz\nwrite {image.initrd} /boot/initrd.img\n"
                            f"write {tmp / 'boot.scr'} /boot/boot.scr\nrm /etc/fstab\nwrite {tmp / 'fstab'} /etc/fstab\n"
                            f"sif /etc/fstab mode 0100644\nrm {GROWFS_LINK}\n")
        _shrink(partition)
        size = partition.stat().st_size
        if size % SECTOR:
            raise ValueError(f"{image.rootfs}: {size} bytes is not a whole number of sectors")
        disk = tmp / "disk.img"
        with open(partition, "rb") as source, open(disk, "wb") as target:
            target.write(mbr(size // SECTOR))
            target.seek(FIRST_SECTOR * SECTOR)
            _copy_sparse(source, target)
            target.truncate(FIRST_SECTOR * SECTOR + size)
        if output.suffix == ".gz":
            with open(disk, "rb") as source, gzip.open(tmp / "disk.img.gz", "wb", compresslevel=1) as target:
                shutil.copyfileobj(source, target, CHUNK)
            disk = tmp / "disk.img.gz"
        os.replace(disk, output)
    return output
