#!/bin/sh
# Builds usrsvc, starts the daemon usrsvcd on examples/quickstart/usrsvc.cfg (which autostarts
# the demo program and restarts it if it dies) and shows both. Daemon and demo keep running
# afterwards, detached: stop them with the commands printed at the end.
#
# Everything it runs uses a runtime directory of its own (locks, the daemon's instance lock,
# state), examples/quickstart/run/state, so it never meets a usrsvcd or a program of yours
# that runs for the same user. Run it again at any time: it replaces the daemon it started
# before (with the binary just built) and the demo goes on running.
set -e
cd "$(dirname "$0")/../.."
echo "Building usrsvc (cargo build --release; the first build takes a few minutes)..."
cargo build --release
bin="${CARGO_TARGET_DIR:-./target}/release"
cfg="--config examples/quickstart/usrsvc.cfg"
USRSVC_RUNTIME_DIR="$(pwd)/examples/quickstart/run/state"
export USRSVC_RUNTIME_DIR
# A daemon left by an earlier run stops first (programs keep running); none is fine.
"$bin/usrsvcd" $cfg stop
"$bin/usrsvcd" $cfg start
# Also clears a "stopped by the operator" mark left by an earlier `usrsvc stop demo`, which the
# daemon would respect; if the daemon is starting the demo already, this waits and agrees.
"$bin/usrsvc" $cfg start demo
# The daemon is up; its start of the demo takes success_seconds (1 s), then writes the pidfile.
i=0
until [ -s examples/quickstart/run/demo.pid ] && "$bin/usrsvc" $cfg status demo >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -gt 100 ]; then
        echo "demo did not come up; see examples/quickstart/logs/usrsvcd.log" >&2
        exit 1
    fi
    sleep 0.1
done
"$bin/usrsvcd" $cfg status
"$bin/usrsvc" $cfg status demo
"$bin/usrsvc" $cfg status demo --json
"$bin/usrsvc" $cfg health demo
"$bin/usrsvc" $cfg plan
"$bin/usrsvc" $cfg history -n 5
"$bin/usrsvc" $cfg logs demo -n 3
env="USRSVC_RUNTIME_DIR=$USRSVC_RUNTIME_DIR"
echo
echo "usrsvcd logs to examples/quickstart/logs/usrsvcd.log, the demo to logs/demo.out."
echo "Follow the demo's log:  $env $bin/usrsvc $cfg logs demo -f"
echo "Kill the demo (kill -9 \$(cat examples/quickstart/run/demo.pid)) and watch it come back."
echo "Stop the daemon (the demo keeps running) and then the demo with:"
echo "  $env $bin/usrsvcd $cfg stop"
echo "  $env $bin/usrsvc $cfg stop demo"
