#!/usr/bin/env bash
# The main job: a lab on this machine - a controller, an exporter serving the built-in
# virtual board (playbooks/exporters/sim.yaml), a client - and the demo playbook
# (playbooks/demo.yml) run against it through the inventory plugin, over the router.
# Arguments go to ansible-playbook, e.g. `scripts/demo.sh --check --diff`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/jumpstarter-lab-demo.XXXXXX")
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work" /tmp/jumpstarter-lab-demo
}
trap cleanup EXIT

# Wait for a background command's first line of output, e.g. "listening on 127.0.0.1:8082".
await_line() {  # file what
    for _ in $(seq 300); do
        if [ -s "$1" ]; then head -n1 "$1"; return 0; fi
        sleep 0.1
    done
    echo "demo: $2 did not start; its log:" >&2
    cat "${1%.out}.log" >&2
    return 1
}

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
endpoint=127.0.0.1:$port
jumpstarter-lab controller run --db "$work/lab.db" --listen "$endpoint" --insecure \
    > "$work/controller.out" 2> "$work/controller.log" &
pids+=($!)
echo "[demo] controller: $(await_line "$work/controller.out" controller)"

jumpstarter-lab exporter check --config "$root/playbooks/exporters/sim.yaml"
jumpstarter-lab admin create-client demo --db "$work/lab.db" --endpoint "$endpoint" --insecure \
    -o "$work/demo-client.yaml"
jumpstarter-lab admin create-exporter sim-demo --db "$work/lab.db" --endpoint "$endpoint" --insecure \
    --label board=sim --export-from "$root/playbooks/exporters/sim.yaml" -o "$work/sim-demo.yaml"
jumpstarter-lab exporter run --config "$work/sim-demo.yaml" > "$work/exporter.out" 2> "$work/exporter.log" &
pids+=($!)
echo "[demo] exporter: $(await_line "$work/exporter.out" exporter)"
jumpstarter-lab exporters list --client-config "$work/demo-client.yaml"

marker=demo-$(date +%Y%m%d-%H%M%S)
printf 'JUMPSTARTER_MARKER=%s\n' "$marker" > "$work/demo.img"
mkdir -p "$work/collections/ansible_collections/jumpstarter" "$work/fetched"
ln -s "$root" "$work/collections/ansible_collections/jumpstarter/lab"

JMP_CLIENT_CONFIG=$work/demo-client.yaml ANSIBLE_COLLECTIONS_PATH=$work/collections \
ANSIBLE_HOME=$work/ansible-home ANSIBLE_LOCAL_TEMP=$work/ansible-tmp ANSIBLE_NOCOLOR=${ANSIBLE_NOCOLOR:-} \
    ansible-playbook -i "$root/playbooks/demo.jumpstarter.yml" "$root/playbooks/demo.yml" \
    -e "demo_image=$work/demo.img demo_marker=$marker demo_fetch_dir=$work/fetched" "$@"
fetched=("$work"/fetched/*/tmp/jumpstarter-lab-demo/motd)
if [ -f "${fetched[0]}" ]; then  # not in --check mode
    echo "[demo] fetched from the board: $(cat "${fetched[0]}")"
fi
