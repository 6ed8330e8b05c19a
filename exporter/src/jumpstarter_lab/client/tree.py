"""The client tree: one client object per driver of an exporter's report, of the class its label names.

A report comes from a remote exporter: it is checked before anything is built from it (one
root, unique well-formed uuids, every driver reachable from the root, bounded size and
depth, unique child names), so a hostile or broken one ends in one clear error.
"""

from __future__ import annotations

import uuid as uuidlib

from ..wire import labels
from ..wire.errors import JumpstarterLabError
from ..wire.protocol import jumpstarter_pb2
from .allowlist import Allowlist
from .base import DriverClient, UnavailableClient

MAX_DRIVERS = 10_000
MAX_DEPTH = 64


class BadReport(JumpstarterLabError, ValueError):
    """An exporter's report is not a tree of drivers this client can use."""


def _checked(report: jumpstarter_pb2.GetReportResponse) -> tuple[str, dict[str, list[str]]]:
    """(root uuid, uuid -> child uuids in report order), or BadReport saying what is wrong."""
    if len(report.reports) > MAX_DRIVERS:
        raise BadReport(f"the exporter's report has {len(report.reports)} drivers, more than {MAX_DRIVERS}")
    children: dict[str, list[str]] = {}
    for r in report.reports:
        try:
            uuidlib.UUID(r.uuid)
        except ValueError:
            raise BadReport(f"the exporter's report has a driver whose uuid {r.uuid[:60]!r} is not a UUID") from None
        if r.uuid in children:
            raise BadReport(f"the exporter's report has two drivers with uuid {r.uuid}")
        children[r.uuid] = []
    roots = []
    for r in report.reports:
        if r.HasField("parent_uuid") and r.parent_uuid in children:
            children[r.parent_uuid].append(r.uuid)
        else:
            roots.append(r.uuid)
    if len(roots) != 1:
        raise BadReport(f"the exporter's report has {len(roots)} root drivers, expected one")
    seen, level = {roots[0]}, [roots[0]]
    for _depth in range(MAX_DEPTH + 1):
        level = [child for uid in level for child in children[uid]]
        if not level:
            break
        seen.update(level)
    else:
        raise BadReport(f"the exporter's report nests drivers more than {MAX_DEPTH} deep")
    if len(seen) != len(children):
        raise BadReport(f"{len(children) - len(seen)} drivers of the exporter's report are not below its root "
                        "(their parents form a cycle)")
    return roots[0], children


def build_tree(report: jumpstarter_pb2.GetReportResponse, connection, allow: Allowlist) -> DriverClient:
    """Client objects for every driver, children first; returns the root."""
    root, child_ids = _checked(report)
    by_uuid = {r.uuid: r for r in report.reports}

    def make(uid: str) -> DriverClient:
        r = by_uuid[uid]
        children = {}
        for child in child_ids[uid]:
            client = make(child)
            if client.name in children:
                raise BadReport(f"two drivers under {r.labels.get(labels.NAME) or 'the root'} are named "
                                f"{client.name!r} in the exporter's report")
            children[client.name] = client
        kwargs = dict(uuid=uuidlib.UUID(uid), labels=dict(r.labels), connection=connection, children=children,
                      description=r.description if r.HasField("description") else None,
                      methods_description=dict(r.methods_description))
        label = r.labels.get(labels.CLIENT, "")
        try:
            cls = allow.load(label)
            if not (isinstance(cls, type) and issubclass(cls, DriverClient)):
                raise JumpstarterLabError(f"'{label}' is not a jumpstarter.lab driver client class")
        except JumpstarterLabError as e:
            return UnavailableClient(reason=e, **kwargs)
        return cls(**kwargs)

    return make(root)
