# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
# The work is done by the action plugin of the same name, on the Ansible controller; this file documents it.

from __future__ import annotations

DOCUMENTATION = r"""
module: call
short_description: Call a method a board's exporter exports (power, storage, GPIO, ...)
description:
  - Calls O(method) of the driver at O(driver) in the host's exporter tree with O(args), and returns what it
    returned, e.g. C(board.power) C(on), C(relay) C(off), C(board.storage) C(host).
  - Reaches the exporter the way the P(jumpstarter.lab.jumpstarter#connection) connection plugin does, from the host's
    variables - a socket or address (C(jumpstarter_host), joining the host's exporter session) or a lease
    (C(jumpstarter_lease) with C(jumpstarter_client_config)) - so a board powered on here is on for the tasks
    that use its console.
  - Runs on the Ansible controller; nothing runs on the board. Reports a change unless the exporter declares
    the method read-only (it only observes, such as C(power.read) or C(storage.status); C(jumpstarter-lab tree)
    marks them); use C(changed_when) to say otherwise.
version_added: 0.1.0
author: jumpstarter.lab developers (@jumpstarter-lab)
extends_documentation_fragment:
  - jumpstarter.lab.action.async_job  # before jumpstarter.lab.action, whose async it replaces
  - jumpstarter.lab.action  # first: its membership wins over the empty one of .actiongroups
  - jumpstarter.lab.client_config
  - jumpstarter.lab.action.exporter_timeout
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
  - ansible.builtin.action_common_attributes.flow
options:
  driver:
    description: Dotted path of the driver in the exporter's tree, as C(jumpstarter-lab tree) shows it.
    type: str
    required: true
  method:
    description: Name of the exported method.
    type: str
    required: true
  args:
    description: Positional arguments of the method.
    type: list
    elements: raw
    default: []
  count:
    description:
      - For a streaming method (one that yields values, such as a power meter's C(read)), how many of its values
        to return at most; the stream is ended there.
    type: int
    default: 100
attributes:
  check_mode:
    support: partial
    details:
      - Methods the exporter declares read-only are called and return their values; the others are not called
        and the task is reported skipped.
      - When the host's lease task ran in check mode too, it holds no lease and the task is skipped.
seealso:
  - module: jumpstarter.lab.lease
"""

EXAMPLES = r"""
- name: Power-cycle the board
  jumpstarter.lab.call:
    driver: board.power
    method: "{{ item }}"
  loop: ["off", "on"]

- name: Which side the board's storage is on
  jumpstarter.lab.call:
    driver: board.storage
    method: status
  register: storage
  changed_when: false
"""

RETURN = r"""
value:
  description:
    - What the method returned (null for methods that return nothing); for a streaming method, the list of the
      values it yielded, at most O(count).
  returned: success
  type: raw
  sample: dut
"""
