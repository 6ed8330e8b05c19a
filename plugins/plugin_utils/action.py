# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""What the collection's action plugins share: arguments checked against their module's documentation, the
check-mode answer for a host without a lease, and async jobs on the Ansible controller."""

from __future__ import annotations

import json
import os
import random

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.jumpstarter.lab.plugins.plugin_utils.exporter_client import task_options
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.module_spec import argument_spec


class JumpstarterAction(ActionBase):
    """An action plugin that runs one of this collection's modules on the Ansible controller.

    Subclasses name their module (MODULE, its fully qualified name) and implement `act`, which
    gets the validated arguments and returns what goes into the task's result. One that sets
    `_supports_async` may run as an async job (see `_start_job`)."""

    MODULE = ""
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        _validation, args = self.validate_argument_spec(argument_spec=argument_spec(self.MODULE))
        if self._task.async_val:
            result.update(self._start_job(args, task_vars))
        else:
            result.update(self.act(args, task_vars))
        return result

    def act(self, args: dict, task_vars: dict) -> dict:
        raise NotImplementedError

    def _start_job(self, args: dict, task_vars: dict) -> dict:
        """Run `act` in a process of its own and return at once, with a job that async_status reads.

        The job file is written where Ansible's async_status looks: the async directory of the host's
        connection. The work runs here, on the Ansible controller, so that directory must be here too: the
        task's connection must be local (delegate_to: localhost, or a play on localhost)."""
        transport = getattr(self._connection, "transport", "") or ""
        if transport.rsplit(".", 1)[-1] != "local":
            raise AnsibleActionFail(
                f"{self.MODULE} runs on the Ansible controller, so as an async job it needs the task's connection "
                f"to be local (add delegate_to: localhost): Ansible looks for the job with async_status through the "
                f"host's connection ({transport or 'unknown'}), which does not reach this machine's job files")
        async_dir = os.path.expanduser(self.get_shell_option("async_dir", default="~/.ansible_async"))
        os.makedirs(async_dir, mode=0o700, exist_ok=True)
        jid = f"{random.randint(0, 999_999_999_999)}.{os.getpid()}"
        path = os.path.join(async_dir, jid)
        started = {"started": 1, "finished": 0, "ansible_job_id": jid, "results_file": path}
        _write_job(path, started)
        child = os.fork()
        if child == 0:  # the job: a second fork, so that nobody has to reap it
            try:
                if os.fork() == 0:
                    os.setsid()
                    _write_job(path, self._job_result(args, task_vars, jid))
            finally:
                os._exit(0)  # never back into Ansible's worker: its queues belong to the parent
        os.waitpid(child, 0)
        return {**started, "changed": False}

    def _job_result(self, args: dict, task_vars: dict, jid: str) -> dict:
        try:
            outcome = self.act(args, task_vars)
        except AnsibleActionFail as e:
            outcome = {"failed": True, "msg": e.message}
        except Exception as e:  # an async job reports what went wrong, like a task does
            outcome = {"failed": True, "msg": f"{type(e).__name__}: {e}"}
        return {**outcome, "ansible_job_id": jid}

    def client_config(self, args: dict, task_vars: dict) -> str | None:
        """The client config to reach the controller with: the task's client_config, else the host's
        jumpstarter_client_config (or JMP_CLIENT_CONFIG), as the connection plugin resolves it."""
        return args["client_config"] or task_options(self._play_context, task_vars, self._templar)(
            "jumpstarter_client_config")

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


def _write_job(path: str, data: dict) -> None:
    """The job file async_status reads, replaced whole so that it never reads half of it."""
    partial = f"{path}.partial"
    with open(partial, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(partial, path)
