"""Where a driver client class's code comes from: the installed distribution that declares it, and a
digest of that distribution's files for pinning.

Nothing here imports the code it inspects: a top-level package is located with `find_spec`, which
reads the import path without running the package.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from importlib.metadata import Distribution, PackageNotFoundError, distribution, packages_distributions
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..wire.entrypoints import CLIENT_GROUP, group

DIGEST = "sha256"
PIN_PATTERN = rf"{DIGEST}:[0-9a-f]{{64}}"  # what digest() returns, and so what a pin must look like
SELF = "jumpstarter-lab"  # the client's own distribution: the code doing the checking, never pinned


def canonical(name: str) -> str:
    """A distribution name as packaging compares them (PEP 503)."""
    return "-".join(part for part in name.lower().replace("_", "-").replace(".", "-").split("-") if part)


@functools.cache
def declared_clients() -> dict[str, str]:
    """Every client class path (`pkg.module.Class`) an installed distribution declares, with the
    distribution's canonical name."""
    return {entry.value.replace(":", "."): canonical(entry.dist.name) if entry.dist else ""
            for entry in group(CLIENT_GROUP).values()}


def owner_of(top_level: str) -> str | None:
    """The canonical name of the installed distribution holding a top-level package, if any."""
    owners = packages_distributions().get(top_level) or []
    return canonical(owners[0]) if owners else None


def package_location(top_level: str) -> Path | None:
    """The directory (or single file) a top-level package would be imported from, without importing it."""
    try:
        spec = importlib.util.find_spec(top_level)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))).resolve()
    return Path(spec.origin).resolve() if spec.origin else None


def _editable_root(dist: Distribution) -> Path | None:
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not (data.get("dir_info") or {}).get("editable"):
        return None
    url = urlparse(data.get("url", ""))
    return Path(unquote(url.path)).resolve() if url.scheme == "file" else None


@functools.lru_cache(maxsize=512)
def belongs_to(location: Path, dist_name: str) -> bool:
    """Whether `location` is inside what distribution `dist_name` installed (its recorded files, or for
    an editable install its project directory), so a module of the same name elsewhere on the path,
    shadowing it, is told apart."""
    try:
        dist = distribution(dist_name)
    except PackageNotFoundError:
        return False
    editable = _editable_root(dist)
    if editable is not None:
        return location.is_relative_to(editable)
    recorded = {Path(str(dist.locate_file(f))).resolve() for f in dist.files or ()}
    if location.is_dir():
        return location / "__init__.py" in recorded
    return location in recorded


def _top_levels(dist_name: str) -> list[str]:
    return sorted(top for top, owners in packages_distributions().items()
                  if any(canonical(o) == dist_name for o in owners))


def _package_files(location: Path):
    if location.is_file():
        yield location.name, location
        return
    for path in sorted(location.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            yield f"{location.name}/{path.relative_to(location).as_posix()}", path


def digest(dist_name: str) -> str:
    """`sha256:<hex>` over every file of the distribution's top-level packages (not byte-code
    caches), whether installed from a wheel or editable; a file added, changed or removed changes it."""
    total = hashlib.sha256()
    tops = _top_levels(canonical(dist_name))
    if not tops:
        raise LookupError(f"no installed distribution '{dist_name}' with Python packages")
    for top in tops:
        location = package_location(top)
        if location is None:
            continue
        for name, path in _package_files(location):
            total.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return f"{DIGEST}:{total.hexdigest()}"


def client_distributions() -> list[str]:
    """The canonical names of the installed distributions that declare driver clients, but this one."""
    return sorted({name for name in declared_clients().values() if name and name != SELF})
