# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""Action plugin of jumpstarter.lab.exporter_info: the controller's exporters, read from here."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail

from ansible_collections.jumpstarter.lab.plugins.plugin_utils.action import JumpstarterAction
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.controller_client import with_controller


class ActionModule(JumpstarterAction):
    MODULE = "jumpstarter.lab.exporter_info"
    _supports_check_mode = True  # it only reads

    def act(self, args: dict, task_vars: dict) -> dict:
        from jumpstarter_lab.client import exporter_record  # with_controller says how to install it if missing

        found = with_controller(self.client_config(args, task_vars),
                                lambda client: client.exporters(args["selector"]), "listing exporters",
                                timeout=float(args["timeout"]))
        exporters = [exporter_record(exporter) for exporter in found]
        if args["name"]:
            exporters = [record for record in exporters if record["name"] == args["name"]]
            if not exporters:
                raise AnsibleActionFail(f"exporter_info: no exporter {args['name']} matching '{args['selector']}' "
                                        "that this client may see")
        return {"changed": False, "exporters": exporters}
