"""The QEMU board's guest image: build it (needs root), find it in the cache, or copy it with a new marker."""

from .bootdisk import build_boot_disk
from .cache import GuestImage, cache_root, default_dir, find, recipe_key
from .marker import set_marker

__all__ = ["GuestImage", "build_boot_disk", "cache_root", "default_dir", "find", "recipe_key", "set_marker"]
