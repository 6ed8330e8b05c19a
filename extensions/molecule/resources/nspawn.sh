#!/usr/bin/env bash
# Real systemd hosts for the molecule scenarios: Debian bookworm booted with `systemd-nspawn --boot`,
# sharing the host's network, reached by ssh on 127.0.0.1 with a key of their own.
#   nspawn.sh up NAME PORT    boot a fresh copy of the cached rootfs as NAME, sshd on 127.0.0.1:PORT
#   nspawn.sh down NAME       power NAME off and remove it
#   nspawn.sh key             the private key the hosts accept for root
# The rootfs is built once per recipe with debootstrap (about a minute) into $JUMPSTARTER_LAB_CACHE/nspawn;
# pip's cache there is shared with the hosts, so their virtualenvs do not download the same wheels twice.
set -euo pipefail
cache=${JUMPSTARTER_LAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jumpstarter-lab}/nspawn
packages=systemd,systemd-sysv,dbus,python3,python3-venv,openssh-server,sudo,ca-certificates,procps,iproute2
recipe=$(printf '%s\n' bookworm "$packages" 1 | sha256sum | cut -c1-12)
rootfs=$cache/rootfs-$recipe
key=$cache/id_ed25519
machines=/var/lib/machines
run=$cache/run

build_rootfs() {
    [ -f "$rootfs/.complete" ] && return
    mkdir -p "$cache"
    exec 9> "$cache/.build.lock"
    flock 9
    [ -f "$rootfs/.complete" ] && return
    [ -f "$key" ] || ssh-keygen -q -t ed25519 -N "" -C molecule -f "$key"
    rm -rf "$rootfs.tmp"
    echo "nspawn: building the bookworm rootfs into $rootfs" >&2
    debootstrap --variant=minbase --include="$packages" bookworm "$rootfs.tmp" http://deb.debian.org/debian >&2
    : > "$rootfs.tmp/etc/machine-id"  # each boot makes its own
    rm -f "$rootfs.tmp"/etc/ssh/ssh_host_*
    install -d -m 700 "$rootfs.tmp/root/.ssh"
    install -m 600 "$key.pub" "$rootfs.tmp/root/.ssh/authorized_keys"
    printf 'PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n' \
        > "$rootfs.tmp/etc/ssh/sshd_config.d/10-molecule.conf"
    chroot "$rootfs.tmp" systemctl enable ssh.service > /dev/null 2>&1
    chroot "$rootfs.tmp" systemctl mask console-getty.service getty@tty1.service > /dev/null 2>&1
    chroot "$rootfs.tmp" apt-get clean
    touch "$rootfs.tmp/.complete"
    mv "$rootfs.tmp" "$rootfs"
}

leader_of() {  # the container's PID 1: systemd, a child of systemd-nspawn
    pgrep -x -P "$1" systemd | head -1
}

kill_machine_processes() {  # whatever still runs inside the machine's directory, whoever its parent is
    local dir=$1 proc
    for proc in /proc/[0-9]*; do
        if [ "$(readlink "$proc/root" 2> /dev/null)" = "$dir" ]; then kill -KILL "${proc#/proc/}" 2> /dev/null || true; fi
    done
}

up() {
    local name=$1 port=$2 dir=$machines/$1 state=$run/$1 leader="" status=""
    build_rootfs
    down "$name"
    mkdir -p "$state" "$cache/pip" "$machines"
    cp -a "$rootfs" "$dir"
    echo "$name" > "$dir/etc/hostname"
    printf 'Port %s\nListenAddress 127.0.0.1\n' "$port" > "$dir/etc/ssh/sshd_config.d/20-port.conf"
    chroot "$dir" ssh-keygen -A > /dev/null
    # The hosts trust what this machine trusts (a lab's proxy or mirror CA), to reach package indexes.
    if compgen -G "/usr/local/share/ca-certificates/*.crt" > /dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$dir/usr/local/share/ca-certificates/"
        chroot "$dir" update-ca-certificates > /dev/null 2>&1
    fi
    # --register=no --keep-unit: this machine's PID 1 is not systemd, so there is no machined to register with.
    setsid systemd-nspawn --boot --quiet -D "$dir" --machine="$name" --register=no --keep-unit \
        --console=passive --bind="$cache/pip:/root/.cache/pip" > "$state/console.log" 2>&1 < /dev/null &
    echo $! > "$state/nspawn.pid"
    for _ in $(seq 1 100); do
        leader=$(leader_of "$(cat "$state/nspawn.pid")" || true)
        [ -n "$leader" ] && break
        sleep 0.1
    done
    [ -n "$leader" ] || { echo "nspawn: $name did not start:" >&2; cat "$state/console.log" >&2; exit 1; }
    echo "$leader" > "$state/leader.pid"
    for _ in $(seq 1 300); do
        status=$(nsenter -t "$leader" -a systemctl is-system-running 2> /dev/null || true)
        case $status in running | degraded) break ;; esac
        sleep 0.2
    done
    case $status in
        running) echo "nspawn: $name is up (ssh 127.0.0.1:$port)" >&2 ;;
        *) echo "nspawn: $name is $status:" >&2
           nsenter -t "$leader" -a systemctl --failed --no-pager >&2 || true
           exit 1 ;;
    esac
}

down() {
    local name=$1 state=$run/$1 nspawn="" leader=""
    nspawn=$(cat "$state/nspawn.pid" 2> /dev/null || true)
    leader=$(cat "$state/leader.pid" 2> /dev/null || true)
    if [ -n "$nspawn" ] && kill -0 "$nspawn" 2> /dev/null; then
        if [ -n "$leader" ]; then kill -RTMIN+4 "$leader" 2> /dev/null || true; fi  # systemd: power off
        for _ in $(seq 1 100); do kill -0 "$nspawn" 2> /dev/null || break; sleep 0.1; done
        # A container's systemd outlives a killed nspawn: killing it ends the whole pid namespace.
        if kill -0 "$nspawn" 2> /dev/null; then
            if [ -n "$leader" ]; then kill -KILL "$leader" 2> /dev/null || true; fi
            sleep 0.5
            kill -KILL "$nspawn" 2> /dev/null || true
        fi
    fi
    kill_machine_processes "$machines/$name"
    rm -rf "${machines:?}/$name" "$state"
}

case ${1:-} in
    up) up "$2" "$3" ;;
    down) down "$2" ;;
    key) build_rootfs; echo "$key" ;;
    *) echo "usage: $0 up NAME PORT | down NAME | key" >&2; exit 2 ;;
esac
