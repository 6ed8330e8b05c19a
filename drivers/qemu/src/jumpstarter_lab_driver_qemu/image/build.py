"""Build the QEMU board's guest from Debian's packages (needs root: debootstrap and chroot).

1. debootstrap a minimal bookworm with systemd, python3, sudo, openssh-server;
2. take the kernel from Debian's linux-image-amd64 package, keep only the modules a
   QEMU guest needs (virtio, ext4) and put them in the root filesystem;
3. configure the guest (guest-setup.sh: users, serial login, network, masked units);
4. make a tiny initrd (busybox, the virtio and ext4 modules, initrd-init.sh);
5. pack the tree into an ext4 image with mkfs.ext4 -d (no loop device, no mount).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .cache import INITRD, KERNEL, MANIFEST, ROOTFS, SUITE, GuestImage, cache_root, find, recipe_key

PACKAGES = ["systemd-sysv", "udev", "kmod", "e2fsprogs", "iproute2", "procps", "python3", "sudo",
            "openssh-server", "busybox-static"]
HOSTNAME = "qemuboard"
PASSWORD = "jumpstarter"  # root's and the jumpstarter user's; documented in the README
APPEND = "console=ttyS0 root=/dev/vda rw quiet"
# Modules kept in the guest (with what they depend on) and, of those, the ones the initrd loads.
GUEST_MODULES = ["virtio_pci", "virtio_blk", "virtio_net", "virtio_rng", "ext4", "crc32c_generic", "crc32c_intel",
                 "autofs4", "loop"]
INITRD_MODULES = ["virtio_pci", "virtio_blk", "crc32c_generic", "ext4"]
DEFAULT_MIRROR = "http://deb.debian.org/debian"
ENV_MIRROR = "JUMPSTARTER_LAB_DEBIAN_MIRROR"
TOOLS = {"debootstrap": "debootstrap", "chroot": "coreutils", "mkfs.ext4": "e2fsprogs"}
LOCK_WAIT = 45 * 60  # another build of the same cache may be running
HERE = Path(__file__).parent


class BuildError(RuntimeError):
    pass


def debian_mirror() -> str:
    """$JUMPSTARTER_LAB_DEBIAN_MIRROR, else the host's apt source for bookworm, else deb.debian.org."""
    if os.environ.get(ENV_MIRROR):
        return os.environ[ENV_MIRROR]
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]
    for path in sources:
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                words = re.sub(r"\[[^]]*\]", "", line).split()
                if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                    return words[1]
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        with contextlib.suppress(OSError):
            for stanza in re.split(r"\n\s*\n", path.read_text()):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
                if "deb" in fields.get("Types", "").split() and SUITE in fields.get("Suites", "").split():
                    return fields.get("URIs", DEFAULT_MIRROR).split()[0]
    return DEFAULT_MIRROR


def check_host() -> None:
    if os.geteuid() != 0:
        raise BuildError("building the QEMU board image needs root (debootstrap and chroot): run it as root or with sudo")
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    missing = [f"{tool} (package {package})" for tool, package in TOOLS.items() if not shutil.which(tool, path=path)]
    if missing:
        raise BuildError(f"missing on this host: {', '.join(missing)}; "
                         "apt-get install debootstrap e2fsprogs (scripts/bootstrap.sh does)")


class Builder:
    def __init__(self, work: Path, mirror: str, progress: Callable[[str], None]):
        self.work = work
        self.root = work / "root"
        self.out = work / "out"
        self.mirror = mirror
        self.progress = progress
        self.log = work / "build.log"
        self.started = time.monotonic()
        self.env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root",
                    "DEBIAN_FRONTEND": "noninteractive"}
        self.env |= {k: v for k, v in os.environ.items() if k.lower() in ("http_proxy", "https_proxy", "no_proxy")}

    def say(self, text: str) -> None:
        self.progress(f"[{time.monotonic() - self.started:5.0f}s] {text}")

    def run(self, *cmd: str, timeout: float = 600, env: dict | None = None) -> str:
        with open(self.log, "a") as log:
            log.write(f"$ {' '.join(cmd)}\n")
            log.flush()
            try:
                done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, env={**self.env, **(env or {})},
                                      timeout=timeout, check=False, text=True)
            except subprocess.TimeoutExpired:
                raise BuildError(f"{cmd[0]} did not finish within {timeout:g}s; see {self.log}") from None
            log.write(done.stdout)
        if done.returncode != 0:
            tail = "".join(self.log.read_text().splitlines(keepends=True)[-15:])
            raise BuildError(f"{' '.join(cmd[:4])} failed with exit code {done.returncode}:\n{tail}")
        return done.stdout

    def chroot(self, *cmd: str, **kwargs) -> str:
        return self.run("chroot", str(self.root), *cmd, **kwargs)

    def build(self) -> dict:
        self.out.mkdir()
        self.say(f"debootstrap {SUITE} from {self.mirror} (the longest step)")
        self.run("debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(self.root),
                 self.mirror, timeout=1800)
        self.say("kernel from Debian's linux-image-amd64")
        version = self.kernel()
        self.say(f"guest configuration (kernel {version})")
        setup = Path(self.root, "tmp", "guest-setup.sh")
        shutil.copy(HERE / "guest-setup.sh", setup)
        marker = f"{SUITE}-{recipe_key()}"
        self.chroot("/bin/sh", "/tmp/guest-setup.sh",
                    env={"BOARD_HOSTNAME": HOSTNAME, "BOARD_PASSWORD": PASSWORD, "BOARD_MARKER": marker})
        self.say("initrd")
        self.initrd(version)
        self.say("ext4 root filesystem")
        size = self.rootfs()
        manifest = {"recipe": recipe_key(), "suite": SUITE, "kernel_version": version, "marker": marker,
                    "append": APPEND, "hostname": HOSTNAME, "users": {"root": PASSWORD, "jumpstarter": PASSWORD},
                    "rootfs_bytes": size, "build_seconds": round(time.monotonic() - self.started)}
        (self.out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        return manifest

    def kernel(self) -> str:
        depends = self.chroot("apt-cache", "depends", "linux-image-amd64")
        found = re.search(r"Depends: (linux-image-\S+)", depends)
        if not found:
            raise BuildError(f"cannot tell which kernel linux-image-amd64 depends on:\n{depends}")
        self.chroot("sh", "-c", f"cd /var/tmp && apt-get download -o APT::Sandbox::User=root {found.group(1)}")
        debs = list(Path(self.root, "var/tmp").glob("linux-image-*.deb"))
        self.chroot("dpkg-deb", "-x", f"/var/tmp/{debs[0].name}", "/var/tmp/kernel")
        unpacked = Path(self.root, "var/tmp/kernel")
        version = next((unpacked / "lib/modules").iterdir()).name
        shutil.copy(unpacked / "boot" / f"vmlinuz-{version}", self.out / KERNEL)
        modules = Path(self.root, "usr/lib/modules")
        modules.mkdir(parents=True, exist_ok=True)
        shutil.move(unpacked / "lib/modules" / version, modules / version)
        shutil.rmtree(unpacked)
        debs[0].unlink()
        # Keep what the guest needs, then index what is left.
        self.chroot("depmod", version)
        keep = {Path(p).name for p in self.module_order(version, GUEST_MODULES)}
        for path in (modules / version / "kernel").rglob("*.ko"):
            if path.name not in keep:
                path.unlink()
        for directory in sorted((modules / version / "kernel").rglob("*"), key=lambda p: -len(p.parts)):
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()
        self.chroot("depmod", version)
        return version

    def module_order(self, version: str, names: list[str]) -> list[str]:
        """Module files (as paths in the guest) to load for `names`, dependencies first."""
        shown = self.chroot("modprobe", "-S", version, "--show-depends", "-a", *names)
        order: list[str] = []
        for path in re.findall(r"^insmod (\S+)", shown, re.M):
            if path not in order:
                order.append(path)
        return order

    def initrd(self, version: str) -> None:
        entries = [("dev", 0o40755, b""), ("proc", 0o40755, b""), ("sys", 0o40755, b""), ("root", 0o40755, b""),
                   ("bin", 0o40755, b""), ("lib", 0o40755, b""), ("lib/modules", 0o40755, b"")]
        entries.append(("dev/console", stat.S_IFCHR | 0o600, (5, 1)))
        busybox = Path(self.root, "usr/bin/busybox")
        entries.append(("bin/busybox", 0o100755, busybox.read_bytes()))
        entries.append(("bin/sh", 0o120777, b"busybox"))  # a symlink: its data is the target
        names = []
        for path in self.module_order(version, INITRD_MODULES):
            name = Path(path).name.removesuffix(".ko")
            names.append(name)
            entries.append((f"lib/modules/{name}.ko", 0o100644, Path(self.root, path.lstrip("/")).read_bytes()))
        entries.append(("modules", 0o100644, ("\n".join(names) + "\n").encode()))
        entries.append(("init", 0o100755, (HERE / "initrd-init.sh").read_bytes()))
        (self.out / INITRD).write_bytes(newc_archive(entries))

    def rootfs(self) -> int:
        used = sum(os.lstat(os.path.join(d, f)).st_blocks * 512 for d, _dirs, files in os.walk(self.root)
                   for f in files)
        size = (int(used * 1.25) + (256 << 20) + (64 << 20) - 1) // (64 << 20) * (64 << 20)
        image = self.out / ROOTFS
        with open(image, "wb") as f:
            f.truncate(size)
        self.run("mkfs.ext4", "-q", "-F", "-L", "jumpstarter-root", "-m", "0",
                 "-E", "lazy_itable_init=0,lazy_journal_init=0", "-d", str(self.root), str(image))
        return size


def newc_archive(entries: list[tuple[str, int, bytes | tuple[int, int]]]) -> bytes:
    """A cpio archive in the kernel's initramfs format (newc).

    Entries are (name, mode, data): a symlink's data is its target, a device's (major, minor).
    """
    out = bytearray()

    def pad() -> None:
        out.extend(b"\0" * (-len(out) % 4))

    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        rdev = data if isinstance(data, tuple) else (0, 0)
        body = b"" if isinstance(data, tuple) else data
        fields = [ino, mode, 0, 0, 1, 0, len(body), 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
        out.extend(b"070701" + "".join(f"{v:08x}" for v in fields).encode() + name.encode() + b"\0")
        pad()
        out.extend(body)
        pad()
    return bytes(out)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/mounts") as f:
        points = [line.split()[1].replace("\\040", " ") for line in f]
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


def _remove_tree(path: Path) -> None:
    """Remove a build tree, but never through a mount left inside it (debootstrap binds /dev in containers)."""
    for point in _mounts_under(path):
        subprocess.run(["umount", "-l", point], check=False, timeout=60)
    left = _mounts_under(path)
    if left:
        raise BuildError(f"{path} still has mounts ({', '.join(left)}); not removing it")
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _locked(path: Path, wait: float) -> Iterator[None]:
    with open(path, "a") as f:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BuildError(f"another image build holds {path} for more than {wait:g}s") from None
                time.sleep(1)
        yield


def build(output: Path, *, mirror: str | None = None, force: bool = False,
          progress: Callable[[str], None] = print) -> GuestImage:
    """The image of the current recipe in `output`, built unless it is there already."""
    output = Path(output).absolute()
    if not force and (image := find(output)):
        return image
    check_host()
    output.parent.mkdir(parents=True, exist_ok=True)
    with _locked(output.parent / ".build.lock", LOCK_WAIT):
        if not force and (image := find(output)):
            return image  # built meanwhile by whoever held the lock
        for stale in output.parent.glob(f".{output.name}.build-*"):  # left by a build that was killed
            _remove_tree(stale)
        work = Path(tempfile.mkdtemp(prefix=f".{output.name}.build-", dir=output.parent))
        try:
            builder = Builder(work, mirror or debian_mirror(), progress)
            builder.build()
            if output.exists():
                shutil.rmtree(output)
            builder.out.rename(output)
        finally:
            _remove_tree(work)
    if output.parent == cache_root():  # images of older recipes are not used any more
        for old in output.parent.glob(f"{SUITE}-*"):
            if old != output and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
    owner = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if all(owner):  # built with sudo for a user: the cache is theirs
        for path in [output, *output.iterdir()]:
            os.chown(path, int(owner[0]), int(owner[1]))
    image = find(output)
    if image is None:
        raise BuildError(f"the build finished but {output} does not hold a complete image")
    return image
