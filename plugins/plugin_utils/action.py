# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""What the collection's action plugins share: arguments checked against their module's documentation."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

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
