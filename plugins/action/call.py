# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""Action plugin of jumpstarter.lab.call: a driver method runs on the exporter, reached from here."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.jumpstarter.lab.plugins.plugin_utils.exporter_client import driver_at, task_exporter
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.module_spec import argument_spec


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = False  # a driver method's effect cannot be predicted

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        _validation, args = self.validate_argument_spec(argument_spec=argument_spec("jumpstarter.lab.call"))

        what = f"{args['driver']}.{args['method']}"
        with task_exporter(self._play_context, task_vars, self._templar, float(args["timeout"])) as root:
            driver = driver_at(root, args["driver"])
            try:
                value = driver.call(args["method"], *args["args"])
            except Exception as e:  # the library's errors name the driver, method and cause
                raise AnsibleActionFail(f"{what}: {e}") from None
        result.update(changed=True, value=value)
        return result
