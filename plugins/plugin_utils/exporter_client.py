# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""The plugin side of the one client library: options in, a connected driver tree out."""

from __future__ import annotations

import contextlib
import os

from ansible.errors import AnsibleActionFail, AnsibleConnectionFailure
from ansible.plugins.loader import connection_loader

try:
    from jumpstarter_lab.client import Allowlist, ClientConfig, connect, connect_lease
    from jumpstarter_lab.wire.errors import DriverNotFound, JumpstarterLabError
except ImportError as e:  # the controller's Python lacks the library
    IMPORT_ERROR: Exception | None = e
else:
    IMPORT_ERROR = None

# The plugin whose documentation holds the exporter options (doc fragment jumpstarter.lab.exporter).
CONNECTION = "jumpstarter.lab.jumpstarter"


def install_line() -> str:
    """The one command that gives the Python running Ansible what the plugins need: the requirements, then the
    collection's own distributions (the client library and every driver family's client)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return (f"pip install -r {root}/requirements.txt && "
            f"pip install --no-deps {root}/exporter {root}/drivers/*")


def require_library(error: type[Exception] = AnsibleConnectionFailure) -> None:
    """Raise `error` saying how to get the jumpstarter_lab package when this Python lacks it."""
    if IMPORT_ERROR is not None:
        raise error(
            f"the jumpstarter_lab Python package is needed on the Ansible controller ({IMPORT_ERROR}); "
            f"install it into the Python that runs Ansible: {install_line()}")


def task_options(play_context, task_vars: dict, templar):
    """get_option of the jumpstarter connection plugin for an action plugin's task, whatever the host's own
    connection is: its options resolved as Ansible resolves a connection's before a task (every `vars:` entry
    the host has, templated, then environment, ini and the documented defaults)."""
    connection = connection_loader.get(CONNECTION, play_context)
    connection.set_options(var_options=connection._resolve_option_variables(task_vars, templar))
    return connection.get_option


@contextlib.contextmanager
def task_exporter(play_context, task_vars: dict, templar, timeout: float, client_config: str | None = None):
    """exporter() for an action plugin, with the options task_options() resolves (and the task's client_config
    over the host's); failures to reach the exporter or find a driver in it fail the task (AnsibleActionFail)."""
    host = task_options(play_context, task_vars, templar)

    def get_option(name: str):
        return client_config if name == "jumpstarter_client_config" and client_config else host(name)

    try:
        with exporter(get_option, timeout) as root:
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
def exporter(get_option, timeout: float):
    """Connect with the plugin's options; errors become AnsibleConnectionFailure naming the exporter.

    Without a lease, the session is jumpstarter_session, else named after the inventory host, so the
    connection and the action plugins of one host share it whatever ansible_host says."""
    require_library()
    key = exporter_key(get_option)
    extra = list(get_option("jumpstarter_allow") or [])
    pins = dict(get_option("jumpstarter_pins") or {})
    try:
        if get_option("jumpstarter_lease"):
            config_path = get_option("jumpstarter_client_config")
            if not config_path:
                raise AnsibleConnectionFailure(f"{key}: jumpstarter_client_config names no client config to reach "
                                               "the controller with")
            config = ClientConfig.load(config_path)
            allow = config.allowlist(extra, pins)
            manager = connect_lease(config, get_option("jumpstarter_lease"), allow=allow, timeout=timeout)
        else:
            session = get_option("jumpstarter_session") or f"ansible-{get_option('inventory_hostname') or ''}"
            manager = connect(key, allow=Allowlist(extra, pins=pins), tls_ca=get_option("jumpstarter_tls_ca"),
                              insecure=get_option("jumpstarter_insecure"), tls_cert=get_option("jumpstarter_tls_cert"),
                              tls_key=get_option("jumpstarter_tls_key"), token_file=get_option("jumpstarter_token_file"),
                              session=session, timeout=timeout)
        with manager as root:
            yield root
    except JumpstarterLabError as e:
        raise AnsibleConnectionFailure(f"exporter {key}: {e}") from None


def driver_at(root, path: str):
    """The driver at a dotted path of the exporter's tree."""
    try:
        return root.child(path)
    except DriverNotFound as e:
        raise AnsibleConnectionFailure(f"the exporter has no driver '{path}': {e}") from None


def locate_driver(root, path: str | None, label: str, what: str, preferred: str = "console"):
    """(dotted path, driver) of the driver at a dotted path, or of the first one with `label` (preferring one
    named `preferred`)."""
    if path:
        return path, driver_at(root, path)
    try:
        return root.locate(None, label, what, preferred)
    except DriverNotFound as e:
        raise AnsibleConnectionFailure(f"{e}; name one with the {what} option") from None


def find_driver(root, path: str | None, label: str, what: str, preferred: str = "console"):
    """The driver locate_driver() finds."""
    return locate_driver(root, path, label, what, preferred)[1]


def power_state(root) -> tuple[str, str, str] | None:
    """("on" or "off", the power driver's path, what it said) for the board's power driver (one named power
    first), or None when the tree has none that can tell."""
    from jumpstarter_lab.wire import labels

    try:
        path, power = root.locate(None, labels.POWER, "power", preferred="power")
    except DriverNotFound:
        return None
    state = power.state() if hasattr(power, "state") else None
    return None if state is None else (state[0], path, f"{path}.{state[1]}")
