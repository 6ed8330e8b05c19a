#!/usr/bin/env bash
# Prepare everything the demo and the tests need, installing only what changed:
#   .venv                      this project (editable) with pinned tools
#   $CACHE/upstream-0.9.0      upstream Jumpstarter 0.9.0, the interop peer (outside the repo)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
python=${PYTHON:-python3}
venv=${VENV:-$root/.venv}
cache=${JUMPSTARTER_LAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jumpstarter-lab}
pip_quiet=(--quiet --disable-pip-version-check)

fingerprint() { cat "$@" | sha256sum | cut -c1-16; }

ensure_venv() {  # dir fingerprint install-command...
    local dir=$1 want=$2; shift 2
    if [ "$(cat "$dir/.fingerprint" 2>/dev/null)" = "$want" ]; then return; fi
    echo "bootstrap: preparing $dir" >&2
    rm -rf "$dir"
    "$python" -m venv "$dir"
    "$dir/bin/pip" install "${pip_quiet[@]}" --upgrade pip==26.3
    "$@"
    echo "$want" > "$dir/.fingerprint"
}

install_project() {
    local editables=(-e "exporter[controller]")
    for d in drivers/*/; do editables+=(-e "$d"); done
    "$venv/bin/pip" install "${pip_quiet[@]}" -r requirements/dev.txt "${editables[@]}"
}

install_upstream() {
    "$cache/upstream-0.9.0/bin/pip" install "${pip_quiet[@]}" -r requirements/upstream-0.9.0.txt
}

# System packages the tests use: PostgreSQL and sshd servers (run privately by the tests), shellcheck.
ensure_system_packages() {
    local missing=()
    compgen -G "/usr/lib/postgresql/*/bin/postgres" > /dev/null || missing+=(postgresql)
    [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
    command -v shellcheck > /dev/null || missing+=(shellcheck)  # ansible-test sanity lints shell scripts
    if [ ${#missing[@]} -gt 0 ]; then
        echo "bootstrap: apt-get install ${missing[*]}" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" > /dev/null
    fi
}

# The molecule scenarios boot Debian hosts with systemd-nspawn from a debootstrapped rootfs, in a
# venv of their own (molecule pins its own Ansible tooling).
ensure_molecule() {
    local missing=()
    command -v systemd-nspawn > /dev/null || missing+=(systemd-container)
    command -v debootstrap > /dev/null || missing+=(debootstrap)
    command -v flock > /dev/null || missing+=(util-linux)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "bootstrap: apt-get install ${missing[*]} for the molecule hosts" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
    fi
    ensure_venv "$cache/molecule" "$(fingerprint requirements/molecule.txt)" \
        "$cache/molecule/bin/pip" install "${pip_quiet[@]}" -r requirements/molecule.txt
}

ensure_system_packages
ensure_venv "$venv" "$(fingerprint requirements/dev.txt exporter/pyproject.toml drivers/*/pyproject.toml)" install_project
mkdir -p "$cache"
ensure_venv "$cache/upstream-0.9.0" "$(fingerprint requirements/upstream-0.9.0.txt)" install_upstream
ensure_molecule

# --- QEMU board (drivers/qemu): host tools and the cached guest image ---------------------------
# Installs QEMU, qemu-img, debootstrap and e2fsprogs when missing (apt-get, as root or through
# sudo), then builds the Debian guest that the QEMU board's tests boot, once per image recipe,
# into $cache/qemu (jumpstarter-lab-qemu-image build; about a minute).
ensure_qemu_board() {
    local PATH="$PATH:/usr/sbin:/sbin" missing=() as_root=()
    [ "$(id -u)" = 0 ] || as_root=(sudo)
    command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
    command -v qemu-img >/dev/null || missing+=(qemu-utils)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    { command -v mkfs.ext4 && command -v debugfs; } >/dev/null || missing+=(e2fsprogs)
    [ -e /usr/lib/u-boot/qemu-x86/u-boot.rom ] || missing+=(u-boot-qemu)  # the U-Boot board's firmware
    if [ ${#missing[@]} -gt 0 ]; then
        if ! command -v apt-get >/dev/null; then
            echo "bootstrap: the QEMU board's tests need ${missing[*]}: install them (no apt-get here)" >&2
            return 0
        fi
        echo "bootstrap: installing ${missing[*]} for the QEMU board" >&2
        "${as_root[@]}" apt-get update -qq
        "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    local tool="$venv/bin/jumpstarter-lab-qemu-image"
    if ! JUMPSTARTER_LAB_CACHE="$cache" "$tool" path >/dev/null 2>&1; then
        echo "bootstrap: building the QEMU board's guest image into $cache/qemu" >&2
        "${as_root[@]}" env JUMPSTARTER_LAB_CACHE="$cache" "$tool" build >/dev/null
    fi
}
ensure_qemu_board
