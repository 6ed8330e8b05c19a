# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""Action plugin of jumpstarter.lab.call: a driver method runs on the exporter, reached from here."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail

from ansible_collections.jumpstarter.lab.plugins.plugin_utils.action import JumpstarterAction
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.exporter_client import driver_at, task_exporter


class ActionModule(JumpstarterAction):
    MODULE = "jumpstarter.lab.call"
    _supports_check_mode = False  # a driver method's effect cannot be predicted

    def act(self, args: dict, task_vars: dict) -> dict:
        what = f"{args['driver']}.{args['method']}"
        if args["count"] < 1:
            raise AnsibleActionFail(f"{what}: count must be at least 1, not {args['count']}")
        with task_exporter(self._play_context, task_vars, self._templar, float(args["timeout"])) as root:
            driver = driver_at(root, args["driver"])
            try:
                value, _streamed = driver.call_any(args["method"], *args["args"], limit=args["count"])
            except Exception as e:  # the library's errors name the driver, method and cause
                raise AnsibleActionFail(f"{what}: {e}") from None
        return {"changed": True, "value": value}
