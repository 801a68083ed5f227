#!/bin/sh
# Builds usrsvc, starts the demo program of examples/quickstart/usrsvc.cfg and shows its status.
# The demo keeps running afterwards, detached: stop it with the command printed at the end.
set -e
cd "$(dirname "$0")/../.."
cargo build --release --quiet
usrsvc="${CARGO_TARGET_DIR:-./target}/release/usrsvc --config examples/quickstart/usrsvc.cfg"
$usrsvc start demo
$usrsvc status demo
$usrsvc status demo --json
echo
echo "The demo logs to examples/quickstart/logs/demo.out. Stop it with:"
echo "  $usrsvc stop demo"
