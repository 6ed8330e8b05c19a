# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""The plugin side of the one client library: options in, a connected driver tree out."""

from __future__ import annotations

import contextlib

from ansible.errors import AnsibleConnectionFailure

try:
    from jumpstarter_lab.client import Allowlist, connect
    from jumpstarter_lab.client.allowlist import DEFAULT_ALLOW
    from jumpstarter_lab.errors import JumpstarterLabError
except ImportError as e:  # the controller's Python lacks the library
    IMPORT_ERROR: Exception | None = e
else:
    IMPORT_ERROR = None

SERIAL_LABEL = "jumpstarter_driver_pyserial.client.PySerialClient"
NETWORK_LABEL = "jumpstarter_driver_network.client.NetworkClient"


def require_library() -> None:
    if IMPORT_ERROR is not None:
        raise AnsibleConnectionFailure(
            f"the jumpstarter_lab Python package is needed on the Ansible controller ({IMPORT_ERROR}); "
            "install the collection's exporter/ distribution into the Python that runs Ansible")


@contextlib.contextmanager
def exporter(get_option, host_name: str, timeout: float):
    """Connect with the plugin's options; errors become AnsibleConnectionFailure naming the exporter."""
    require_library()
    address = get_option("jumpstarter_host")
    session = get_option("jumpstarter_session") or f"ansible-{host_name}"
    allow = Allowlist(list(DEFAULT_ALLOW) + list(get_option("jumpstarter_allow") or []))
    try:
        with connect(address, allow=allow, tls_ca=get_option("jumpstarter_tls_ca"),
                     insecure=get_option("jumpstarter_insecure"), session=session, timeout=timeout) as root:
            yield root
    except JumpstarterLabError as e:
        raise AnsibleConnectionFailure(f"exporter {address}: {e}") from None


def find_driver(root, path: str | None, label: str, what: str, preferred: str = "console"):
    """The driver at a dotted path, or the first one with `label` (preferring one named `preferred`)."""
    if path:
        node = root
        for part in path.split("."):
            if part not in node.children:
                raise AnsibleConnectionFailure(f"the exporter has no driver '{path}' (no '{part}' under "
                                               f"{node.name or 'the root'}; it has {', '.join(node.children) or 'none'})")
            node = node.children[part]
        return node
    found = []

    def walk(node, prefix):
        for name, child in node.children.items():
            dotted = f"{prefix}{name}"
            if child.labels.get("jumpstarter.dev/client") == label:
                found.append((dotted, child))
            walk(child, dotted + ".")

    walk(root, "")
    if not found:
        raise AnsibleConnectionFailure(f"the exporter has no {what} driver; name one with the {what} option")
    found.sort(key=lambda item: (item[0].rsplit(".", 1)[-1] != preferred, item[0]))
    return found[0][1]
