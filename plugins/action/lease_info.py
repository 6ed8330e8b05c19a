# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""Action plugin of jumpstarter.lab.lease_info: this client's leases, read from the controller."""

from __future__ import annotations

from ansible_collections.jumpstarter.lab.plugins.plugin_utils.action import JumpstarterAction
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.controller_client import with_controller


class ActionModule(JumpstarterAction):
    MODULE = "jumpstarter.lab.lease_info"
    _supports_check_mode = True  # it only reads

    def act(self, args: dict, task_vars: dict) -> dict:
        from jumpstarter_lab.client import lease_record  # with_controller says how to install it if missing

        async def work(client):
            if args["name"]:
                return [await client.get_lease(args["name"])]
            return await client.leases(not args["all"], args["tag_filter"])

        found = with_controller(self.client_config(args, task_vars), work,
                                f"reading lease {args['name']}" if args["name"] else "listing leases",
                                timeout=float(args["timeout"]))
        return {"changed": False, "leases": [lease_record(status) for status in found]}
