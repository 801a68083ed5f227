//! Health checks against real processes: process groups killed at timeout and at the end of a
//! check, concurrency of `run_all`, and the `Watcher`'s counting, repairs, start period and
//! unwatch. Every wait is on a condition with a generous deadline; the scripts write the pids
//! of what they start to `*.pid` files, and `Scratch` kills those by pid on drop, so a failing
//! test leaves nothing behind.

mod common;

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::{alive, stat_field, wait_for};
use usrsvc::health::{
    run_all, run_check, CheckSpec, Event, Exit, HealthAction, Status, Target, Watcher,
};

const LONG: Duration = Duration::from_secs(30);

/// A temp directory for the scripts' files; kills every process named in its `*.pid` files,
/// and every process in those processes' groups, on drop.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The shell word for a file in the directory.
    fn p(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// The pid a script wrote to `name`, once it is there.
    fn pid(&self, name: &str) -> i32 {
        let path = self.path(name);
        let mut pid = None;
        assert!(
            wait_for(LONG, || {
                pid = read_pid(&path);
                pid.is_some()
            }),
            "no pid in {}",
            path.display()
        );
        pid.unwrap_or_default()
    }

    fn lines(&self, name: &str) -> usize {
        std::fs::read_to_string(self.path(name)).map_or(0, |s| s.lines().count())
    }
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.dir.path()) else {
            return;
        };
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "pid") {
                if let Some(pid) = read_pid(&e.path()) {
                    for member in group(pid).into_iter().chain([pid]) {
                        if alive(member) {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(member),
                                nix::sys::signal::Signal::SIGKILL,
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The live (not zombie) processes whose process group is `pgid`.
fn group(pgid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| stat_field(pid, 5).and_then(|g| g.parse().ok()) == Some(pgid))
        .filter(|&pid| alive(pid))
        .collect()
}

fn target(scratch: &Scratch) -> Target {
    Target {
        program: "web".into(),
        pid: std::process::id() as i32,
        started: SystemTime::now(),
        env: vec![("DIR".into(), scratch.p(""))],
        inherit_env: true,
    }
}

fn spec(name: &str, command: &str) -> CheckSpec {
    CheckSpec {
        interval: Duration::from_millis(100),
        timeout: LONG,
        failures: 3,
        ..CheckSpec::new(name, command)
    }
}

#[test]
fn a_hanging_check_is_killed_at_its_timeout_with_its_whole_group() {
    let s = Scratch::new();
    let cmd = format!(
        "echo $$ > {}; sleep 1000 & echo $! > {}; sleep 1000",
        s.p("leader.pid"),
        s.p("background.pid")
    );
    let check = CheckSpec {
        timeout: Duration::from_millis(300),
        ..spec("hang", &cmd)
    };
    let o = run_check(&target(&s), &check);
    assert_eq!(o.exit, Exit::TimedOut(Duration::from_millis(300)), "{o:?}");
    assert_eq!(o.status, Status::Failing);
    assert_eq!(o.describe(), "timed out after 0.3s");
    let (leader, background) = (s.pid("leader.pid"), s.pid("background.pid"));
    assert!(
        wait_for(LONG, || group(leader).is_empty() && !alive(background)),
        "left in the group: {:?}",
        group(leader)
    );
}

#[test]
fn what_a_finished_check_left_in_its_group_is_killed() {
    let s = Scratch::new();
    let cmd = format!(
        "echo $$ > {}; sleep 1000 & echo $! > {}; exit 0",
        s.p("leader.pid"),
        s.p("background.pid")
    );
    let o = run_check(&target(&s), &spec("leaky", &cmd));
    assert_eq!(o.status, Status::Healthy, "{o:?}");
    let background = s.pid("background.pid");
    assert!(wait_for(LONG, || !alive(background)), "{background} lives");
}

#[test]
fn a_process_that_left_the_group_holding_the_output_pipe_does_not_hold_the_check() {
    // It keeps stdout open for ever; waiting for EOF would run into the timeout.
    let s = Scratch::new();
    // It notes its pid once it has left the group; the check waits for that, so the kill of
    // the group at its end cannot reach it.
    let cmd = format!(
        "setsid sh -c 'echo $$ > {esc}; exec sleep 1000' & \
         while [ ! -s {esc} ]; do sleep 0.01; done; echo done; exit 0",
        esc = s.p("escaped.pid")
    );
    let o = run_check(&target(&s), &spec("escape", &cmd));
    assert_eq!(o.exit, Exit::Code(0), "{o:?}");
    assert_eq!(o.output, "done\n");
    assert!(alive(s.pid("escaped.pid")), "outside the group: not ours");
}

#[test]
fn run_all_runs_checks_at_once_and_answers_in_order() {
    // Each check waits until all three have started: run one after another, the first would
    // wait for ever (and time out).
    let s = Scratch::new();
    let cmd = |code: i32| {
        format!(
            "touch \"$DIR/$USRSVC_CHECK\"; \
             while [ ! -e \"$DIR/a\" ] || [ ! -e \"$DIR/b\" ] || [ ! -e \"$DIR/c\" ]; do sleep 0.02; done; \
             exit {code}"
        )
    };
    let t = target(&s);
    let jobs = vec![
        (t.clone(), spec("a", &cmd(2))),
        (t.clone(), spec("b", &cmd(0))),
        (t, spec("c", &cmd(1))),
    ];
    let got: Vec<Exit> = run_all(&jobs).into_iter().map(|o| o.exit).collect();
    assert_eq!(got, [Exit::Code(2), Exit::Code(0), Exit::Code(1)]);
}

/// A Watcher with the read end of its wake socket.
struct Watched {
    watcher: Watcher,
    wake: UnixStream,
    seen: Vec<Event>,
}

impl Watched {
    fn new() -> Watched {
        let (wake, write) = UnixStream::pair().expect("pair");
        wake.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        Watched {
            watcher: Watcher::start(write).expect("thread"),
            wake,
            seen: Vec::new(),
        }
    }

    /// Reads events, woken by the wake byte, until `done` holds for what was seen (all of it
    /// since the start). Returns the events that arrived meanwhile.
    fn until(&mut self, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
        let start = self.seen.len();
        let end = std::time::Instant::now() + LONG;
        while !done(&self.seen) {
            assert!(
                std::time::Instant::now() < end,
                "waited in vain; seen: {:#?}",
                self.seen
            );
            let mut byte = [0u8; 16];
            if matches!((&self.wake).read(&mut byte), Ok(n) if n > 0) {
                self.seen.extend(self.watcher.events());
            }
        }
        self.seen[start..].to_vec()
    }
}

fn verdicts(events: &[Event], of: &str) -> Vec<(Status, u32)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Verdict {
                program,
                outcome,
                consecutive_failures,
                ..
            } if program == of => Some((outcome.status, *consecutive_failures)),
            _ => None,
        })
        .collect()
}

fn acts(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Act { .. }))
        .count()
}

#[test]
fn a_failing_check_asks_for_its_action_after_exactly_failures_verdicts() {
    let s = Scratch::new();
    let mut w = Watched::new();
    let t = target(&s);
    w.watcher.watch(t.clone(), vec![spec("ping", "exit 2")]);
    let got = w.until(|e| acts(e) == 1);
    assert_eq!(
        verdicts(&got, "web"),
        [
            (Status::Failing, 1),
            (Status::Failing, 2),
            (Status::Failing, 3)
        ]
    );
    let Some(Event::Act {
        program,
        pid,
        check,
        action,
        why,
    }) = got.last()
    else {
        panic!("no Act last: {got:#?}");
    };
    assert_eq!(
        (program.as_str(), *pid, check.as_str(), action),
        ("web", t.pid, "ping", &HealthAction::Restart)
    );
    assert_eq!(why, "3 consecutive failures; last: exit 2");
    // Counting starts again after the action.
    let more = w.until(|e| acts(e) == 2);
    assert_eq!(verdicts(&more, "web").first(), Some(&(Status::Failing, 1)));
}

#[test]
fn degraded_and_healthy_end_a_run_of_failures_and_degraded_never_acts() {
    let s = Scratch::new();
    let mut w = Watched::new();
    // Runs: fail, fail, degraded, fail, fail, healthy, degraded..., counted in a file.
    let cmd = format!(
        "n=$(cat {c} 2>/dev/null || echo 0); echo $((n+1)) > {c}; \
         case $n in 0|1|3|4) exit 2;; 5) exit 0;; *) exit 1;; esac",
        c = s.p("count")
    );
    w.watcher.watch(target(&s), vec![spec("seq", &cmd)]);
    let got = w.until(|e| verdicts(e, "web").len() >= 10);
    use Status::*;
    assert_eq!(
        verdicts(&got, "web")[..10],
        [
            (Failing, 1),
            (Failing, 2),
            (Degraded, 0),
            (Failing, 1),
            (Failing, 2),
            (Healthy, 0),
            (Degraded, 0),
            (Degraded, 0),
            (Degraded, 0),
            (Degraded, 0)
        ]
    );
    assert_eq!(acts(&got), 0, "{got:#?}");
}

#[test]
fn no_check_runs_before_the_start_period_has_passed() {
    let s = Scratch::new();
    let mut w = Watched::new();
    let t = target(&s);
    let cmd = format!("date +%s%N >> {}", s.p("runs"));
    let check = CheckSpec {
        start_period: Duration::from_millis(700),
        ..spec("late", &cmd)
    };
    w.watcher.watch(t.clone(), vec![check]);
    w.until(|e| !verdicts(e, "web").is_empty());
    let first: u128 = std::fs::read_to_string(s.path("runs"))
        .expect("runs")
        .lines()
        .next()
        .and_then(|l| l.parse().ok())
        .expect("a time");
    let allowed = (t.started + Duration::from_millis(700))
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("epoch")
        .as_nanos();
    assert!(
        first >= allowed,
        "ran {} ms early",
        (allowed - first) / 1_000_000
    );

    // A process up longer than its start period is checked at once, not an interval later.
    let old = Target {
        program: "old".into(),
        started: SystemTime::now() - Duration::from_secs(60),
        ..t
    };
    let check = CheckSpec {
        start_period: Duration::from_secs(5),
        interval: Duration::from_secs(3600),
        ..spec("now", "exit 0")
    };
    w.watcher.watch(old, vec![check]);
    w.until(|e| !verdicts(e, "old").is_empty());
}

#[test]
fn a_repair_that_works_is_reported_and_nothing_is_acted_on() {
    let s = Scratch::new();
    let mut w = Watched::new();
    let check = CheckSpec {
        failures: 2,
        repair: Some(format!("touch {}", s.p("repaired"))),
        ..spec("disk", &format!("[ -e {} ] || exit 2", s.p("repaired")))
    };
    w.watcher.watch(target(&s), vec![check]);
    let got = w.until(|e| verdicts(e, "web").len() >= 5);
    use Status::*;
    assert_eq!(
        verdicts(&got, "web")[..5],
        [
            (Failing, 1),
            (Failing, 2),
            (Healthy, 0),
            (Healthy, 0),
            (Healthy, 0)
        ]
    );
    let repaired: Vec<&Event> = got
        .iter()
        .filter(|e| matches!(e, Event::Repaired { .. }))
        .collect();
    assert!(
        matches!(repaired[..], [Event::Repaired { check, repair, .. }]
            if check == "disk" && repair.exit == Exit::Code(0)),
        "{got:#?}"
    );
    assert_eq!(acts(&got), 0);
}

#[test]
fn a_repair_that_does_not_help_runs_before_the_action() {
    let s = Scratch::new();
    let mut w = Watched::new();
    let check = CheckSpec {
        failures: 2,
        action: HealthAction::Alert,
        repair: Some(format!("echo tried > {}", s.p("repair-ran"))),
        ..spec("disk", "exit 3")
    };
    w.watcher.watch(target(&s), vec![check]);
    let got = w.until(|e| acts(e) == 1);
    // The repair's mark is there when the Act arrives; the check ran once more after it.
    assert!(s.path("repair-ran").exists());
    use Status::*;
    assert_eq!(
        verdicts(&got, "web"),
        [(Failing, 1), (Failing, 2), (Failing, 3)]
    );
    let Some(Event::Act { action, why, .. }) = got.last() else {
        panic!("{got:#?}");
    };
    assert_eq!(action, &HealthAction::Alert);
    assert_eq!(
        why,
        "2 consecutive failures; last: exit 3; repair ran (exit 0) and the check still fails (exit 3)"
    );
}

#[test]
fn a_new_pid_starts_the_count_afresh() {
    let s = Scratch::new();
    let mut w = Watched::new();
    let t = target(&s);
    w.watcher.watch(t.clone(), vec![spec("ping", "exit 2")]);
    w.until(|e| verdicts(e, "web").len() >= 2);
    let restarted = Target {
        pid: t.pid + 1,
        ..t
    };
    w.watcher.watch(restarted, vec![spec("ping", "exit 2")]);
    let got = w.until(|e| {
        e.iter()
            .any(|e| matches!(e, Event::Act { pid, .. } if *pid == t.pid + 1))
    });
    let new: Vec<u32> = got
        .iter()
        .filter_map(|e| match e {
            Event::Verdict {
                pid,
                consecutive_failures,
                ..
            } if *pid == t.pid + 1 => Some(*consecutive_failures),
            _ => None,
        })
        .collect();
    assert_eq!(new, [1, 2, 3]);
}

#[test]
fn unwatch_kills_a_running_check_and_stops_the_schedule() {
    let s = Scratch::new();
    let mut w = Watched::new();
    // Each run notes itself; the third hangs.
    let cmd = format!(
        "echo run >> {runs}; [ $(wc -l < {runs}) -lt 3 ] && exit 0; echo $$ > {leader}; sleep 1000",
        runs = s.p("runs"),
        leader = s.p("leader.pid")
    );
    w.watcher.watch(target(&s), vec![spec("busy", &cmd)]);
    let leader = s.pid("leader.pid");
    assert!(wait_for(LONG, || w.watcher.check_pids().contains(&leader)));
    w.watcher.unwatch("web");
    assert!(
        wait_for(LONG, || group(leader).is_empty()),
        "{:?}",
        group(leader)
    );
    assert!(wait_for(LONG, || w.watcher.check_pids().is_empty()));

    // Commands are handled in order: once another program has been checked a few times, the
    // unwatched one would have run again if it were still scheduled.
    let runs = s.lines("runs");
    let other = Target {
        program: "other".into(),
        ..target(&s)
    };
    w.watcher.watch(other, vec![spec("tick", "exit 0")]);
    w.until(|e| verdicts(e, "other").len() >= 5);
    assert_eq!(s.lines("runs"), runs);
}

#[test]
fn dropping_the_watcher_kills_and_reaps_its_checks() {
    let s = Scratch::new();
    let mut w = Watched::new();
    let cmd = format!("echo $$ > {}; sleep 1000", s.p("leader.pid"));
    w.watcher.watch(target(&s), vec![spec("hang", &cmd)]);
    let leader = s.pid("leader.pid");
    drop(w);
    // Reaped by the watcher's thread before the drop returned: no zombie is left either.
    assert!(
        !Path::new(&format!("/proc/{leader}")).exists(),
        "{:?}",
        stat_field(leader, 3)
    );
}

#[test]
fn a_hung_check_does_not_hold_up_another_programs_checks() {
    let s = Scratch::new();
    let mut w = Watched::new();
    let t = target(&s);
    let hang = format!("echo $$ > {}; sleep 1000", s.p("leader.pid"));
    w.watcher.watch(t.clone(), vec![spec("hang", &hang)]);
    s.pid("leader.pid");
    let other = Target {
        program: "other".into(),
        ..t
    };
    w.watcher.watch(other, vec![spec("tick", "exit 0")]);
    // The hung check's timeout is 30 s; these come while it still runs.
    w.until(|e| verdicts(e, "other").len() >= 3);
    assert!(verdicts(&w.seen, "web").is_empty());
}
