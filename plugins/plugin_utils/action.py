# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""What the collection's action plugins share: arguments checked against their module's documentation."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.jumpstarter.lab.plugins.plugin_utils.exporter_client import task_options
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.module_spec import argument_spec


class JumpstarterAction(ActionBase):
    """An action plugin that runs one of this collection's modules on the Ansible controller.

    Subclasses name their module (MODULE, its fully qualified name) and implement `act`, which
    gets the validated arguments and returns what goes into the task's result."""

    MODULE = ""
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        _validation, args = self.validate_argument_spec(argument_spec=argument_spec(self.MODULE))
        result.update(self.act(args, task_vars))
        return result

    def act(self, args: dict, task_vars: dict) -> dict:
        raise NotImplementedError

    def unreachable_in_check_mode(self, task_vars: dict) -> dict | None:
        """In check mode, the result of a task whose host has no exporter to reach because its lease task ran in
        check mode too (and so took no lease); None when there is one to check against, or outside check mode."""
        if not self._task.check_mode:
            return None
        host = task_options(self._play_context, task_vars, self._templar)
        if host("jumpstarter_lease") or host("jumpstarter_host"):
            return None
        return {"changed": False, "skipped": True,
                "msg": "check mode: the host holds no lease (a lease task in check mode takes none), so there is "
                       "no exporter to check against; run the lease task with check_mode: false to look at the board"}
