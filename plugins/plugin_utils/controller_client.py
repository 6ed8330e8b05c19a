# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""The plugin side of the controller client: a client config in, one blocking call out."""

from __future__ import annotations

import asyncio
import os

from ansible.errors import AnsibleError

from ansible_collections.jumpstarter.lab.plugins.plugin_utils.exporter_client import require_library


def with_controller(config_path: str | None, work, what: str, timeout: float | None = None):
    """Run `await work(client)` with a ControllerClient for the client config at `config_path` (each call
    waiting at most `timeout` seconds for the controller, else the library's default).

    Errors of the library (a refused token, an unreachable controller, an unknown lease)
    become AnsibleError saying `what` failed and why.
    """
    require_library(AnsibleError)
    from jumpstarter_lab.client import ClientConfig, ControllerClient
    from jumpstarter_lab.wire.errors import JumpstarterLabError

    if not config_path:
        raise AnsibleError(f"{what}: no client config (set client_config, the jumpstarter_client_config variable "
                           "or JMP_CLIENT_CONFIG)")

    async def main():
        config = ClientConfig.load(os.path.expanduser(config_path))
        client = ControllerClient(config) if timeout is None else ControllerClient(config, timeout)
        try:
            return await work(client)
        finally:
            await client.close()

    try:
        return asyncio.run(main())
    except JumpstarterLabError as e:
        raise AnsibleError(f"{what}: {e}") from None
