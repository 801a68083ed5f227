#!/usr/bin/env python3
"""Respawn latency while usrsvcd rereads a huge config (issue 9: a reread must never delay a
crash restart).

Standard library only. In a temporary HOME (own USRSVC_RUNTIME_DIR): start `usrsvcd
--foreground` on one program (`sleep <unique>`), wait until it runs, then replace the config by
one of --size MB (the program plus an `[[Env]]` value that is a long unquoted list: the slow
case of the 1.5.x-compatible parser, and a config the daemon rejects, so the running one stays)
and send SIGUSR1. While that reread is under way, kill -9 the program --trials times and time
each kill-to-respawn (until a new process with the program's command line exists). Prints one
line per trial and a summary; says whether the reread was still under way at each respawn.

    python3 bench/reread.py --usrsvcd target/release/usrsvcd --size 10 --trials 5
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time


def find(cmdline):
    """Pids of live processes whose cmdline (NUL-separated) is exactly `cmdline`."""
    want = cmdline.encode()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                raw = f.read()
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if raw.rstrip(b"\0").replace(b"\0", b" ") == want and state not in (b"Z", b"X"):
            out.append(int(entry))
    return out


def wait(cond, limit, step=0.001):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(step)
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--usrsvcd", default="target/release/usrsvcd")
    ap.add_argument("--size", type=float, default=10.0, help="config size in MB")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--limit", type=float, default=120.0, help="s to wait for one respawn")
    ap.add_argument("--no-reread", action="store_true", help="the same kills, without a reread")
    args = ap.parse_args()
    exe = os.path.abspath(args.usrsvcd)
    home = tempfile.mkdtemp(prefix="usrsvc-reread-bench-")
    run = os.path.join(home, "run")
    os.makedirs(run)
    cmd = f"sleep {os.getpid()}{int(time.time()) % 100000}"
    program = (
        f"[Program:p]\ncommand = {cmd}\npidfile = {home}/p.pid\nstdout = {home}/p.out\n"
        f"stderr = {home}/p.err\nsuccess_seconds = 0.2\nstable_seconds = 0.2\n"
        "restart_delay = 0\n"
    )
    cfg = os.path.join(home, "usrsvc.cfg")
    with open(cfg, "w") as f:
        f.write(f"[Main]\n\n{program}")
    env = dict(os.environ, HOME=home, USRSVC_RUNTIME_DIR=run)
    env.pop("USRSVC_CONFIG", None)
    log = open(os.path.join(home, "usrsvcd.log"), "w")
    d = subprocess.Popen([exe, "--foreground", "--config", cfg], env=env, stdout=log, stderr=log,
                         stdin=subprocess.DEVNULL)
    results = []
    try:
        pid = wait(lambda: find(cmd), 30)
        if not pid:
            raise SystemExit("the program did not start")
        pid = pid[0]
        time.sleep(1)
        pad_len = int(args.size * 1_000_000)
        with open(cfg, "w") as f:
            f.write(f"[Main]\n\n{program}[[Env]]\nPAD = ")
            f.write(", ".join(["a"] * (pad_len // 3)))
            f.write("\n")
        print(f"config: {os.path.getsize(cfg)} bytes; SIGUSR1 to usrsvcd {d.pid}", file=sys.stderr)
        log_path = os.path.join(home, "usrsvcd.log")
        done_marks = ("Keeping the running configuration", "Successfully loaded new config")

        def reread_done():
            with open(log_path, errors="replace") as f:
                text = f.read()
            return any(m in text for m in done_marks)

        t_reread = time.monotonic()
        if not args.no_reread:
            d.send_signal(signal.SIGUSR1)
        time.sleep(0.3)
        for i in range(args.trials):
            t0 = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            new = wait(lambda: [p for p in find(cmd) if p != pid], args.limit)
            t1 = time.monotonic()
            if not new:
                print(f"trial {i + 1}: not respawned within {args.limit} s")
                break
            ms = (t1 - t0) * 1000
            results.append(ms)
            print(f"trial {i + 1}: respawn {ms:.1f} ms; reread under way: {not reread_done()}"
                  f" ({t1 - t_reread:.1f} s after SIGUSR1)")
            pid = new[0]
            time.sleep(0.5)  # past stable_seconds: the next kill is a fresh crash
        if results:
            what = "without a reread" if args.no_reread else f"during the reread of a {args.size:g} MB config"
            print(f"respawn {what}: median "
                  f"{statistics.median(results):.1f} ms, max {max(results):.1f} ms "
                  f"({len(results)} trials)")
    finally:
        d.send_signal(signal.SIGTERM)
        try:
            d.wait(10)
        except subprocess.TimeoutExpired:
            d.kill()
            d.wait()
        for p in find(cmd):
            os.kill(p, signal.SIGKILL)


if __name__ == "__main__":
    main()
