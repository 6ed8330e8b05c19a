"""The QEMU board: a Debian guest under QEMU with power, a serial console, flashable storage
and a forwarded TCP port (the guest's sshd), plus the tool that builds that guest."""
