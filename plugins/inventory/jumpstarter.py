# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""Inventory plugin: the boards of a lab, from its controller and from exporters listed by hand."""

from __future__ import annotations

DOCUMENTATION = r"""
name: jumpstarter
short_description: Boards of a Jumpstarter lab as inventory hosts, from the controller or listed by hand
description:
  - Lists the exporters a client may lease from a Jumpstarter controller (distributed mode), each as a host
    named after the exporter, with its labels and availability as variables; and exporters listed in the
    inventory file itself (a Unix socket in local mode, C(HOST:PORT) in standalone mode).
  - Every host gets C(ansible_connection=jumpstarter.lab.jumpstarter) and the variables that connection plugin
    reads, so C(ansible all -i lab.jumpstarter.yml -m ansible.builtin.command -a 'uname -a') reaches each
    board's serial console. Hosts from the controller need a lease first (M(jumpstarter.lab.lease)).
  - Hosts are put in the group C(jumpstarter); C(keyed_groups), C(groups) and C(compose) build more from the
    variables, e.g. one group per value of a label.
  - A host from the controller has the variables C(jumpstarter_exporter) (the exporter's name),
    C(jumpstarter_client_config), C(jumpstarter_labels), C(jumpstarter_online) and C(jumpstarter_status), one of
    C(available), C(lease_ready) (leased), C(before_lease_hook), C(after_lease_hook),
    C(before_lease_hook_failed), C(after_lease_hook_failed), C(offline) and C(unspecified) (upstream's
    ExporterStatus values), C(jumpstarter_enabled) (false while an admin has it out of service, when it is
    granted to nobody) and C(jumpstarter_status_message) (e.g. why it is out of service, or C(leased by alice)).
    A host listed in the file has C(jumpstarter_host), C(jumpstarter_labels), and
    C(jumpstarter_tls_ca) or C(jumpstarter_insecure) when given. What comes from the controller is marked
    unsafe, never templated.
  - The inventory file's name must end in C(jumpstarter.yml) or C(jumpstarter.yaml).
  - With O(cache=true) the controller's list of exporters is kept in Ansible's inventory cache
    (O(cache_plugin), O(cache_connection), O(cache_timeout)), and a later run within O(cache_timeout) reads it
    from there without asking the controller; C(ansible-inventory --flush-cache) asks again. The exporters
    listed in the file itself are never cached.
author: jumpstarter.lab developers (@jumpstarter-lab)
version_added: 0.1.0
extends_documentation_fragment:
  - ansible.builtin.constructed
  - ansible.builtin.inventory_cache
options:
  plugin:
    description: The name of this plugin, so Ansible picks it for the file.
    type: str
    required: true
    choices: [jumpstarter.lab.jumpstarter]
  client_config:
    description:
      - Client config file (endpoint, token, TLS) of the controller to list exporters from. Without it, only
        O(exporters) are listed.
    type: path
    env:
      - name: JMP_CLIENT_CONFIG
  selector:
    description: Label selector the controller's exporters must match, e.g. C(board=rpi4,site!=lab2).
    type: str
    default: ""
  online_only:
    description: Leave out exporters the controller reports offline.
    type: bool
    default: false
  timeout:
    description: Seconds to wait for the controller's answer; an unreachable or silent controller fails the
      inventory source after that, naming its address.
    type: float
    default: 10
  exporters:
    description:
      - Exporters reached directly, by inventory host name. Each is a mapping with C(host) (a Unix socket path or
        C(HOST:PORT)) and optionally C(labels) (a mapping, for grouping), C(tls_ca) and C(insecure).
    type: dict
    default: {}
"""

EXAMPLES = r"""
# lab.jumpstarter.yml: every board alice may lease, grouped by their "board" label
plugin: jumpstarter.lab.jumpstarter
client_config: ~/.config/jumpstarter/clients/alice.yaml
online_only: true
keyed_groups:
  - key: jumpstarter_labels.board
    prefix: board

# bench.jumpstarter.yml: two boards on this desk, no controller
plugin: jumpstarter.lab.jumpstarter
exporters:
  board1:
    host: /run/jumpstarter/board1.sock
    labels: {board: qemu}
  board2:
    host: bench2.example:8083
    tls_ca: /etc/jumpstarter/ca.crt

# cached.jumpstarter.yml: ask the controller at most once an hour
plugin: jumpstarter.lab.jumpstarter
client_config: ~/.config/jumpstarter/clients/alice.yaml
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/jumpstarter-inventory
cache_timeout: 3600
"""

import os

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

from ansible_collections.jumpstarter.lab.plugins.plugin_utils.controller_client import with_controller

CONNECTION = "jumpstarter.lab.jumpstarter"
GROUP = "jumpstarter"


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "jumpstarter.lab.jumpstarter"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(("jumpstarter.yml", "jumpstarter.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        self.inventory.add_group(GROUP)
        for name, spec in (self.get_option("exporters") or {}).items():
            self._add_direct(name, spec, path)
        config = self.get_option("client_config")
        if config:
            config = os.path.abspath(os.path.expanduser(config))
            for exporter in self._controller_exporters(config, path, cache):
                self._add_from_controller(config, exporter)

    def _controller_exporters(self, config: str, path: str, cache: bool) -> list[dict]:
        """The controller's exporters as plain data: from the inventory cache when it is on and holds them for
        this client config and selector (`cache` is False for --flush-cache), else from the controller, then
        kept in the cache."""
        key, asked = self.get_cache_key(path), {"client_config": config, "selector": self.get_option("selector") or ""}
        use_cache = self.get_option("cache")
        if use_cache and cache:
            try:
                cached = self._cache[key]
            except KeyError:
                cached = None  # nothing cached yet, or expired
            if isinstance(cached, dict) and cached.get("asked") == asked:
                return cached["exporters"]
        from jumpstarter_lab.wire import names  # with_controller has said how to install it if it is missing

        found = with_controller(config, lambda client: client.exporters(asked["selector"]),
                                f"listing exporters from the controller in {config}",
                                timeout=self.get_option("timeout"))
        exporters = [{"name": names.short(exporter.name), "labels": dict(exporter.labels),
                      "status": names.status_name(exporter.status), "enabled": exporter.enabled,
                      "message": exporter.status_message} for exporter in found]
        if use_cache:
            self._cache[key] = {"asked": asked, "exporters": exporters}
        return exporters

    def _add_direct(self, name: str, spec, path: str) -> None:
        if not isinstance(spec, dict) or not spec.get("host"):
            raise AnsibleParserError(f"{path}: exporters.{name} needs a 'host' (a socket path or HOST:PORT)")
        unknown = set(spec) - {"host", "labels", "tls_ca", "insecure"}
        if unknown:
            raise AnsibleParserError(f"{path}: exporters.{name} has unknown keys {', '.join(sorted(unknown))} "
                                     "(known: host, labels, tls_ca, insecure)")
        variables = {"jumpstarter_host": spec["host"], "jumpstarter_labels": dict(spec.get("labels") or {})}
        if spec.get("tls_ca"):
            variables["jumpstarter_tls_ca"] = spec["tls_ca"]
        if spec.get("insecure"):
            variables["jumpstarter_insecure"] = True
        self._add_host(name, variables)

    def _add_from_controller(self, config: str, exporter: dict) -> None:
        online = exporter["status"] not in ("offline", "unspecified")
        if self.get_option("online_only") and not online:
            return
        self._add_host(exporter["name"], {
            "jumpstarter_exporter": exporter["name"],
            "jumpstarter_client_config": config,
            "jumpstarter_labels": exporter["labels"],
            "jumpstarter_online": online,
            "jumpstarter_status": exporter["status"],
            "jumpstarter_enabled": exporter.get("enabled", True),  # a cache an older version wrote has no field
            "jumpstarter_status_message": exporter.get("message", ""),
        })

    def _add_host(self, name: str, variables: dict) -> None:
        self.inventory.add_host(name, group=GROUP)
        variables = {"ansible_connection": CONNECTION, **variables}
        for key, value in variables.items():
            self.inventory.set_variable(name, key, value)
        strict = self.get_option("strict")
        self._set_composite_vars(self.get_option("compose"), variables, name, strict=strict)
        self._add_host_to_composed_groups(self.get_option("groups"), variables, name, strict=strict)
        self._add_host_to_keyed_groups(self.get_option("keyed_groups"), variables, name, strict=strict)
