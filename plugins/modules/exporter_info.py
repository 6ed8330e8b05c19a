# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
# The work is done by the action plugin of the same name, on the Ansible controller; this file documents it.

from __future__ import annotations

DOCUMENTATION = r"""
module: exporter_info
short_description: List the exporters a Jumpstarter controller has, with their status and availability
description:
  - Returns the exporters this client may lease (those matching O(selector), or the one named O(name)), each with
    its labels, whether it is online, its status (upstream's ExporterStatus values), whether it is in service,
    and its status message (who holds it, or why it is out of service).
  - Runs on the Ansible controller, talking to the Jumpstarter controller; nothing runs on a board.
version_added: 0.1.0
author: jumpstarter.lab developers (@jumpstarter-lab)
extends_documentation_fragment:
  - jumpstarter.lab.action  # first: its membership wins over the empty one of .actiongroups
  - jumpstarter.lab.client_config
  - jumpstarter.lab.action.controller_timeout
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
  - ansible.builtin.action_common_attributes.flow
options:
  selector:
    description: Labels the exporters must have, e.g. C(board=rpi4,site!=lab2); empty, all of them.
    type: str
    default: ""
  name:
    description: Only the exporter of this name; the task fails when there is none.
    type: str
attributes:
  check_mode:
    support: full
    details: It only reads, so it runs in check mode too.
seealso:
  - module: jumpstarter.lab.lease_info
  - plugin: jumpstarter.lab.jumpstarter
    plugin_type: inventory
"""

EXAMPLES = r"""
- name: See which boards are free before a test run
  hosts: localhost
  gather_facts: false
  tasks:
    - name: The controller's Raspberry Pi 4 boards
      jumpstarter.lab.exporter_info:
        selector: board=rpi4
        client_config: ~/.config/jumpstarter/clients/alice.yaml
      register: boards

    - name: Say which are free
      ansible.builtin.debug:
        msg: "{{ boards.exporters | selectattr('status', 'equalto', 'available') | map(attribute='name') | list }}"
"""

RETURN = r"""
exporters:
  description: The exporters found, by name.
  returned: success
  type: list
  elements: dict
  sample: [{"name": "rack1-board1", "online": true, "status": "available", "enabled": true, "message": "",
            "labels": {"board": "rpi4", "rack": "rack1"}}]
  contains:
    name:
      description: The exporter's name.
      type: str
      sample: rack1-board1
    online:
      description: Whether the controller has heard from it within its grace period.
      type: bool
      sample: true
    status:
      description:
        - Upstream's ExporterStatus, in lower case without its prefix; C(lease_ready) while leased.
        - One of C(available), C(lease_ready), C(before_lease_hook), C(after_lease_hook),
          C(before_lease_hook_failed), C(after_lease_hook_failed), C(offline) and C(unspecified).
      type: str
      sample: available
    enabled:
      description: Whether it is in service; an admin takes one out with C(jumpstarter-lab admin disable-exporter).
      type: bool
      sample: true
    message:
      description: What it or the controller says of it, e.g. C(leased by alice) (who holds it), or why it is out of service.
      type: str
      sample: ""
    labels:
      description: Its labels.
      type: dict
      sample: {"board": "rpi4", "rack": "rack1"}
"""
