"""Where built guest images live: outside the repository, one directory per hash of the recipe.

The recipe is the builder and the two scripts it runs (build.py, guest-setup.sh,
initrd-init.sh): change any of them and the next build makes a new directory,
otherwise the cached one is used as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

SUITE = "bookworm"
RECIPE_FILES = ("build.py", "guest-setup.sh", "initrd-init.sh")
MANIFEST = "image.json"
KERNEL, INITRD, ROOTFS = "vmlinuz", "initrd.img", "rootfs.img"
ENV_CACHE = "JUMPSTARTER_LAB_CACHE"


def cache_root() -> Path:
    """$JUMPSTARTER_LAB_CACHE/qemu, else ~/.cache/jumpstarter-lab/qemu (XDG_CACHE_HOME honoured)."""
    base = os.environ.get(ENV_CACHE)
    if not base:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jumpstarter-lab"
    return Path(base) / "qemu"


def recipe_key() -> str:
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for name in RECIPE_FILES:
        digest.update(name.encode() + b"\0" + (here / name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def default_dir() -> Path:
    return cache_root() / f"{SUITE}-{recipe_key()}"


@dataclass(frozen=True)
class GuestImage:
    """A built guest: Debian's kernel, a small initrd and an ext4 root filesystem (raw image)."""

    directory: Path
    manifest: dict

    @property
    def kernel(self) -> Path:
        return self.directory / KERNEL

    @property
    def initrd(self) -> Path:
        return self.directory / INITRD

    @property
    def rootfs(self) -> Path:
        return self.directory / ROOTFS

    @property
    def append(self) -> str:
        return self.manifest["append"]

    @property
    def marker(self) -> str:
        return self.manifest["marker"]


def find(directory: Path | None = None) -> GuestImage | None:
    """The complete image of the current recipe in `directory` (default: the cache), or None."""
    directory = Path(directory) if directory else default_dir()
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    image = GuestImage(directory, manifest)
    if manifest.get("recipe") != recipe_key() or not all(p.is_file() for p in (image.kernel, image.initrd, image.rootfs)):
        return None
    return image
