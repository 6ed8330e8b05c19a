# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""The plugin side of the one client library: options in, a connected driver tree out."""

from __future__ import annotations

import contextlib
import os

from ansible.errors import AnsibleActionFail, AnsibleConnectionFailure

try:
    from jumpstarter_lab.client import Allowlist, connect
    from jumpstarter_lab.client.allowlist import DEFAULT_ALLOW
    from jumpstarter_lab.client import ClientConfig, connect_lease
    from jumpstarter_lab.wire.errors import JumpstarterLabError
except ImportError as e:  # the controller's Python lacks the library
    IMPORT_ERROR: Exception | None = e
else:
    IMPORT_ERROR = None

SERIAL_LABEL = "jumpstarter_driver_pyserial.client.PySerialClient"
NETWORK_LABEL = "jumpstarter_driver_network.client.NetworkClient"
STORAGE_LABEL = "jumpstarter_driver_opendal.client.StorageMuxClient"

# The exporter options (doc fragment jumpstarter.lab.exporter) as action plugins read them: host vars first,
# then the environment, then the fragment's defaults.
_OPTION_ENV = {"jumpstarter_host": "JUMPSTARTER_HOST", "jumpstarter_lease": "JMP_LEASE",
               "jumpstarter_client_config": "JMP_CLIENT_CONFIG"}
_OPTION_DEFAULTS = {"jumpstarter_allow": [], "jumpstarter_insecure": False}


def require_library(error: type[Exception] = AnsibleConnectionFailure) -> None:
    """Raise `error` saying how to get the jumpstarter_lab package when this Python lacks it."""
    if IMPORT_ERROR is not None:
        raise error(
            f"the jumpstarter_lab Python package is needed on the Ansible controller ({IMPORT_ERROR}); "
            "install the collection's exporter/ distribution into the Python that runs Ansible")


@contextlib.contextmanager
def task_exporter(task_vars: dict, templar, timeout: float):
    """exporter() for an action plugin, which has the host's variables rather than plugin options
    (then the environment, then the fragment's defaults); failures to reach the exporter or find a
    driver in it fail the task (AnsibleActionFail)."""
    def get_option(name):
        if name in task_vars:
            return templar.template(task_vars[name])
        return os.environ.get(_OPTION_ENV[name]) if name in _OPTION_ENV else _OPTION_DEFAULTS.get(name)

    try:
        with exporter(get_option, task_vars.get("inventory_hostname", ""), timeout) as root:
            yield root
    except AnsibleConnectionFailure as e:
        raise AnsibleActionFail(str(e)) from None


def exporter_key(get_option) -> str:
    """What names the board's exporter for this host: its lease, or its address."""
    lease = get_option("jumpstarter_lease")
    if lease:
        return f"lease {lease}"
    address = get_option("jumpstarter_host")
    if not address:
        raise AnsibleConnectionFailure("no exporter for this host: set jumpstarter_host (a socket path or HOST:PORT) "
                                       "or jumpstarter_lease with jumpstarter_client_config")
    return address


@contextlib.contextmanager
def exporter(get_option, host_name: str, timeout: float):
    """Connect with the plugin's options; errors become AnsibleConnectionFailure naming the exporter."""
    require_library()
    key = exporter_key(get_option)
    extra = list(get_option("jumpstarter_allow") or [])
    try:
        if get_option("jumpstarter_lease"):
            config_path = get_option("jumpstarter_client_config")
            if not config_path:
                raise AnsibleConnectionFailure(f"{key}: jumpstarter_client_config names no client config to reach "
                                               "the controller with")
            config = ClientConfig.load(config_path)
            allow = Allowlist([*DEFAULT_ALLOW, *config.allow, *extra])
            manager = connect_lease(config, get_option("jumpstarter_lease"), allow=allow, timeout=timeout)
        else:
            session = get_option("jumpstarter_session") or f"ansible-{host_name}"
            manager = connect(key, allow=Allowlist([*DEFAULT_ALLOW, *extra]), tls_ca=get_option("jumpstarter_tls_ca"),
                              insecure=get_option("jumpstarter_insecure"), session=session, timeout=timeout)
        with manager as root:
            yield root
    except JumpstarterLabError as e:
        raise AnsibleConnectionFailure(f"exporter {key}: {e}") from None


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
