# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""Action plugin of jumpstarter.lab.flash: the image goes from here to the board's storage."""

from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail

from ansible_collections.jumpstarter.lab.plugins.plugin_utils.action import JumpstarterAction
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.exporter_client import find_driver, task_exporter


class ActionModule(JumpstarterAction):
    MODULE = "jumpstarter.lab.flash"
    _supports_check_mode = True

    def act(self, args: dict, task_vars: dict) -> dict:
        src = self._find_needle("files", args["src"])
        if not os.path.isfile(src):
            raise AnsibleActionFail(f"flash: {src} is not a file")
        with task_exporter(self._play_context, task_vars, self._templar, float(args["timeout"])) as root:
            from jumpstarter_lab.wire import labels  # task_exporter made sure the library is there

            storage = find_driver(root, args["storage"], labels.STORAGE_MUX, "storage", preferred="storage")
            if self._task.check_mode:
                return {"changed": True, "msg": f"would flash {src} to {storage.name}"}
            try:
                outcome = storage.flash(src)
            except Exception as e:  # the library's errors say what the exporter refused and why
                raise AnsibleActionFail(f"flash {src} to {storage.name}: {e}") from None
        return {"changed": True, "src": src, "storage": args["storage"] or storage.name, **outcome}
