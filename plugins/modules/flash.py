# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
# The work is done by the action plugin of the same name, on the Ansible controller; this file documents it.

from __future__ import annotations

DOCUMENTATION = r"""
module: flash
short_description: Write an image from the Ansible controller to a board's storage
description:
  - Switches the board's storage (a storage mux, or the QEMU board's disk) to the exporter, streams O(src) to
    it, checks that what arrived has the file's size and sha256, and switches the storage back to the board.
  - Raw images and gzip, xz, bzip2 and zstd ones are decompressed on the exporter as they arrive. A failed,
    corrupt or cut-off transfer leaves the previous image in place.
  - Idempotent - the exporter records the sha256 of the last image it wrote to the storage, and reads the
    storage back to see that it still holds exactly that; an image it holds is not written again (no change)
    unless O(force=true). A board that wrote to its disk since, or another image, means a change.
  - Reaches the exporter from the host's variables, as M(jumpstarter.lab.call) does. Runs on the Ansible
    controller.
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
  src:
    description: The image on the Ansible controller (a relative path is looked up in the play's C(files)).
    type: path
    required: true
  storage:
    description:
      - Dotted path of the storage driver, e.g. C(board.storage). By default the storage driver named
        C(storage), else the first one found.
    type: str
  force:
    description: Write the image even when the storage holds it already.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details:
      - Checks that the image and the storage driver exist and whether the storage holds the image already;
        writes nothing and does not switch the storage.
      - When the host's lease task ran in check mode too, it holds no lease and the task is skipped.
  diff_mode:
    support: full
    details: The sha256 of the image the storage holds (and when it was written) against the one of O(src).
notes:
  - Power the board off first when its storage must not change under it; the QEMU board keeps running on its
    old disk until it is powered off.
seealso:
  - module: jumpstarter.lab.call
  - module: jumpstarter.lab.lease
"""

EXAMPLES = r"""
- name: Flash the build and boot it
  hosts: jumpstarter
  gather_facts: false
  tasks:
    - name: Power off
      jumpstarter.lab.call: {driver: board.power, method: "off"}

    - name: Write the image
      jumpstarter.lab.flash:
        src: build/image.wic.zst
      register: flashed

    - name: Power on
      jumpstarter.lab.call: {driver: board.power, method: "on"}
"""

RETURN = r"""
src:
  description: The image that was written.
  returned: success
  type: str
  sample: /home/alice/build/image.wic.zst
storage:
  description: The storage driver written to (O(storage), or the name of the one found).
  returned: success
  type: str
  sample: board.storage
bytes_received:
  description: Bytes the exporter received (the file's size; 0 when the storage held the image already).
  returned: success, not in check mode
  type: int
  sample: 104857600
bytes_written:
  description: Bytes the storage holds after decompression (written now, or earlier when nothing changed).
  returned: success, not in check mode
  type: int
  sample: 2147483648
sha256:
  description: SHA-256 of the image file, equal to what the exporter received.
  returned: success
  type: str
  sample: e404cb3815551a3ffe808c2e4ef87d8d6ca872e3685fb576e6449795abbd97e4
compression:
  description: The image's compression, as the exporter recognised it.
  returned: success, not in check mode
  type: str
  sample: zstd
"""
