# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""Options every plugin uses to reach an exporter (one group, one fragment)."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  jumpstarter_host:
    description:
      - Where the board's exporter listens - a Unix socket path (local mode) or C(HOST:PORT) (standalone mode).
    type: str
    required: true
    vars:
      - name: jumpstarter_host
    env:
      - name: JUMPSTARTER_HOST
  jumpstarter_session:
    description:
      - Name of the exporter session to join, so tasks, modules and the connection share one set of driver
        instances (a board powered on by one task is still on in the next).
      - Defaults to C(ansible-) followed by the inventory host name.
    type: str
    vars:
      - name: jumpstarter_session
  jumpstarter_tls_ca:
    description: CA certificate that signed a TLS exporter's certificate (standalone mode).
    type: path
    vars:
      - name: jumpstarter_tls_ca
  jumpstarter_insecure:
    description: Connect to a C(HOST:PORT) exporter without TLS; only for exporters started with C(--insecure).
    type: bool
    default: false
    vars:
      - name: jumpstarter_insecure
  jumpstarter_allow:
    description: Extra driver client packages to trust, as patterns (see the client allowlist in the README).
    type: list
    elements: str
    default: []
    vars:
      - name: jumpstarter_allow
"""
