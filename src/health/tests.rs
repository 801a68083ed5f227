//! Single runs against real `/bin/sh` processes. The Watcher and the process-group cleanup
//! are exercised in `tests/health.rs`.

use std::time::{Duration, SystemTime};

use super::*;

fn target(env: &[(&str, &str)], inherit_env: bool) -> Target {
    Target {
        program: "web".into(),
        pid: 4242,
        started: SystemTime::now(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        inherit_env,
    }
}

fn check(command: &str) -> CheckSpec {
    CheckSpec {
        timeout: Duration::from_secs(60),
        ..CheckSpec::new("probe", command)
    }
}

#[test]
fn exit_codes_map_to_healthy_degraded_failing() {
    let t = target(&[], true);
    for (cmd, status, said) in [
        ("exit 0", Status::Healthy, "exit 0"),
        ("exit 1", Status::Degraded, "exit 1"),
        ("exit 2", Status::Failing, "exit 2"),
        ("exit 255", Status::Failing, "exit 255"),
        ("no-such-command-here", Status::Failing, "exit 127"),
    ] {
        let o = run_check(&t, &check(cmd));
        assert_eq!(
            (o.status, o.describe().as_str()),
            (status, said),
            "{cmd}: {o:?}"
        );
    }
}

#[test]
fn death_by_a_signal_is_failing() {
    let o = run_check(&target(&[], true), &check("kill -TERM $$; sleep 5"));
    assert_eq!(o.exit, Exit::Signal(15), "{o:?}");
    assert_eq!(o.status, Status::Failing);
    assert_eq!(o.describe(), "killed by SIGTERM");
}

#[test]
fn the_check_sees_its_program_and_the_programs_env() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("env");
    let cmd = format!(
        "echo \"$USRSVC_PROGRAM|$USRSVC_PID|$USRSVC_CHECK|$APP_PORT|${{HOME-unset}}\" > {}",
        out.display()
    );
    // No inherited environment: only [[Env]] and ours (HOME is set in any test run).
    let o = run_check(&target(&[("APP_PORT", "8080")], false), &check(&cmd));
    assert_eq!(o.status, Status::Healthy, "{o:?}");
    let seen = std::fs::read_to_string(&out).expect("the check wrote");
    assert_eq!(seen.trim(), "web|4242|probe|8080|unset");

    // Inherited, with [[Env]] on top and the USRSVC_* names always ours.
    let o = run_check(
        &target(&[("APP_PORT", "9090"), ("USRSVC_CHECK", "spoofed")], true),
        &check(&cmd),
    );
    assert_eq!(o.status, Status::Healthy, "{o:?}");
    let seen = std::fs::read_to_string(&out).expect("the check wrote");
    let home = std::env::var("HOME").unwrap_or_else(|_| "unset".into());
    assert_eq!(seen.trim(), format!("web|4242|probe|9090|{home}"));
}

#[test]
fn output_is_stdout_and_stderr_together_and_only_its_tail_is_kept() {
    let o = run_check(
        &target(&[], true),
        &check("echo to-out; echo to-err >&2; exit 2"),
    );
    assert_eq!(o.output, "to-out\nto-err\n");

    // 10 000 bytes, then a last line: the reason is at the end, and it is what is kept.
    let cmd = "i=0; while [ $i -lt 100 ]; do printf '%099d\\n' $i; i=$((i+1)); done; \
               echo 'the last word' >&2";
    let o = run_check(&target(&[], true), &check(cmd));
    assert_eq!(o.status, Status::Healthy, "{}", o.describe());
    assert!(o.output.len() <= OUTPUT_TAIL, "{}", o.output.len());
    assert!(o.output.ends_with("the last word\n"), "{:?}", o.output);
    assert!(o.output.contains(&format!("{:099}\n", 99)));
}

#[test]
fn a_tail_cut_inside_a_utf8_character_starts_clean() {
    // "é" is two bytes; an odd total cuts one in half at the front of the tail.
    let cmd = "i=0; while [ $i -lt 1500 ]; do printf 'é'; i=$((i+1)); done; printf x";
    let o = run_check(&target(&[], true), &check(cmd));
    assert!(!o.output.contains('\u{fffd}'), "{:?}", &o.output[..8]);
    assert!(o.output.starts_with('é') && o.output.ends_with('x'));
}

#[test]
fn a_check_that_cannot_start_is_failing_and_says_why() {
    // A NUL byte cannot be passed to exec; std refuses before forking.
    let o = run_check(&target(&[("BAD", "a\0b")], false), &check("exit 0"));
    assert_eq!(o.status, Status::Failing);
    assert!(
        o.describe().starts_with("not started: /bin/sh: "),
        "{}",
        o.describe()
    );
}

#[test]
fn repair_runs_only_when_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = target(&[], true);
    assert_eq!(run_repair(&t, &check("exit 0")), None);
    let marker = dir.path().join("fixed");
    let spec = CheckSpec {
        repair: Some(format!(
            "echo \"$USRSVC_CHECK\" > {}; exit 3",
            marker.display()
        )),
        ..check("exit 0")
    };
    let o = run_repair(&t, &spec).expect("a repair ran");
    assert_eq!(o.exit, Exit::Code(3));
    assert_eq!(
        std::fs::read_to_string(&marker).expect("written").trim(),
        "probe"
    );
}

#[test]
fn outcomes_describe_themselves_for_people() {
    let mut o = run::not_started("x".into());
    o.exit = Exit::TimedOut(Duration::from_secs(10));
    assert_eq!(o.describe(), "timed out after 10s");
    o.exit = Exit::TimedOut(Duration::from_millis(250));
    assert_eq!(o.describe(), "timed out after 0.25s");
    o.exit = Exit::Signal(9);
    assert_eq!(o.describe(), "killed by SIGKILL");
    o.exit = Exit::NotStarted("/bin/sh: No such file".into());
    assert_eq!(o.describe(), "not started: /bin/sh: No such file");
}

#[test]
fn statuses_and_actions_serialize_as_words() {
    let words: Vec<String> = [Status::Healthy, Status::Degraded, Status::Failing]
        .iter()
        .map(|s| serde_json::to_string(s).expect("json"))
        .collect();
    assert_eq!(words, ["\"healthy\"", "\"degraded\"", "\"failing\""]);
    assert_eq!(
        serde_json::to_string(&HealthAction::Restart).expect("json"),
        "\"restart\""
    );
}
