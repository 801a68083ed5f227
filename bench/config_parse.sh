#!/usr/bin/env bash
# Config parse time: generates large config files of several shapes and times
# `usrsvcd --config F checkconfig` and `usrsvc --config F status p0` on each (release build).
#
#   bench/config_parse.sh                 build the release binaries, then 1 MB and 10 MB files
#   bench/config_parse.sh 1 5 10          those sizes, in MB
#   USRSVC_BIN=… USRSVCD_BIN=… bench/config_parse.sh    those binaries, no build
#   TIMEOUT=120 bench/config_parse.sh     give up on one command after that many seconds
#   RUNS=3 bench/config_parse.sh          best of that many runs of each command
#
# Shapes (SIZE MB in total; every file but `email` is a valid config):
#   list       one unquoted list line `addresses = a@b, a@b, …` (a top-level key, ignored)
#   email      the same list as a program's `email_alerts` (rejected: exit 130, after parsing)
#   quoted     one `email_alerts = "x x x …"` line (a long quoted string)
#   programs   many small [Program:pN] sections
#   env        one program with many [[Env]] keys
#   multiline  one triple-quoted value continued over many lines
#   interp     many [[Env]] values made of %(name)s references
#
# Prints a markdown table (best wall seconds of RUNS runs, exit status) on stdout. Nothing is asserted: a command
# that runs out of TIMEOUT is shown as such. Files go to a temporary directory, removed at exit.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
sizes=("$@")
[[ ${#sizes[@]} -gt 0 ]] || sizes=(1 10)
timeout_s="${TIMEOUT:-120}"
runs="${RUNS:-3}"

if [[ -z "${USRSVC_BIN:-}" || -z "${USRSVCD_BIN:-}" ]]; then
    echo "building the release binaries (cargo build --release) ..." >&2
    (cd "$root" && cargo build --release --bins --quiet)
fi
usrsvc="${USRSVC_BIN:-$root/target/release/usrsvc}"
usrsvcd="${USRSVCD_BIN:-$root/target/release/usrsvcd}"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/home" "$tmp/logs" "$tmp/run"

# gen SHAPE BYTES FILE
gen() {
    python3 - "$1" "$2" "$3" "$tmp" <<'EOF'
import sys
shape, size, path, tmp = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
head = f"[Main]\n"
def program(name, extra=""):
    return (f"[Program:{name}]\ncommand = sleep 1000\npidfile = {tmp}/run/{name}.pid\n"
            f"stdout = {tmp}/logs/{name}.log\n{extra}")
out = [head]
total = len(head)
if shape == "programs":
    i = 0
    while total < size:
        s = program(f"p{i}")
        out.append(s)
        total += len(s)
        i += 1
elif shape in ("list", "email"):
    line = "a@b, " * (size // 5) + "c@d\n"
    if shape == "list":
        out.insert(0, "addresses = " + line)
        out.append(program("p0"))
    else:
        out.append(program("p0", "email_alerts = " + line))
elif shape == "quoted":
    out.append(program("p0"))
    out.append('email_alerts = "' + "x " * (size // 2) + '"\n')
elif shape == "env":
    out.append(program("p0", "[[Env]]\n"))
    i, n = 0, 0
    while n < size:
        line = f"VAR_{i} = value number {i}\n"
        out.append(line)
        n += len(line)
        i += 1
elif shape == "multiline":
    out.append(program("p0"))
    out.append("email_alerts = '''first line\n")
    line = "a continuation line of a triple-quoted value\n"
    out.append(line * (size // len(line)))
    out.append("last line'''\n")
elif shape == "interp":
    # [[Env]] values of 50 references each to a key at the top of the file.
    out.insert(0, "longer_name = y\n")
    out.append(program("p0", "[[Env]]\n"))
    i, n = 0, 0
    while n < size:
        line = f"V_{i} = " + "%(longer_name)s" * 50 + "\n"
        out.append(line)
        n += len(line)
        i += 1
else:
    sys.exit(f"unknown shape {shape}")
with open(path, "w") as f:
    f.write("".join(out))
EOF
}

# timed COMMAND...: "SECONDS|RC", the best wall time of $runs runs, each bounded by $timeout_s
# (a run that times out ends the series).
timed() {
    local start end rc best="" i t
    for ((i = 0; i < runs; i++)); do
        rc=0
        start=$(date +%s.%N)
        HOME="$tmp/home" USRSVC_RUNTIME_DIR="$tmp/run" timeout "$timeout_s" "$@" >/dev/null 2>&1 || rc=$?
        end=$(date +%s.%N)
        if [[ $rc == 124 ]]; then
            echo "> ${timeout_s} (timed out)|-"
            return
        fi
        t=$(python3 -c "print(f'{$end - $start:.3f}')")
        if [[ -z $best ]] || python3 -c "import sys; sys.exit(0 if $t < $best else 1)"; then
            best=$t
        fi
    done
    echo "$best|$rc"
}

echo "| shape | size | file bytes | usrsvcd checkconfig: s (rc) | usrsvc status p0: s (rc) |"
echo "|---|---|---|---|---|"
for mb in "${sizes[@]}"; do
    bytes=$((mb * 1000 * 1000))
    for shape in list email quoted programs env multiline interp; do
        f="$tmp/$shape-$mb.cfg"
        gen "$shape" "$bytes" "$f"
        c="$(timed "$usrsvcd" --config "$f" checkconfig)"
        s="$(timed "$usrsvc" --config "$f" status p0)"
        echo "| $shape | $mb MB | $(stat -c %s "$f") | ${c%|*} (${c#*|}) | ${s%|*} (${s#*|}) |"
        rm -f "$f"
    done
done
