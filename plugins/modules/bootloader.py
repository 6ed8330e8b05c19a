# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
# The work is done by the action plugin of the same name, on the Ansible controller; this file documents it.

from __future__ import annotations

DOCUMENTATION = r"""
module: bootloader
short_description: Drive a board's U-Boot - net-boot a kernel, or write an image to its disk from the bootloader
description:
  - Power-cycles the board and stops its U-Boot autoboot on the console (or, with O(reboot=false), talks to a
    board already at its prompt), sets O(env), runs O(commands) and stops at the first that fails.
  - With O(image), serves the image from the exporter's TFTP server and has U-Boot load it into RAM and write
    it to O(device) (through C(gzwrite) for a C(.gz) image, decompressed as it is written). The board stays at
    its prompt; the next power-on boots what was written.
  - With O(kernel), serves the kernel (and O(initrd), O(dtb)) from the exporter's TFTP server, configures
    U-Boot's network by DHCP, loads them and boots them with O(bootargs). With O(wait_for), waits for that text
    on the console (a login prompt), so the next task over the P(jumpstarter.lab.jumpstarter#connection)
    connection finds Linux up.
  - The files go from the Ansible controller to the exporter's TFTP root for this exporter session only; the
    exporter removes them when the session ends.
  - Reaches the exporter from the host's variables, as M(jumpstarter.lab.call) does. Runs on the Ansible
    controller. Every wait has a deadline; a U-Boot command that fails ends the task with its output.
version_added: 0.1.0
author: jumpstarter.lab developers (@jumpstarter-lab)
extends_documentation_fragment:
  - jumpstarter.lab.action  # first: its membership wins over the empty one of .actiongroups
  - jumpstarter.lab.client_config
  - jumpstarter.lab.action.exporter_timeout
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
  - ansible.builtin.action_common_attributes.flow
options:
  uboot:
    description:
      - Dotted path of the U-Boot driver (C(jumpstarter_lab_driver_uboot.UBoot), or upstream's C(UbootConsole)).
        By default the one named C(uboot), else the first one found.
    type: str
  tftp:
    description:
      - Dotted path of the exporter's TFTP server driver (C(jumpstarter_lab_driver_netboot.TftpServer)), needed
        by O(kernel) and O(image). By default the one named C(tftp).
    type: str
    default: tftp
  autoboot:
    description:
      - Power-cycle the board and let U-Boot boot by itself, sending no key, until O(wait_for) shows (a board
        whose disk was written with O(image)). Nothing else is done; O(env), O(commands), O(image) and
        O(kernel) need the prompt and cannot be combined with it.
      - The P(jumpstarter.lab.jumpstarter#connection) connection presses keys when it attaches, which stop a
        U-Boot countdown; power a U-Boot board on with this, not with M(jumpstarter.lab.call), before tasks
        that use its console.
    type: bool
    default: false
  reboot:
    description:
      - Power-cycle the board and stop its autoboot. With V(false), the board must be at its U-Boot prompt
        already.
    type: bool
    default: true
  env:
    description: U-Boot variables to set first (a null value removes one); values are taken literally.
    type: dict
    default: {}
  commands:
    description: U-Boot commands to run at the prompt, in order, after O(env); the task fails at the first
      that returns non-zero.
    type: list
    elements: str
    default: []
  image:
    description:
      - A disk image on the Ansible controller to write to O(device) from U-Boot - raw, loaded whole into the
        board's RAM and written from block 0; or gzip-compressed as C(.gz), for a U-Boot built with C(gzwrite)
        (Debian's C(u-boot-qemu) is not).
    type: path
  device:
    description: The block device U-Boot writes O(image) to, as C(<interface> <number>).
    type: str
    default: virtio 0
  kernel:
    description: A kernel on the Ansible controller to net-boot (for x86 a bzImage, booted with C(zboot)).
    type: path
  initrd:
    description: An initial ramdisk to load with O(kernel).
    type: path
  dtb:
    description: A device tree to load with O(kernel).
    type: path
  bootargs:
    description: The kernel command line (U-Boot's C(bootargs)); by default U-Boot's own.
    type: str
  boot_method:
    description: The U-Boot command that boots the kernel; by default chosen from U-Boot's C(arch).
    type: str
    choices: [zboot, bootz, booti, bootm]
  wait_for:
    description:
      - After the boot, a regular expression to wait for on the console, such as V(login:). Required with
        O(autoboot).
    type: str
  boot_timeout:
    description: Seconds to wait for O(wait_for) after the kernel starts (with O(autoboot), after power-on).
    type: int
    default: 300
  prompt_timeout:
    description: Seconds from power-on to the U-Boot prompt; by default the driver's (60).
    type: int
  transfer_timeout:
    description: Seconds a TFTP load or a disk write may take.
    type: int
    default: 600
attributes:
  check_mode:
    support: full
    details:
      - Checks that the files exist and that the exporter has the U-Boot (and TFTP) drivers; touches nothing.
notes:
  - O(image) and O(kernel) together write the image first, then net-boot the kernel.
  - The QEMU board with C(firmware=u-boot) reaches a TFTP server on a 127.x address at port 69 (QEMU's user
    network answers 10.0.2.2 itself); see the QEMU driver's README.
seealso:
  - module: jumpstarter.lab.call
  - module: jumpstarter.lab.flash
"""

EXAMPLES = r"""
- name: Net-boot a kernel through U-Boot and use the board
  hosts: jumpstarter
  gather_facts: false
  tasks:
    - name: Boot the kernel and initrd over TFTP from the exporter
      jumpstarter.lab.bootloader:
        env: {tftpblocksize: "1468"}  # the largest TFTP block an Ethernet frame holds whole
        commands: ["virtio scan"]
        kernel: build/vmlinuz
        initrd: build/initrd.img
        bootargs: console=ttyS0,115200 root=/dev/vda rw quiet
        wait_for: "login: "
      register: booted

    - name: A task on the net-booted Linux, over its serial console
      ansible.builtin.command: uname -r
      changed_when: false

    - name: Power off
      jumpstarter.lab.call: {driver: board.power, method: "off"}

- name: Write an image to the disk from U-Boot, then boot it
  hosts: jumpstarter
  gather_facts: false
  tasks:
    - name: Write the image
      jumpstarter.lab.bootloader:
        commands: ["virtio scan"]
        image: build/disk.img
        device: virtio 0

    - name: Power-cycle into what was written, and wait for its login prompt
      jumpstarter.lab.bootloader:
        autoboot: true
        wait_for: "login: "
"""

RETURN = r"""
env:
  description: The variables O(env) set.
  returned: success
  type: dict
  sample: {tftpblocksize: "1468"}
commands:
  description: What each of O(commands) printed, with its return code.
  returned: success
  type: list
  elements: dict
  sample: [{command: virtio scan, rc: 0, output: ""}]
dhcp:
  description: The network DHCP gave U-Boot, when a file was loaded.
  returned: when O(image) or O(kernel) is given
  type: dict
  sample: {ip_address: 10.0.2.15, gateway: 10.0.2.2, netmask: 255.255.255.0}
loads:
  description: Each file U-Boot loaded over TFTP - its name, bytes and seconds.
  returned: when O(image) or O(kernel) is given
  type: list
  elements: dict
  sample: [{name: vmlinuz, bytes: 8222656, seconds: 0.6}]
written:
  description: The image written to O(device) - bytes loaded and seconds the write took.
  returned: when O(image) is given
  type: dict
  sample: {device: virtio 0, name: disk.img, bytes: 302338048, seconds: 3.1}
booted:
  description: Whether a kernel was started.
  returned: success
  type: bool
  sample: true
seconds:
  description: How long the task took, power-cycle included.
  returned: success
  type: float
  sample: 14.2
msg:
  description: What was done, with bytes and times.
  returned: always
  type: str
  sample: "net-booted vmlinuz (8222656 bytes in 0.6s), initrd.img (4763736 bytes in 0.3s); 'login: ' after 12.1s"
"""
