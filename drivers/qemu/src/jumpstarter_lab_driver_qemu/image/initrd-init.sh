#!/bin/sh
# /init of the QEMU board's initrd: load the few modules the root disk needs, mount it, switch to it.
# Part of the image recipe. /modules lists the modules to load, in dependency order.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

halt() {
    echo "jumpstarter-initrd: $*; halted"
    while :; do sleep 3600; done
}

root=/dev/vda init=/sbin/init mode=rw
# shellcheck disable=SC2013  # the kernel command line is words, not lines
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        root=*) root=${arg#root=} ;;
        init=*) init=${arg#init=} ;;
        ro) mode=ro ;;
        rw) mode=rw ;;
    esac
done

# shellcheck disable=SC2013  # one module name per word
for module in $(cat /modules); do
    insmod "/lib/modules/$module.ko" || echo "jumpstarter-initrd: cannot load $module"
done

tries=50  # 5 s for the disk to show up (it is there as soon as virtio_blk is loaded)
while [ ! -b "$root" ]; do
    tries=$((tries - 1))
    [ "$tries" -gt 0 ] || halt "no root disk at $root (is the storage attached to the board?)"
    sleep 0.1
done
mount -t ext4 -o "$mode" "$root" /root || halt "cannot mount $root"
[ -e "/root$init" ] || [ -L "/root$init" ] || halt "no $init on $root"

mount --move /dev /root/dev
umount /proc /sys
exec switch_root /root "$init"
