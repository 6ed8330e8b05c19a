# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""Options every plugin uses to reach an exporter (one group, one fragment)."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  jumpstarter_host:
    description:
      - Where the board's exporter listens - a Unix socket path (local mode) or C(HOST:PORT) (standalone mode).
      - One of O(jumpstarter_host) or O(jumpstarter_lease) is needed.
    type: str
    vars:
      - name: jumpstarter_host
    env:
      - name: JUMPSTARTER_HOST
  jumpstarter_lease:
    description:
      - Name of a granted lease (distributed mode) whose exporter to reach, through the controller named in
        O(jumpstarter_client_config); for example from C(jumpstarter-lab lease create). Takes precedence over
        O(jumpstarter_host).
      - Every connection of a lease joins the lease's one exporter session, so board state carries from task to
        task; the lease is renewed while a task is connected.
    type: str
    vars:
      - name: jumpstarter_lease
    env:
      - name: JMP_LEASE
  jumpstarter_client_config:
    description: Client config file (endpoint, token, TLS, driver allowlist) to reach the controller with a lease.
    type: path
    vars:
      - name: jumpstarter_client_config
    env:
      - name: JMP_CLIENT_CONFIG
  jumpstarter_session:
    description:
      - Name of the exporter session to join, so tasks, modules and the connection share one set of driver
        instances (a board powered on by one task is still on in the next).
      - Defaults to C(ansible-) followed by the inventory host name (O(inventory_hostname)). Not used with a
        lease (the lease is the session).
    type: str
    vars:
      - name: jumpstarter_session
  inventory_hostname:
    description:
      - The host's name in the inventory, which Ansible sets; the default O(jumpstarter_session) is named after
        it, not after C(ansible_host), so the connection and the modules of a host always share a session.
    type: str
    vars:
      - name: inventory_hostname
  jumpstarter_tls_ca:
    description: CA certificate that signed a TLS exporter's certificate (standalone mode).
    type: path
    vars:
      - name: jumpstarter_tls_ca
  jumpstarter_tls_cert:
    description:
      - Client certificate to present to a standalone exporter that requires mutual TLS (started with
        C(--tls-client-ca)); needs O(jumpstarter_tls_key).
    type: path
    vars:
      - name: jumpstarter_tls_cert
  jumpstarter_tls_key:
    description: Private key of O(jumpstarter_tls_cert).
    type: path
    vars:
      - name: jumpstarter_tls_key
  jumpstarter_token_file:
    description:
      - File (mode 0600) holding the client token of a standalone exporter started with C(--token-file).
    type: path
    vars:
      - name: jumpstarter_token_file
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
  jumpstarter_pins:
    description:
      - Load driver client code only from these distributions, each matching its digest (C(sha256:...)), as
        printed by C(jumpstarter-lab drivers pins) on a host whose installation you trust.
      - Added to the C(drivers.pins) of O(jumpstarter_client_config). Unset, no digest is checked.
    type: dict
    default: {}
    vars:
      - name: jumpstarter_pins
"""
