# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""What every module of this collection shares: it runs on the Ansible controller (an action plugin).

The attributes' descriptions come from ansible.builtin.action_common_attributes (and its .actiongroups and
.flow parts), which a module extends beside this; here is only how far this collection supports each."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
attributes:
  action:
    support: full
    details: All of the work is done by the action plugin, on the Ansible controller.
  action_group:
    membership: [jumpstarter.lab.jumpstarter]
  async:
    support: none
  bypass_host_loop:
    support: none
  diff_mode:
    support: none
  platform:
    platforms: all
    details: Nothing runs on the board, so its operating system does not matter.
requirements:
  - The C(jumpstarter_lab) Python package (the client library) and the driver families' clients, in the Python
    that runs Ansible - C(pip install -r requirements.txt && pip install --no-deps exporter drivers/*), paths in
    the installed collection.
notes:
  - Runs on the Ansible controller, as an action plugin; needs the C(jumpstarter_lab) Python package there.
  - >-
    Reaches the board's exporter from the host variables of the P(jumpstarter.lab.jumpstarter#connection)
    connection plugin, whatever the host's own connection is - C(jumpstarter_host) (a socket or HOST:PORT),
    or C(jumpstarter_lease) with C(jumpstarter_client_config) (both set by M(jumpstarter.lab.lease)), and
    C(jumpstarter_session), C(jumpstarter_allow), C(jumpstarter_pins), C(jumpstarter_tls_ca),
    C(jumpstarter_tls_cert), C(jumpstarter_tls_key), C(jumpstarter_token_file), C(jumpstarter_insecure);
    C(jumpstarter_exporter) (set by the P(jumpstarter.lab.jumpstarter#inventory) inventory plugin) names the
    exporter M(jumpstarter.lab.lease) leases.
  - The group C(jumpstarter.lab.jumpstarter) holds every module of the collection, so
    C(module_defaults) with C(group/jumpstarter.lab.jumpstarter) sets an option they all share (O(timeout),
    O(client_config)) once.
"""

    # For modules whose work may run as an async job (JumpstarterAction._start_job); listed before the
    # fragment above, whose `async: none` it replaces.
    ASYNC_JOB = r"""
attributes:
  async:
    support: partial
    details:
      - >-
        As an async job the work runs on the Ansible controller, so the task's connection must be local
        (C(delegate_to: localhost), or a play on localhost), because Ansible looks for the job with
        M(ansible.builtin.async_status) through the host's connection; on a board's connection it fails saying so.
"""

    # The one timeout of the modules that reach a board's exporter (call, flash, bootloader).
    EXPORTER_TIMEOUT = r"""
options:
  timeout:
    description: Seconds to wait for the exporter to answer when connecting.
    type: int
    default: 30
"""

    # The one timeout of the modules that only read from the controller (exporter_info, lease_info).
    CONTROLLER_TIMEOUT = r"""
options:
  timeout:
    description: Seconds to wait for the controller's answer.
    type: int
    default: 30
"""
