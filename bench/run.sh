#!/usr/bin/env bash
# Benchmark of our usrsvc against the Python usrsvc 1.5.13 (PyPI), side by side, in one run.
#
#   bench/run.sh                      build the release binaries, then benchmark the CLI
#   USRSVC_BIN=/path/usrsvc bench/run.sh   benchmark that binary, skip the build
#   bench/run.sh daemon               benchmark the daemon: usrsvcd vs Python usrsvcd vs monit
#   USRSVCD_BIN=/path/usrsvcd bench/run.sh daemon   that daemon binary, skip the build
#
# Extra arguments go to bench.py (e.g. --n-status 10 --n-scan 5 --n-start 1 for a quick try),
# or after `daemon` to daemon.py (e.g. --quick, --window 60 --trials 30, --only ours,monit).
# Results: stdout and target/bench-results.md (daemon: target/bench-daemon-results.md).
# Python venv: target/bench-venv (reused). See bench/README.md.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
venv="$root/target/bench-venv"
mode=cli
if [[ "${1:-}" == daemon ]]; then
    mode=daemon
    shift
fi
if [[ $mode == daemon ]]; then
    results="$root/target/bench-daemon-results.md"
    bin_var=USRSVCD_BIN
    bin_name=usrsvcd
else
    results="$root/target/bench-results.md"
    bin_var=USRSVC_BIN
    bin_name=usrsvc
fi
pip_tmp=""

say() { printf '[run.sh] %s\n' "$*" >&2; }
cleanup() {
    if [[ -n "$pip_tmp" && -d "$pip_tmp" ]]; then rm -rf -- "$pip_tmp"; fi
}
trap cleanup EXIT

# 1. Our binary.
if [[ -n "${!bin_var:-}" ]]; then
    bin="${!bin_var}"
    say "$bin_var is set: using $bin, not building"
else
    say "building the release binaries (cargo build --release in $root)"
    (cd "$root" && cargo build --release)
    target_dir="${CARGO_TARGET_DIR:-$root/target}"
    [[ "$target_dir" == /* ]] || target_dir="$root/$target_dir"
    bin="$target_dir/release/$bin_name"
fi
if [[ ! -x "$bin" ]]; then
    say "ERROR: $bin is not an executable file"
    exit 1
fi

# 2. The Python usrsvc 1.5.13, in its own venv.
mkdir -p "$root/target"
py_args=()
have_python_usrsvc() {
    [[ -x "$venv/bin/usrsvc" ]] &&
        "$venv/bin/python3" -c 'import importlib.metadata as m, sys; sys.exit(m.version("usrsvc") != "1.5.13")' 2>/dev/null
}
if [[ ! -x "$venv/bin/python3" ]]; then
    say "creating the venv $venv"
    python3 -m venv "$venv" || say "WARNING: could not create the venv"
fi
if have_python_usrsvc; then
    say "reusing usrsvc 1.5.13 in $venv"
elif [[ -x "$venv/bin/pip" ]]; then
    say "pip install usrsvc==1.5.13 into $venv"
    # The sdist is built in TMPDIR; keep that out of /tmp and remove it afterwards.
    pip_tmp="$(mktemp -d "$root/target/bench-pip-tmp.XXXXXX")"
    if ! TMPDIR="$pip_tmp" "$venv/bin/pip" install --disable-pip-version-check --quiet \
        --timeout 20 --retries 1 usrsvc==1.5.13; then
        say "WARNING: pip could not install usrsvc==1.5.13 (PyPI unreachable?)"
    fi
    rm -rf -- "$pip_tmp"
fi
if ! have_python_usrsvc; then
    say "SKIPPING the Python side: usrsvc 1.5.13 is not available. Only our binary is measured."
elif [[ $mode == daemon ]]; then
    py_args=(--py-usrsvcd "$venv/bin/usrsvcd")
else
    py_args=(--py-usrsvc "$venv/bin/usrsvc")
fi

if [[ $mode == daemon ]]; then
    # 3. monit (Debian package `monit`), the third supervisor of the daemon benchmark.
    monit="${MONIT_BIN:-$(command -v monit || true)}"
    if [[ -z "$monit" && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        say "monit is missing: apt-get install -y monit"
        apt-get install -y monit >&2 || say "WARNING: apt-get could not install monit"
        monit="$(command -v monit || true)"
    fi
    if [[ -n "$monit" ]]; then
        py_args+=(--monit "$monit")
    else
        say "SKIPPING monit: not installed. Install it with \`sudo apt-get install -y monit\`" \
            "(Debian/Ubuntu) or set MONIT_BIN=/path/to/monit."
    fi
    say "running daemon.py (about 12-13 minutes with the defaults; --quick: about 3)"
    exec python3 "$here/daemon.py" --ours "$bin" ${py_args[@]+"${py_args[@]}"} --results "$results" "$@"
fi

# The `python3 -c pass` baseline uses the interpreter the Python usrsvc runs on.
if [[ -x "$venv/bin/python3" ]]; then py_args+=(--python "$venv/bin/python3"); fi

# 3. Measure.
say "running bench.py (about 1-2 minutes)"
python3 "$here/bench.py" --ours "$bin" ${py_args[@]+"${py_args[@]}"} --results "$results" "$@"
