# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""The plugin side of the controller client: a client config in, one blocking call out."""

from __future__ import annotations

import asyncio
import os

from ansible.errors import AnsibleError

try:
    from jumpstarter_lab.client.lease import ClientConfig, ControllerClient
    from jumpstarter_lab.errors import JumpstarterLabError
except ImportError as e:  # the controller's Python lacks the library
    IMPORT_ERROR: Exception | None = e
else:
    IMPORT_ERROR = None


def with_controller(config_path: str | None, work, what: str):
    """Run `await work(client)` with a ControllerClient for the client config at `config_path`.

    Errors of the library (a refused token, an unreachable controller, an unknown lease)
    become AnsibleError saying `what` failed and why.
    """
    if IMPORT_ERROR is not None:
        raise AnsibleError(f"the jumpstarter_lab Python package is needed on the Ansible controller ({IMPORT_ERROR}); "
                           "install the collection's exporter/ distribution into the Python that runs Ansible")
    if not config_path:
        raise AnsibleError(f"{what}: no client config (set client_config, the jumpstarter_client_config variable "
                           "or JMP_CLIENT_CONFIG)")

    async def main():
        client = ControllerClient(ClientConfig.load(os.path.expanduser(config_path)))
        try:
            return await work(client)
        finally:
            await client.close()

    try:
        return asyncio.run(main())
    except JumpstarterLabError as e:
        raise AnsibleError(f"{what}: {e}") from None
