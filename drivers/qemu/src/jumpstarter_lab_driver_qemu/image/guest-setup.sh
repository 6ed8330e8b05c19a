#!/bin/sh
# Configures the QEMU board's guest; runs inside the debootstrapped tree (chroot) at build time.
# Part of the image recipe: changing this file changes the cache key, so the image is rebuilt.
# Environment: BOARD_HOSTNAME, BOARD_PASSWORD, BOARD_MARKER.
set -eu

echo "$BOARD_HOSTNAME" > /etc/hostname
printf '127.0.0.1 localhost\n127.0.1.1 %s\n' "$BOARD_HOSTNAME" > /etc/hosts
printf '/dev/vda / ext4 rw,noatime,errors=remount-ro 0 0\n' > /etc/fstab
: > /etc/machine-id  # empty: each boot of each board gets its own id

# Users: root and jumpstarter, both with the documented password; jumpstarter may sudo without one.
echo "root:$BOARD_PASSWORD" | chpasswd
useradd --create-home --shell /bin/bash --groups sudo jumpstarter
echo "jumpstarter:$BOARD_PASSWORD" | chpasswd
echo 'jumpstarter ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/jumpstarter
chmod 0440 /etc/sudoers.d/jumpstarter

# The image's marker, shown above every login prompt on the console (agetty reads /etc/issue.d).
mkdir -p /etc/issue.d
echo "JUMPSTARTER_MARKER=$BOARD_MARKER" > /etc/issue.d/jumpstarter.issue

# Network: DHCP from QEMU's user networking, without waiting for it at boot.
cat > /etc/systemd/network/50-dhcp.network <<'EOF'
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no
EOF
echo 'nameserver 10.0.2.3' > /etc/resolv.conf
systemctl enable systemd-networkd.service

# sshd: password logins (a lab board, reached through the exporter's forwarded port).
cat > /etc/ssh/sshd_config.d/jumpstarter.conf <<'EOF'
PermitRootLogin yes
PasswordAuthentication yes
UseDNS no
EOF

# Boot time: keep the journal in memory and mask what a throwaway lab board does not need.
mkdir -p /etc/systemd/journald.conf.d
printf '[Journal]\nStorage=volatile\n' > /etc/systemd/journald.conf.d/volatile.conf
systemctl mask \
    systemd-networkd-wait-online.service systemd-logind.service systemd-firstboot.service \
    systemd-hwdb-update.service ldconfig.service systemd-journal-catalog-update.service \
    systemd-update-done.service getty@tty1.service systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \
    apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer

# Grow the filesystem to the disk when the disk is larger (disk_size in the exporter config).
cat > /etc/systemd/system/jumpstarter-growfs.service <<'EOF'
[Unit]
Description=Grow the root filesystem to its disk
ConditionPathExists=/dev/vda

[Service]
Type=oneshot
ExecStart=/sbin/resize2fs /dev/vda

[Install]
WantedBy=multi-user.target
EOF
systemctl enable jumpstarter-growfs.service

# Leave out what only takes space.
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/*.log /usr/share/doc/* /usr/share/man/* \
    /usr/share/info/* /usr/share/locale/* /tmp/*
