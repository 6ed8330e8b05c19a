"""Helpers for the QEMU board's tests: the guest image, exporter config entries, console dialogue."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest

from jumpstarter_lab_driver_qemu.image import GuestImage, default_dir, find
from jumpstarter_lab_driver_serial.client import Console

BOOT_TIMEOUT = 420  # generous: a login prompt takes ~15 s under TCG here; a loaded CI machine took minutes
PASSWORD = "jumpstarter"
PROMPT = r"root@qemuboard:~# "
MARKER = re.compile(rb"JUMPSTARTER_MARKER=(\S+)\r?\n")


def guest_image(config: pytest.Config) -> GuestImage:
    """The cached guest image, built first (as root) when the cache does not have it."""
    image = find()
    if image is not None:
        return image
    missing = [tool for tool in ("qemu-system-x86_64", "qemu-img") if not shutil.which(tool)]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed; run scripts/bootstrap.sh (it installs the QEMU board's tools)")
    from jumpstarter_lab_driver_qemu.image.build import BuildError, build

    capture = config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\nbuilding the QEMU board's guest image into {default_dir()} (once per recipe, about a minute)...",
              flush=True)
        started = time.monotonic()
        try:
            image = build(default_dir(), progress=lambda text: print(f"  {text}", flush=True))
        except BuildError as e:
            pytest.fail(f"cannot build the QEMU board's guest image: {e}")
        print(f"guest image built in {time.monotonic() - started:.0f}s", flush=True)
    return image


def board_entry(image: GuestImage | None = None, *, disk: Path | str | None = None, **config) -> str:
    """An ExporterConfig `export:` entry for a QEMU board booting `image` (TCG: KVM is unreliable here)."""
    values = {"accel": "tcg", "memory": "512M", "cpu_cores": 2}
    if image is not None:
        values |= {"image_path": str(disk or image.rootfs), "kernel": str(image.kernel), "initrd": str(image.initrd),
                   "append": image.append}
    values |= config
    lines = "".join(f"    {key}: {json.dumps(value)}\n" for key, value in values.items())
    return "board:\n  type: jumpstarter_lab_driver_qemu.QemuBoard\n  config:\n" + lines


def boot_marker(console: Console) -> str:
    return console.expect(MARKER, timeout=BOOT_TIMEOUT).group(1).decode()


def login(console: Console) -> None:
    console.expect("login: ", timeout=BOOT_TIMEOUT)
    console.sendline("root")
    console.expect("Password: ", timeout=30)
    console.sendline(PASSWORD)
    console.expect(PROMPT, timeout=60)


def shell(console: Console, command: str, timeout: float = 60) -> tuple[int, str]:
    """Run a command at the guest's shell prompt: (exit status, output)."""
    console.sendline(f"echo ::be''gin::; {command}; echo ::$?::e''nd")
    found = console.expect(re.compile(rb"::begin::\r\n(.*?)::(\d+)::end", re.S), timeout=timeout)
    console.expect(PROMPT, timeout=timeout)
    return int(found.group(2)), found.group(1).decode(errors="replace").replace("\r\n", "\n")
