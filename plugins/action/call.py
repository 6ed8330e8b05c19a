# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""Action plugin of jumpstarter.lab.call: a driver method runs on the exporter, reached from here."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail

from ansible_collections.jumpstarter.lab.plugins.plugin_utils.action import JumpstarterAction
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.exporter_client import driver_at, task_exporter


class ActionModule(JumpstarterAction):
    MODULE = "jumpstarter.lab.call"
    _supports_check_mode = True  # methods the exporter says are read-only run; the others are skipped
    _supports_async = True  # as a job on the Ansible controller (JumpstarterAction._start_job)

    def act(self, args: dict, task_vars: dict) -> dict:
        what = f"{args['driver']}.{args['method']}"
        if args["count"] < 1:
            raise AnsibleActionFail(f"{what}: count must be at least 1, not {args['count']}")
        if (unreachable := self.unreachable_in_check_mode(task_vars)) is not None:
            return unreachable
        with task_exporter(self._play_context, task_vars, self._templar, float(args["timeout"]),
                           args["client_config"]) as root:
            driver = driver_at(root, args["driver"])
            read_only = args["method"] in driver.read_only_methods
            if self._task.check_mode and not read_only:
                listed = ", ".join(sorted(driver.read_only_methods)) or "none"
                return {"changed": False, "skipped": True,
                        "msg": f"check mode: {what} may change the board, so it was not called "
                               f"(read-only methods of {args['driver']}: {listed})"}
            try:
                value, _streamed = driver.call_any(args["method"], *args["args"], limit=args["count"])
            except Exception as e:  # the library's errors name the driver, method and cause
                raise AnsibleActionFail(f"{what}: {e}") from None
        return {"changed": not read_only, "value": value}
