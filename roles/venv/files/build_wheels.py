# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""Build the collection's own distributions as wheels, on the Ansible controller.

Usage: build_wheels.py COLLECTION_ROOT OUT_DIR DISTRIBUTION...   (e.g. exporter drivers/power)

Each distribution's source is copied out of the collection first, so an installed collection
may be read-only and gets no build debris. SOURCE_DATE_EPOCH makes the wheels byte-for-byte
reproducible: an unchanged source gives an unchanged wheel, so copying it to a host changes
nothing and nothing is restarted. Prints a JSON list of {"source", "wheel", "path"}.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist", ".pytest_cache")
EPOCH = "315532800"  # 1980-01-01, the earliest time a zip entry can hold


def build(root: Path, out: Path, source: str, scratch: Path) -> dict:
    origin = (root / source).resolve()
    if not (origin / "pyproject.toml").is_file() or not origin.is_relative_to(root):
        raise SystemExit(f"{source}: not a distribution of the collection at {root} (no pyproject.toml)")
    copy = scratch / source.replace("/", "_")
    shutil.copytree(origin, copy, ignore=IGNORE)
    target = scratch / (copy.name + "-wheel")
    env = dict(os.environ, SOURCE_DATE_EPOCH=EPOCH, PIP_DISABLE_PIP_VERSION_CHECK="1")
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(target), str(copy)]
    # With this Python's own setuptools when it is recent enough; else pip fetches the build backend.
    result = subprocess.run(command[:5] + ["--no-build-isolation"] + command[5:], capture_output=True, text=True,
                            check=False, env=env)
    if result.returncode != 0:
        result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        raise SystemExit(f"{source}: building its wheel failed:\n{result.stderr[-2000:]}")
    (wheel,) = target.glob("*.whl")
    shutil.copy2(wheel, out / wheel.name)
    return {"source": source, "wheel": wheel.name, "path": str(out / wheel.name)}


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        raise SystemExit(__doc__)
    root, out = Path(argv[0]).resolve(), Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="jumpstarter-lab-wheels-") as scratch:
        built = [build(root, out, source, Path(scratch)) for source in argv[2:]]
    print(json.dumps(built))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
