"""The client tree: one client object per driver of an exporter's report, of the class its label names."""

from __future__ import annotations

import uuid as uuidlib

from ..wire import labels
from ..wire.errors import JumpstarterLabError
from ..wire.protocol import jumpstarter_pb2
from .allowlist import Allowlist
from .base import DriverClient, UnavailableClient


def build_tree(report: jumpstarter_pb2.GetReportResponse, connection, allow: Allowlist) -> DriverClient:
    """Client objects for every driver, children first; returns the root."""
    by_uuid = {r.uuid: r for r in report.reports}
    child_ids: dict[str, list[str]] = {r.uuid: [] for r in report.reports}
    roots = []
    for r in report.reports:
        if r.HasField("parent_uuid") and r.parent_uuid in child_ids:
            child_ids[r.parent_uuid].append(r.uuid)
        else:
            roots.append(r.uuid)
    if len(roots) != 1:
        raise JumpstarterLabError(f"exporter report has {len(roots)} root drivers, expected one")

    def make(uid: str) -> DriverClient:
        r = by_uuid[uid]
        children = {}
        for child in child_ids[uid]:
            client = make(child)
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

    return make(roots[0])
