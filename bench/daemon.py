#!/usr/bin/env python3
"""Daemon benchmark: our usrsvcd against the Python usrsvcd 1.5.13 and monit, side by side.

Standard library only. Normally started by `bench/run.sh daemon`, which builds the binaries,
prepares the Python venv and installs monit; see bench/README.md. Progress goes to stderr; the
results (markdown) go to stdout and to the --results file.

For each supervisor in turn (never two at once), in its own temporary HOME: start the daemon on
N copies of a tiny C program (`stamp FILE`, compiled here with gcc, which writes its start time
in ns and its pid to FILE and then pauses forever), wait until every copy is up and the daemon
settled, measure the daemon's idle cost (RSS, CPU) over a window, then kill -9 a random copy at
a random moment, again and again, and time how long until the new copy has written its stamp.
Then stop the daemon and kill every copy by pid (also on failure, Ctrl-C or SIGTERM).
"""

import argparse
import ctypes
import datetime
import os
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

# Helpers shared with the CLI benchmark (same directory); no __pycache__ in the source tree.
sys.dont_write_bytecode = True
from bench import BenchError, CommandTimeout, gone, proc_cmdline, proc_start_time, publish, q, run_bench, wait_gone

LAT_MEDIAN_GOAL_MS = 5.0  # ours: crash-to-respawn median, below
LAT_MAX_GOAL_MS = 20.0  # ours: crash-to-respawn worst trial, below
RSS_GOAL_KB = 4096  # ours: VmRSS of the idle daemon, below (4 MiB)
CPU_GOAL_PCT = 0.05  # ours: idle CPU in % of one core, below
CLK_TCK = os.sysconf("SC_CLK_TCK")
SETTLE_AFTER_RESPAWN = 1.5  # s a new copy runs before the next kill (ours: stable_seconds = 1)

STAMP_C = r"""
/* stamp FILE: write "<CLOCK_REALTIME ns> <pid>\n" to FILE (tmp + rename), then pause forever. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts); /* first thing: the moment this instance runs */
    if (argc != 2) {
        fputs("usage: stamp FILE\n", stderr);
        return 2;
    }
    char tmp[4096], buf[64];
    int n = snprintf(tmp, sizeof tmp, "%s.%ld.tmp", argv[1], (long)getpid());
    if (n < 0 || n >= (int)sizeof tmp)
        return 2;
    int len = snprintf(buf, sizeof buf, "%lld %ld\n",
                       (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, buf, len) != len || close(fd) != 0 || rename(tmp, argv[1]) != 0) {
        perror(argv[1]);
        return 1;
    }
    for (;;)
        pause();
}
"""


def log(msg):
    print(f"[daemon-bench] {msg}", file=sys.stderr, flush=True)


def read_file(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def stat_fields(pid):
    """Fields after the comm of /proc/PID/stat (index 0 = state, field 3), or None."""
    data = read_file(f"/proc/{pid}/stat")
    if data is None:
        return None
    return data[data.rindex(b")") + 2:].split()


def status_kb(pid):
    """The kB lines (VmRSS, RssAnon, RssFile, VmHWM, ...) and Threads of /proc/PID/status."""
    data = read_file(f"/proc/{pid}/status")
    out = {}
    for line in (data or b"").decode(errors="replace").splitlines():
        key, _, val = line.partition(":")
        parts = val.split()
        if parts and parts[0].isdigit() and (len(parts) == 1 or parts[1] == "kB"):
            out[key] = int(parts[0])
    return out


def snapshot(pid):
    """CPU and memory counters of one process: process-wide ticks (all threads, dead ones
    included), and per thread the ticks, the schedstat run time (ns) and context switches."""
    f = stat_fields(pid)
    if f is None:
        return None
    snap = {
        "t": time.monotonic(),
        "ticks": int(f[11]) + int(f[12]),  # utime + stime
        "child_ticks": int(f[13]) + int(f[14]),  # cutime + cstime (reaped children)
        "tasks": {},
        "status": status_kb(pid),
    }
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        tf = stat_fields(f"{pid}/task/{tid}")
        sched = read_file(f"/proc/{pid}/task/{tid}/schedstat")
        st = status_kb(f"{pid}/task/{tid}")
        if tf is None or sched is None:
            continue
        snap["tasks"][tid] = {
            "ticks": int(tf[11]) + int(tf[12]),
            "run_ns": int(sched.split()[0]),
            "vcsw": st.get("voluntary_ctxt_switches", 0),
            "nvcsw": st.get("nonvoluntary_ctxt_switches", 0),
        }
    return snap


def loadavg():
    return " ".join((read_file("/proc/loadavg") or b"? ? ?").decode().split()[:3])


def fmt_ms(ns):
    return f"{ns / 1e6:.2f}"


PR_SET_CHILD_SUBREAPER = 36


def become_subreaper():
    """Orphaned programs (their starter exited) become our children instead of PID 1's, and we
    reap them at once, as systemd (--user) does. Some inits reap lazily: this machine's PID 1
    left zombies for 1-2 s, and monit counts a zombie as running, so it waited for the reaper."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise BenchError(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")


def reap(pid):
    """Reap pid if it is an exited child of ours; True when it is reaped or not our child."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done != 0
    except ChildProcessError:
        return True


class Supervisor:
    """One supervisor under test. Subclasses write the config and start/stop the daemon."""

    key = label = ""
    has_pidfiles = True  # usrsvc writes the program pidfiles; monit matches the cmdline

    def __init__(self, bench, exe):
        self.b = bench
        self.exe = exe
        self.home = None
        self.env = None
        self.daemon_pid = None
        self.daemon_start = None  # start time (stat field 22) of daemon_pid
        self.popen = None
        self.config_text = ""
        self.extra_notes = []

    # --- layout
    def prepare(self):
        self.home = os.path.join(self.b.root, self.key)
        for d in ("", "pids", "logs", "run", "tmp", "st", "act"):
            os.makedirs(os.path.join(self.home, d), mode=0o700, exist_ok=True)
        self.env = dict(self.b.base_env, HOME=self.home, USRSVC_RUNTIME_DIR=f"{self.home}/run", TMPDIR=f"{self.home}/tmp")
        for name in self.b.act_names:
            with open(self.activity(name), "w"):
                pass  # touched once: the limit (1 day) is never reached during a run
        self.write_config()

    def stamp(self, name):
        return f"{self.home}/st/{name}"

    def argv(self, name):
        return [self.b.stamp_bin, self.stamp(name)]

    def pidfile(self, name):
        return f"{self.home}/pids/{name}.pid"

    def activity(self, name):
        return f"{self.home}/act/{name}"

    def daemon_log(self):
        return f"{self.home}/logs/daemon.out"

    def log_tail(self, n=30):
        data = read_file(self.daemon_log()) or b""
        lines = data.decode(errors="replace").splitlines()[-n:]
        return "\n".join("    " + ln for ln in lines) or "    (empty)"

    def popen_daemon(self, argv):
        logf = open(self.daemon_log(), "ab")
        try:
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, cwd=self.home, env=self.env)
        finally:
            logf.close()

    def record_daemon(self, pid):
        self.daemon_pid = pid
        self.daemon_start = proc_start_time(pid)

    def daemon_alive(self):
        return self.daemon_pid is not None and proc_start_time(self.daemon_pid) == self.daemon_start and not gone(self.daemon_pid)

    def write_config(self):
        raise NotImplementedError

    def start(self):
        raise NotImplementedError

    def stop(self):
        raise NotImplementedError

    def version(self):
        return "?"

    # --- usrsvc-style config, shared by ours and the Python one
    def usrsvc_config(self, extra_keys):
        h = self.home
        out = ["[Main]", ""]
        for name in self.b.names:
            out += [
                f"[Program:{name}]",
                f"command = {shlex.join(self.argv(name))}",
                f"pidfile = {self.pidfile(name)}",
                f"stdout = {h}/logs/{name}.out",
                "autostart = true",
                "autorestart = true",
                "success_seconds = 0.5",
                "restart_delay = 0",
            ] + extra_keys
            if name in self.b.rss_names:
                out += ["  [[Monitoring]]", "  monitor_after = 0", "  rss_limit = 1000000"]
            elif name in self.b.act_names:
                out += ["  [[Monitoring]]", "  monitor_after = 0", f"  activityfile = {self.activity(name)}", "  activityfile_limit = 86400"]
            out.append("")
        return "\n".join(out)


class Ours(Supervisor):
    key, label = "ours", "**ours** (Rust usrsvcd)"

    def write_config(self):
        # stable_seconds: a run shorter than this counts as a failure and is backed off; the
        # bench waits >= 1.5 s after each respawn, so 1 s keeps every restart immediate.
        self.config_text = self.usrsvc_config(["stable_seconds = 1"])
        with open(f"{self.home}/usrsvc.cfg", "w") as f:
            f.write(self.config_text)

    def version(self):
        r = subprocess.run([self.exe, "--version"], capture_output=True, text=True, env=self.env, cwd=self.home)
        return (r.stdout + r.stderr).strip()

    def start(self):
        argv = [self.exe, "--foreground"]
        self.cmd = q(argv)
        self.popen = self.popen_daemon(argv)
        self.record_daemon(self.popen.pid)
        time.sleep(0.5)
        if self.popen.poll() is not None:
            raise BenchError(f"`{q(argv)}` exited with code {self.popen.returncode} right after start; its output:\n{self.log_tail()}")

    def stop(self):
        if self.popen is None or self.popen.poll() is not None:
            return
        s = self.b.run([self.exe, "stop"], self.env, self.home)
        try:
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            raise BenchError(f"our usrsvcd (pid {self.popen.pid}) still runs 15 s after `usrsvcd stop` (rc {s.returncode}: {s.stdout}{s.stderr})")
        if s.returncode != 0:
            self.extra_notes.append(f"`usrsvcd stop` exited {s.returncode}: {(s.stdout + s.stderr).strip()!r}")


class OursPlanned(Ours):
    """Ours with the features of issue 4 in use: every program has a plan (`restart_every`
    far away, jitter, windows), a quarter have a health check every 30 s (the default), and
    a group over four programs guards them with `min_ok`. None of it may cost a crash restart
    anything, and the idle cost is the daemon's own plus the checks it runs (reaped children)."""

    key, label = "planned", "**ours** + plans, health checks, group"

    def write_config(self):
        n = len(self.b.names)
        checked = set(self.b.names[n // 2:3 * n // 4])
        grouped = self.b.names[3 * n // 4:3 * n // 4 + 4]
        text = self.usrsvc_config(["stable_seconds = 1", "restart_every = 30d", "restart_jitter = 1h",
                                   'restart_windows = "Sat-Sun 02:00-04:00"'])
        # A health check at the end of each checked program's section.
        sections = text.split("\n[Program:")
        rebuilt = [sections[0]]
        for sec in sections[1:]:
            name = sec.split("]", 1)[0]
            if name in checked:
                sec = sec.rstrip("\n") + '\n  [[HealthCheck:alive]]\n  command = kill -0 "$USRSVC_PID"\n  interval = 30s\n\n'
            rebuilt.append(sec)
        self.config_text = "\n[Program:".join(rebuilt) + f"\n[Group:g]\nprograms = {', '.join(grouped)}\nmin_ok = 3\n"
        with open(f"{self.home}/usrsvc.cfg", "w") as f:
            f.write(self.config_text)


class Python(Supervisor):
    key, label = "python", "Python usrsvcd 1.5.13"

    def write_config(self):
        self.config_text = self.usrsvc_config([])
        with open(f"{self.home}/usrsvc.cfg", "w") as f:
            f.write(self.config_text)

    def version(self):
        r = subprocess.run([self.exe, "--version"], capture_output=True, text=True, env=self.env, cwd=self.home)
        return (r.stdout + r.stderr).strip()

    def start(self):
        # It forks and the parent exits at once; the child keeps the stdout/stderr it inherits,
        # so they go to a file (a pipe would stay open for the daemon's whole life).
        argv = [self.exe]
        self.cmd = q(argv)
        p = self.popen_daemon(argv)
        self.b.wait_popen(p, 30, q(argv))
        if p.returncode != 0:
            raise BenchError(f"`{q(argv)}` exited {p.returncode}:\n{self.log_tail()}")
        pidfile = f"{self.home}/{os.getuid()}_usrsvcd.pid"
        deadline = time.monotonic() + 10
        while True:
            data = read_file(pidfile)
            if data and data.strip().isdigit():
                pid = int(data)
                argv_d = proc_cmdline(pid) or []
                if any("usrsvcd" in a for a in argv_d):
                    self.record_daemon(pid)
                    return
            if time.monotonic() > deadline:
                raise BenchError(f"Python usrsvcd wrote no valid pidfile {pidfile} within 10 s:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self):
        if not self.daemon_alive():
            return
        s = self.b.run([self.exe, "stop"], self.env, self.home)
        if not wait_gone(self.daemon_pid, 15):
            raise BenchError(f"Python usrsvcd (pid {self.daemon_pid}) still runs 15 s after `usrsvcd stop`")
        if s.returncode != 0:
            self.extra_notes.append(f"`usrsvcd stop` exited {s.returncode}")


def monit_regex(path_argv):
    """An anchored POSIX ERE matching exactly this cmdline (monit joins argv with spaces)."""
    text = " ".join(path_argv)
    if not re.fullmatch(r"[A-Za-z0-9/_.+ -]+", text):
        raise BenchError(f"unexpected characters in {text!r} for a monit `matching` pattern")
    return "^" + text.replace(".", "[.]").replace("+", "[+]") + "$"


class Monit(Supervisor):
    key, label = "monit", "monit"
    has_pidfiles = False

    def write_config(self):
        h = self.home
        out = [
            "set daemon 1",
            f"set logfile {h}/logs/monit.log",
            f"set pidfile {h}/monit.pid",
            f"set idfile {h}/monit.id",
            f"set statefile {h}/monit.state",
            "",
        ]
        for name in self.b.names:
            # `matching`: the same argv as the usrsvc programs (no pidfile written by the program).
            out += [
                f'check process {name} matching "{monit_regex(self.argv(name))}"',
                # monit waits for a start program to exit (and fails it after 30 s), so the
                # program, which never exits, is put in the background by a shell.
                f'    start program = "/bin/sh -c \'{shlex.join(self.argv(name))} </dev/null >/dev/null 2>&1 &\'"',
            ]
            if name in self.b.rss_names:
                out.append("    if totalmem > 1000 MB then restart")
            out.append("")
            if name in self.b.act_names:
                out += [f"check file {name}_activity with path {self.activity(name)}", "    if timestamp > 1440 minutes then alert", ""]
        self.config_text = "\n".join(out)
        path = f"{h}/monitrc"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.config_text)
        os.chmod(path, 0o600)  # monit refuses a control file readable by others

    def version(self):
        r = subprocess.run([self.exe, "-V"], capture_output=True, text=True)
        return (r.stdout + r.stderr).strip().splitlines()[0]

    def start(self):
        rc = f"{self.home}/monitrc"
        s = self.b.run([self.exe, "-t", "-c", rc], self.env, self.home)
        if s.returncode != 0:
            raise BenchError(f"`monit -t -c {rc}` rejected the config (rc {s.returncode}): {s.stdout}{s.stderr}")
        argv = [self.exe, "-I", "-c", rc]
        self.cmd = q(argv)
        self.popen = self.popen_daemon(argv)
        self.record_daemon(self.popen.pid)
        time.sleep(0.5)
        if self.popen.poll() is not None:
            raise BenchError(f"`{q(argv)}` exited with code {self.popen.returncode} right after start:\n{self.log_tail()}")

    def stop(self):
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()  # monit leaves the processes it checks running when it exits
        try:
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            raise BenchError(f"monit (pid {self.popen.pid}) still runs 15 s after SIGTERM")


class DaemonBench:
    def __init__(self, args):
        self.args = args
        self.root = None
        self.stamp_bin = None
        self.cleaned = False
        self.md = []
        self.goals = []
        self.notes = []
        self.failed = []  # (label, message)
        self.sups = []
        self.children = []  # Popen objects started directly, killed at cleanup if still running
        n = args.programs
        self.names = [f"p{i:03d}" for i in range(1, n + 1)]
        quarter = n // 4
        self.rss_names = self.names[:quarter]
        self.act_names = self.names[quarter:2 * quarter]
        self.base_env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "USER": os.environ.get("USER", "root"),
            "LOGNAME": os.environ.get("LOGNAME", os.environ.get("USER", "root")),
        }
        self.rng = random.Random(args.seed)

    # ------------------------------------------------------------------ plumbing

    def run(self, argv, env, cwd, timeout=60):
        """subprocess.run under a SIGALRM watchdog (no `timeout=`: see bench.py)."""
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            return subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        except CommandTimeout:
            raise BenchError(f"timed out after {timeout} s: {q(argv)}") from None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def wait_popen(self, p, timeout, what):
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            p.wait()
        except CommandTimeout:
            p.kill()
            p.wait()
            raise BenchError(f"timed out after {timeout} s: {what}") from None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def out(self, line=""):
        self.md.append(line)

    def table(self, header, rows):
        self.out("| " + " | ".join(header) + " |")
        self.out("|" + "|".join("---" for _ in header) + "|")
        for r in rows:
            self.out("| " + " | ".join(str(c) for c in r) + " |")
        self.out()

    # ------------------------------------------------------------------ setup / cleanup

    def setup(self):
        become_subreaper()
        self.root = tempfile.mkdtemp(prefix="usrsvc-daemon-bench-")
        os.chmod(self.root, 0o700)
        os.mkdir(f"{self.root}/bin", 0o700)
        src = f"{self.root}/bin/stamp.c"
        with open(src, "w") as f:
            f.write(STAMP_C)
        self.stamp_bin = f"{self.root}/bin/stamp"
        gcc = shutil.which("gcc")
        if gcc is None:
            raise BenchError("gcc not found on PATH: it compiles the supervised program (apt-get install -y gcc)")
        # Static if the static libc is there (less exec work for every respawn), else dynamic.
        self.stamp_link = "static"
        r = subprocess.run([gcc, "-O2", "-static", "-o", self.stamp_bin, src], capture_output=True, text=True)
        if r.returncode != 0:
            self.stamp_link = "dynamic"
            r = subprocess.run([gcc, "-O2", "-o", self.stamp_bin, src], capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError(f"gcc failed to compile the stamp program:\n{r.stderr}")

    def reap_orphans(self):
        """Reap every zombie child except the daemons we wait for through Popen."""
        me = os.getpid()
        mine = {sup.popen.pid for sup in self.sups if sup.popen is not None}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) not in mine:
                f = stat_fields(entry)
                if f is not None and f[0] == b"Z" and int(f[1]) == me:
                    reap(int(entry))

    def is_ours(self, pid):
        """A supervised program of this run: argv[0] is our freshly compiled stamp binary (the
        temp directory name is unique), so nothing else can ever match."""
        argv = proc_cmdline(pid)
        return bool(argv) and argv[0] == self.stamp_bin

    def kill_programs(self):
        """SIGKILL every copy of the stamp program of this run, by pid (Python-started ones
        ignore SIGTERM). Returns how many were killed."""
        victims = []
        me = os.getpid()
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != me and self.is_ours(int(entry)):
                victims.append(int(entry))
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in victims:
            if not wait_gone(pid, 10):
                log(f"cleanup: pid {pid} still running after SIGKILL")
        self.reap_orphans()
        return len(victims)

    def cleanup(self):
        if self.cleaned:
            return
        self.cleaned = True
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
            signal.signal(sig, signal.SIG_IGN)
        if self.root is None:
            return
        log("cleanup: stopping daemons and killing programs by pid")
        for sup in self.sups:
            if sup.daemon_alive():
                log(f"cleanup: {sup.key} daemon pid {sup.daemon_pid} still running: SIGKILL")
                try:
                    os.kill(sup.daemon_pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if sup.popen is not None and sup.popen.poll() is None:
                sup.popen.kill()
            if sup.popen is not None:
                try:
                    sup.popen.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        self.kill_programs()
        # Safety net (as in bench.py): anything else with its cwd or an open file in the temp
        # tree, e.g. a start worker of the Python daemon.
        prefix = self.root + "/"
        me = os.getpid()
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == me:
                continue
            pid = int(entry)
            if self.uses_root(pid, prefix) and not gone(pid):
                log(f"cleanup: leftover pid {pid} {proc_cmdline(pid)} uses the temp tree: SIGKILL")
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                wait_gone(pid, 10)
        try:
            shutil.rmtree(self.root)
            log(f"cleanup: removed {self.root}")
        except OSError as e:
            log(f"cleanup: could not remove {self.root}: {e}")

    @staticmethod
    def uses_root(pid, prefix):
        try:
            if (os.readlink(f"/proc/{pid}/cwd") + "/").startswith(prefix):
                return True
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(prefix):
                        return True
                except OSError:
                    continue
        except OSError:
            pass
        return False

    # ------------------------------------------------------------------ program state

    def current(self, sup, name):
        """(pid, start ns) of the live copy named by the program's stamp, or None."""
        data = read_file(sup.stamp(name))
        if not data:
            return None
        try:
            ns, pid = (int(x) for x in data.split())
        except ValueError:
            return None
        if gone(pid) or proc_cmdline(pid) != sup.argv(name):
            return None
        return pid, ns

    def pidfile_pid(self, sup, name):
        data = read_file(sup.pidfile(name))
        try:
            return int(data.strip()) if data else None
        except ValueError:
            return None

    def registered(self, sup, name, pid):
        """The supervisor knows this copy: usrsvc wrote its pidfile (monit matches by cmdline)."""
        return not sup.has_pidfiles or self.pidfile_pid(sup, name) == pid

    def instances(self, sup):
        """pid lists of every copy per program (a /proc scan: only outside timed parts)."""
        by_name = {}
        prefix = f"{sup.home}/st/"
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                argv = proc_cmdline(int(entry))
                if argv and argv[0] == self.stamp_bin and len(argv) == 2 and argv[1].startswith(prefix):
                    by_name.setdefault(argv[1][len(prefix):], []).append(int(entry))
        return by_name

    def wait_all_up(self, sup, timeout):
        """Every program up, with one copy each, registered by the supervisor."""
        deadline = time.monotonic() + timeout
        while True:
            if not sup.daemon_alive():
                raise BenchError(f"{sup.label} daemon died while starting the programs:\n{sup.log_tail()}")
            cur = {n: self.current(sup, n) for n in self.names}
            missing = [n for n, c in cur.items() if c is None or not self.registered(sup, n, c[0])]
            if not missing:
                return cur
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{sup.label}: {len(missing)} of {len(self.names)} programs not up (or not registered) "
                    f"after {timeout} s, e.g. {missing[:5]}; daemon log:\n{sup.log_tail()}"
                )
            time.sleep(0.2)

    def daemon_children(self, pid):
        kids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                f = stat_fields(entry)
                if f is not None and int(f[1]) == pid:
                    kids.append(int(entry))
        return kids

    # ------------------------------------------------------------------ measurements

    def idle(self, sup, up):
        """Idle cost over the window: the daemon process only (not the programs)."""
        window = self.args.window
        pid = sup.daemon_pid
        kids = self.daemon_children(pid)
        log(f"{sup.key}: idle window {window} s (daemon pid {pid}, {len(kids)} child processes)")
        a = snapshot(pid)
        rss_samples = [a["status"].get("VmRSS", 0)]
        end = a["t"] + window
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(5.0, left))
            s = status_kb(pid)
            if s:
                rss_samples.append(s.get("VmRSS", 0))
        b = snapshot(pid)
        if a is None or b is None or not sup.daemon_alive():
            raise BenchError(f"{sup.label} daemon died during the idle window:\n{sup.log_tail()}")
        elapsed = b["t"] - a["t"]
        run_ns = 0
        for tid, t in b["tasks"].items():
            run_ns += t["run_ns"] - a["tasks"].get(tid, {"run_ns": 0})["run_ns"]
        task_ticks = sum(t["ticks"] - a["tasks"].get(tid, {"ticks": 0})["ticks"] for tid, t in b["tasks"].items())
        vcsw = sum(t["vcsw"] - a["tasks"].get(tid, {"vcsw": 0})["vcsw"] for tid, t in b["tasks"].items())
        nvcsw = sum(t["nvcsw"] - a["tasks"].get(tid, {"nvcsw": 0})["nvcsw"] for tid, t in b["tasks"].items())
        ticks = b["ticks"] - a["ticks"]
        gone_tids = sorted(set(a["tasks"]) - set(b["tasks"]))
        new_tids = sorted(set(b["tasks"]) - set(a["tasks"]))
        after = {n: self.current(sup, n) for n in self.names}
        restarted = [n for n in self.names if after[n] != up[n]]
        res = {
            "elapsed": elapsed,
            "rss": b["status"].get("VmRSS", 0),
            "rss_max": max(rss_samples + [b["status"].get("VmRSS", 0)]),
            "anon": b["status"].get("RssAnon", 0),
            "file": b["status"].get("RssFile", 0),
            "hwm": b["status"].get("VmHWM", 0),
            "threads": b["status"].get("Threads", len(b["tasks"])),
            "ticks": ticks,
            "task_ticks": task_ticks,
            "child_ticks": b["child_ticks"] - a["child_ticks"],
            "run_ns": run_ns,
            "cpu_pct": 100 * run_ns / 1e9 / elapsed,
            "ticks_pct": 100 * ticks / CLK_TCK / elapsed,
            "wakeups": vcsw / elapsed,
            "nvcsw": nvcsw,
            "children": len(kids),
            "restarted": restarted,
            "tid_changes": (gone_tids, new_tids),
        }
        if restarted:
            sup.extra_notes.append(f"{len(restarted)} program(s) restarted during the idle window: {restarted[:10]}")
        if gone_tids or new_tids:
            sup.extra_notes.append(
                f"threads changed during the idle window (ended: {len(gone_tids)}, new: {len(new_tids)}); "
                "schedstat misses ended threads, the process-wide ticks include them"
            )
        return res

    def latency(self, sup):
        """kill -9 a random program at a random moment; time until the new copy runs."""
        trials, deadline_s = self.args.trials, self.args.deadline
        samples, timeouts, problems = [], 0, []
        last_respawn = time.monotonic()
        for i in range(trials):
            # A settled target: up, registered, running for >= SETTLE_AFTER_RESPAWN.
            wait_until = time.monotonic() + 60
            while True:
                name = self.rng.choice(self.names)
                cur = self.current(sup, name)
                if cur and self.registered(sup, name, cur[0]) and time.time_ns() - cur[1] >= SETTLE_AFTER_RESPAWN * 1e9:
                    break
                if time.monotonic() > wait_until:
                    raise BenchError(f"{sup.label}: no settled program to kill for 60 s (trial {i + 1})")
                time.sleep(0.05)
            # Random moment: 1-3 s, and never sooner than SETTLE_AFTER_RESPAWN after the last respawn.
            pause = max(0.0, last_respawn + SETTLE_AFTER_RESPAWN - time.monotonic()) + self.rng.uniform(1.0, 3.0)
            time.sleep(pause)
            old = self.current(sup, name)
            if old is None or old != cur:
                problems.append(f"trial {i + 1}: {name} changed by itself before the kill ({cur} -> {old})")
                continue
            if not sup.daemon_alive():
                raise BenchError(f"{sup.label} daemon died during the latency trials:\n{sup.log_tail()}")
            old_pid = old[0]
            path = sup.stamp(name)
            old_ino = os.stat(path).st_ino
            t_kill = time.time_ns()
            os.kill(old_pid, signal.SIGKILL)
            limit = time.monotonic() + deadline_s
            new = None
            reaped = False
            while True:
                if not reaped:
                    reaped = reap(old_pid)  # the prompt init of a normal machine
                try:
                    ino = os.stat(path).st_ino
                except FileNotFoundError:
                    ino = old_ino
                if ino != old_ino:
                    data = read_file(path)
                    try:
                        ns, pid = (int(x) for x in data.split())
                    except (ValueError, AttributeError):
                        ns = pid = None
                    if pid is not None and pid != old_pid:
                        new = (pid, ns)
                        break
                    old_ino = ino
                if time.monotonic() > limit:
                    break
                time.sleep(0.001)
            last_respawn = time.monotonic()
            self.reap_orphans()
            if new is None:
                timeouts += 1
                log(f"{sup.key}: trial {i + 1}: {name} not respawned within {deadline_s} s")
                continue
            lat = new[1] - t_kill
            argv = proc_cmdline(new[0])
            if argv != sup.argv(name):
                problems.append(f"trial {i + 1}: new pid {new[0]} of {name} runs {argv}, not the program")
                continue
            if lat < 0:
                problems.append(f"trial {i + 1}: the new copy {new[0]} of {name} started {-lat / 1e6:.1f} ms before the kill (a duplicate)")
                continue
            samples.append(lat)
            log(f"{sup.key}: trial {i + 1}/{trials}: {name} pid {old_pid} -> {new[0]} in {lat / 1e6:.2f} ms")
            # The supervisor must register the new copy, and it must be the only one.
            reg_until = time.monotonic() + SETTLE_AFTER_RESPAWN + 3
            while not self.registered(sup, name, new[0]) and time.monotonic() < reg_until:
                time.sleep(0.05)
            if not self.registered(sup, name, new[0]):
                problems.append(f"trial {i + 1}: the pidfile of {name} names {self.pidfile_pid(sup, name)}, not the new copy {new[0]}")
            copies = self.instances(sup).get(name, [])
            if copies != [new[0]]:
                problems.append(f"trial {i + 1}: {name} has {len(copies)} copies after the respawn: {copies}")
        return {"samples": samples, "timeouts": timeouts, "problems": problems}

    # ------------------------------------------------------------------ one supervisor

    def bench_one(self, sup):
        log(f"=== {sup.label}: {len(self.names)} programs in {sup.home}")
        sup.start()
        t0 = time.monotonic()
        up = self.wait_all_up(sup, self.args.start_timeout)
        t_up = time.monotonic() - t0
        log(f"{sup.key}: all {len(self.names)} programs up after {t_up:.1f} s; settling {self.args.settle} s")
        time.sleep(self.args.settle)
        if not sup.daemon_alive():
            raise BenchError(f"{sup.label} daemon died while settling:\n{sup.log_tail()}")
        up = {n: self.current(sup, n) for n in self.names}
        down = [n for n, c in up.items() if c is None]
        if down:
            raise BenchError(f"{sup.label}: programs went down while settling: {down[:10]}\n{sup.log_tail()}")
        dup = {n: p for n, p in self.instances(sup).items() if len(p) > 1}
        if dup:
            sup.extra_notes.append(f"{len(dup)} program(s) with several copies after start: {dict(list(dup.items())[:5])}")
        load0 = loadavg()
        idle = self.idle(sup, up) if self.args.window > 0 else None
        load1 = loadavg()
        lat = self.latency(sup) if self.args.trials > 0 else None
        load2 = loadavg()
        sup.stop()
        if sup.daemon_alive():
            raise BenchError(f"{sup.label} daemon still running after stop")
        # Programs outlive every one of these supervisors: count them, then kill them.
        alive = sum(1 for n in self.names if self.current(sup, n))
        killed = self.kill_programs()
        log(f"{sup.key}: daemon stopped; {alive} programs were still running, killed {killed} copies")
        return {"t_up": t_up, "idle": idle, "lat": lat, "alive_after_stop": alive, "killed": killed, "load": (load0, load1, load2)}

    # ------------------------------------------------------------------ report

    def machine(self):
        cpu = "?"
        for line in (read_file("/proc/cpuinfo") or b"").decode().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        rows = [
            ["date", datetime.datetime.now().astimezone().isoformat(timespec="seconds")],
            ["nproc", os.cpu_count()],
            ["kernel", os.uname().release],
            ["CPU", cpu],
            ["load average at start", loadavg()],
            ["uid", os.getuid()],
            ["supervised program", f"`stamp FILE` (C, gcc -O2, {self.stamp_link}), {len(self.names)} copies per supervisor"],
            ["programs with an RSS monitor / an activity-file monitor", f"{len(self.rss_names)} / {len(self.act_names)}"],
            ["idle window / settle before it", f"{self.args.window} s / {self.args.settle} s"],
            ["latency trials / per-trial deadline / seed", f"{self.args.trials} / {self.args.deadline} s / {self.args.seed}"],
        ]
        for sup in self.sups:
            try:
                ver = sup.version()
            except OSError as e:
                ver = f"? ({e})"
            rows.append([sup.label, f"`{sup.exe}` — `{ver}`"])
        self.out("# usrsvcd benchmark: ours vs Python usrsvcd 1.5.13 vs monit")
        self.out()
        self.table(["fact", "value"], rows)

    def report(self, results):
        self.out("## 1. Crash-to-respawn latency")
        self.out()
        self.out(
            f"kill -9 of a random program at a random moment (1–3 s after it was settled), time until its "
            f"new copy ran `clock_gettime` in `main` (stamp ns − `time.time_ns()` just before `kill()`). "
            f"{self.args.trials} trials per supervisor, {self.args.deadline} s deadline each."
        )
        self.out()
        rows = []
        for sup in self.sups:
            r = results.get(sup.key)
            lat = r and r.get("lat")
            if not lat:
                rows.append([sup.label, "—", "—", "—", "—", "—", "failed" if r is None else "not run"])
                continue
            s = lat["samples"]
            if s:
                rows.append([sup.label, len(s), fmt_ms(statistics.median(s)), fmt_ms(min(s)), fmt_ms(max(s)), fmt_ms(statistics.fmean(s)), lat["timeouts"]])
            else:
                rows.append([sup.label, 0, "—", "—", "—", "—", lat["timeouts"]])
        self.table(["supervisor", "trials ok", "median ms", "min ms", "max ms", "mean ms", "timeouts"], rows)

        self.out(f"## 2. Idle cost, {len(self.names)} programs, {self.args.window} s window (daemon process only)")
        self.out()
        rows = []
        for sup in self.sups:
            r = results.get(sup.key)
            i = r and r.get("idle")
            if not i:
                rows.append([sup.label] + ["—"] * 9)
                continue
            rows.append([
                sup.label,
                f"{i['rss']:,}",
                f"{i['rss_max']:,}",
                f"{i['anon']:,} / {i['file']:,}",
                i["threads"],
                f"{i['run_ns'] / 1e6:.1f}",
                f"{i['cpu_pct']:.4f} %",
                f"{i['ticks']} ({i['ticks_pct']:.3f} %)",
                f"{i['wakeups']:.1f}",
                i["child_ticks"],
            ])
        self.table(
            ["supervisor", "VmRSS kB (end)", "VmRSS kB (max)", "RssAnon / RssFile kB", "threads",
             "CPU ms in window (schedstat)", "CPU % of one core", "utime+stime ticks (%)", "wake-ups/s", "reaped children ticks"],
            rows,
        )
        self.out(
            f"CPU % = sum over the daemon's threads of `/proc/PID/task/*/schedstat` run time (ns) / window; "
            f"cross-check: `utime+stime` of `/proc/PID/stat` (all threads, ended ones too) in ticks of 1/{CLK_TCK} s. "
            "Wake-ups = voluntary context switches of all threads per second. RSS sampled every 5 s."
        )
        self.out()

        ours = results.get("ours")
        if any(s.key == "ours" for s in self.sups):
            lat = ours and ours.get("lat")
            if lat and lat["samples"]:
                med, mx = statistics.median(lat["samples"]) / 1e6, max(lat["samples"]) / 1e6
                self.goals.append((f"respawn median < {LAT_MEDIAN_GOAL_MS:.0f} ms", f"{med:.2f} ms", "PASS" if med < LAT_MEDIAN_GOAL_MS else "FAIL"))
                ok = mx < LAT_MAX_GOAL_MS and lat["timeouts"] == 0
                self.goals.append((f"respawn max < {LAT_MAX_GOAL_MS:.0f} ms, no timeout", f"{mx:.2f} ms, {lat['timeouts']} timeouts", "PASS" if ok else "FAIL"))
            idle = ours and ours.get("idle")
            if idle:
                self.goals.append((f"idle VmRSS < {RSS_GOAL_KB} kB", f"{idle['rss_max']:,} kB (max)", "PASS" if idle["rss_max"] < RSS_GOAL_KB else "FAIL"))
                self.goals.append((f"idle CPU < {CPU_GOAL_PCT} % of one core", f"{idle['cpu_pct']:.4f} %", "PASS" if idle["cpu_pct"] < CPU_GOAL_PCT else "FAIL"))
        planned = results.get("planned")
        lat = planned and planned.get("lat")
        if lat and lat["samples"]:
            med, mx = statistics.median(lat["samples"]) / 1e6, max(lat["samples"]) / 1e6
            self.goals.append((f"with plans and health checks: respawn median < {LAT_MEDIAN_GOAL_MS:.0f} ms", f"{med:.2f} ms", "PASS" if med < LAT_MEDIAN_GOAL_MS else "FAIL"))
        if not self.goals:
            self.goals.append(("our usrsvcd measured", "no", "N/A"))
        self.out("## Goals (ours)")
        self.out()
        self.table(["goal", "result", "verdict"], [list(g) for g in self.goals])

        self.out("## Per supervisor")
        self.out()
        for sup in self.sups:
            r = results.get(sup.key)
            self.out(f"### {sup.label}")
            self.out()
            self.out(f"- daemon: `{getattr(sup, 'cmd', '?')}` with `HOME={sup.home}` (env: {' '.join(f'{k}={shlex.quote(v)}' for k, v in sup.env.items() if k != 'HOME')})")
            if r:
                self.out(f"- all {len(self.names)} programs up {r['t_up']:.1f} s after the daemon started; "
                         f"{r['alive_after_stop']} of them still running after the daemon stopped (then killed by pid)")
                self.out("- load average (1, 5, 15 min) before the idle window / after it / after the trials: " + " / ".join(r["load"]))
                if r.get("idle"):
                    self.out(f"- child processes of the daemon at the window start: {r['idle']['children']}; "
                             f"involuntary context switches in the window: {r['idle']['nvcsw']}")
                for p in (r.get("lat") or {}).get("problems", []):
                    self.out(f"- PROBLEM: {p}")
            for label, msg in self.failed:
                if label == sup.label:
                    self.out(f"- **FAILED**: {msg.splitlines()[0]}")
                    self.out()
                    self.out("```")
                    self.out(msg)
                    self.out("```")
            for n in sup.extra_notes:
                self.out(f"- note: {n}")
            self.out()
            self.out("<details><summary>config</summary>")
            self.out()
            self.out("```ini")
            self.out(self.config_excerpt(sup.config_text))
            self.out("```")
            self.out()
            self.out("</details>")
            self.out()
        self.out(f"Load average at end: {loadavg()}")

    def config_excerpt(self, text):
        """The config with one program of each kind (RSS monitor, activity monitor, plain)."""
        shown = {self.rss_names[0], self.act_names[0], self.names[2 * len(self.rss_names)]}
        keep, skipped = [], 0
        for para in text.strip("\n").split("\n\n"):
            named = set(re.findall(r"\bp\d{3}\b", para))
            if not named or named & shown:
                keep.append(para)
            else:
                skipped += 1
        if skipped:
            keep.append(f"# ... {skipped} more sections like these, up to {self.names[-1]}")
        return "\n\n".join(keep)

    # ------------------------------------------------------------------ main

    def preflight(self):
        if os.path.exists("/proc/self/schedstat") is False:
            raise BenchError("/proc/PID/schedstat is missing (kernel without CONFIG_SCHEDSTATS?)")

    def main(self):
        self.preflight()
        self.setup()
        log(f"temp tree: {self.root}")
        wanted = self.args.only.split(",") if self.args.only else ["ours", "planned", "python", "monit"]
        classes = {
            "ours": (Ours, self.args.ours),
            "planned": (OursPlanned, self.args.ours),
            "python": (Python, self.args.py_usrsvcd),
            "monit": (Monit, self.args.monit),
        }
        for key in wanted:
            if key not in classes:
                raise BenchError(f"--only: unknown supervisor {key!r} (ours, planned, python, monit)")
            cls, exe = classes[key]
            if not exe:
                log(f"SKIPPING {cls.label}: no executable given")
                self.notes.append(f"{cls.label} skipped: no executable given")
                continue
            sup = cls(self, os.path.abspath(exe) if os.sep in exe else (shutil.which(exe) or exe))
            sup.prepare()
            self.sups.append(sup)
        self.machine()
        results = {}
        for sup in self.sups:
            try:
                results[sup.key] = self.bench_one(sup)
            except BenchError as e:
                log(f"FAILED {sup.label}: {e}")
                self.failed.append((sup.label, str(e)))
            finally:
                # Whatever happened, the next supervisor starts on a clean machine.
                try:
                    sup.stop()
                except BenchError as e:
                    log(f"stop {sup.key}: {e}")
                if sup.daemon_alive():
                    os.kill(sup.daemon_pid, signal.SIGKILL)
                    wait_gone(sup.daemon_pid, 10)
                self.kill_programs()
        self.report(results)
        if self.notes:
            self.out()
            for n in self.notes:
                self.out(f"- note: {n}")
        publish(self.md, self.args.results)
        if self.failed:
            return 2
        return 0 if all(g[2] != "FAIL" for g in self.goals) else 3


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ours", help="our usrsvcd binary (run as `usrsvcd --foreground`)")
    ap.add_argument("--py-usrsvcd", help="the Python usrsvcd 1.5.13 script (omit to skip)")
    ap.add_argument("--monit", help="the monit binary (omit to skip)")
    ap.add_argument("--only", help="comma-separated subset of ours,planned,python,monit (default: all given)")
    ap.add_argument("--results", help="also write the markdown results here")
    ap.add_argument("--programs", type=int, default=100, help="supervised programs per supervisor (default 100)")
    ap.add_argument("--window", type=float, default=60, help="idle window in s (default 60; 0 = skip)")
    ap.add_argument("--trials", type=int, default=30, help="kill/respawn trials (default 30; 0 = skip)")
    ap.add_argument("--settle", type=float, default=15, help="s to wait after all programs are up (default 15)")
    ap.add_argument("--deadline", type=float, default=30, help="per-trial respawn deadline in s (default 30)")
    ap.add_argument("--start-timeout", type=float, default=180, help="s for all programs to come up (default 180)")
    ap.add_argument("--seed", type=int, default=1, help="random seed for targets and pauses (default 1)")
    ap.add_argument("--quick", action="store_true", help="a quick try: --window 10 --trials 5 --programs 20 --settle 10")
    args = ap.parse_args()
    if args.quick:
        given = set(a.split("=")[0] for a in sys.argv[1:])
        for opt, val in (("--window", 10), ("--trials", 5), ("--programs", 20), ("--settle", 10)):
            if opt not in given:
                setattr(args, opt[2:], val)
    if args.programs < 4:
        ap.error("--programs must be at least 4")

    return run_bench(DaemonBench(args))


if __name__ == "__main__":
    sys.exit(main())
