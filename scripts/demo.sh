#!/usr/bin/env bash
# The main job, for now: serve the sim board from an exporter and drive it through
# the CLI and the client library (later issues grow this into the demo playbook).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
config=$root/playbooks/exporters/sim.yaml

jumpstarter-lab exporter check --config "$config"
# shellcheck disable=SC2016  # the inner script expands its variables when the shell runs it
jumpstarter-lab shell --config "$config" -- bash -euc '
    echo "[demo] exporter at $JUMPSTARTER_HOST"
    jumpstarter-lab tree
    python "$0"
    echo "[demo] power reading after the run: $(jumpstarter-lab call board.power.read)"
' "$root/scripts/demo_board.py"
