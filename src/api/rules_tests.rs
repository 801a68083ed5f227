use super::*;
use crate::api::testkit;

const OWNER: u32 = 4242;

fn caller(uid: u32, user: &str, groups: &[&str]) -> Caller {
    Caller {
        uid,
        gid: uid,
        pid: 1,
        user: user.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

fn ask(op: Op, target: &str) -> Ask<'_> {
    Ask {
        op,
        target: Some(target),
        reason: Some("ticket 7"),
        force: false,
        kill_switch: false,
    }
}

/// `ok`, `not_found`, or the refusing rule.
fn outcome(kind: Kind, config: &Config, ask: &Ask<'_>) -> String {
    match decide(kind, config, ask) {
        Ok(_) => "ok".into(),
        Err(r) => r.rule,
    }
}

#[test]
fn kinds_come_from_uid_user_name_and_group_membership() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = testkit::config(dir.path());
    let kind = |c: &Caller| Kind::of(c, &config, OWNER);
    assert_eq!(kind(&caller(OWNER, "me", &[])), Kind::Owner);
    assert_eq!(kind(&caller(0, "root", &[])), Kind::Root);
    assert_eq!(kind(&caller(1001, "alice", &[])), Kind::Delegated);
    assert_eq!(
        kind(&caller(1002, "bob", &["staff", "ops"])),
        Kind::Delegated
    );
    assert_eq!(kind(&caller(1003, "carol", &["staff"])), Kind::Stranger);
    // A name is matched whole, never as a prefix or case-insensitively.
    assert_eq!(kind(&caller(1004, "alice2", &["ops2"])), Kind::Stranger);
    assert_eq!(kind(&caller(1005, "Alice", &["OPS"])), Kind::Stranger);
    // The daemon of root: root is its owner.
    assert_eq!(Kind::of(&caller(0, "root", &[]), &config, 0), Kind::Owner);
}

#[test]
fn the_whole_table_of_ops_targets_and_kinds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = testkit::config(dir.path());
    let ops = [
        Op::Start,
        Op::Stop,
        Op::Restart,
        Op::Signal(3),
        Op::Signal(15),
        Op::Health,
        Op::Repair,
    ];
    let targets = ["a", "b", "c", "d", "g", "h", "all", "nosuch"];
    // What a delegated caller may do: exactly these.
    let delegated_ok = [
        (Op::Restart, "a"),
        (Op::Signal(3), "a"),
        (Op::Stop, "c"),
        (Op::Health, "c"),
        (Op::Stop, "g"),
    ];
    let group_op = |op: Op| matches!(op, Op::Start | Op::Stop | Op::Restart);
    for op in ops {
        for target in targets {
            let a = ask(op, target);
            let exists_for_op = match target {
                "a" | "b" | "c" | "d" => true,
                "g" | "h" | "all" => group_op(op),
                _ => false,
            };
            let full = if exists_for_op { "ok" } else { "not_found" };
            assert_eq!(
                outcome(Kind::Owner, &config, &a),
                full,
                "owner {op:?} {target}"
            );
            assert_eq!(
                outcome(Kind::Root, &config, &a),
                full,
                "root {op:?} {target}"
            );
            assert_eq!(
                outcome(Kind::Stranger, &config, &a),
                "not_allowed_user",
                "stranger {op:?} {target}"
            );
            let want = if delegated_ok.contains(&(op, target)) {
                "ok".to_string()
            } else if target == "all" {
                "owner_only".to_string()
            } else if !exists_for_op || matches!(target, "b" | "d" | "h") {
                // Ungranted names are not disclosed: the same refusal as for no such name.
                "not_granted".to_string()
            } else {
                format!("no_grant:{}", grant_word(op.grant().expect("grant")))
            };
            assert_eq!(
                outcome(Kind::Delegated, &config, &a),
                want,
                "delegated {op:?} {target}"
            );
        }
    }
}

#[test]
fn a_signal_grant_is_that_signal_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = testkit::config(dir.path());
    assert_eq!(
        outcome(Kind::Delegated, &config, &ask(Op::Signal(3), "a")),
        "ok"
    );
    assert_eq!(
        outcome(Kind::Delegated, &config, &ask(Op::Signal(9), "a")),
        "no_grant:signal:KILL"
    );
}

#[test]
fn delegated_change_ops_need_a_reason_and_never_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = testkit::config(dir.path());
    for reason in [None, Some(""), Some("  \t")] {
        let a = Ask {
            reason,
            ..ask(Op::Restart, "a")
        };
        let r = decide(Kind::Delegated, &config, &a).unwrap_err();
        assert_eq!((r.rule.as_str(), r.code), ("reason_required", 142));
        // The owner needs none unless require_reason.
        assert!(decide(Kind::Owner, &config, &a).is_ok());
    }
    let forced = Ask {
        force: true,
        ..ask(Op::Restart, "a")
    };
    assert_eq!(outcome(Kind::Delegated, &config, &forced), "owner_only");
    assert_eq!(outcome(Kind::Owner, &config, &forced), "ok");
}

#[test]
fn require_reason_holds_for_the_owner_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = testkit::config(dir.path());
    config.main.require_reason = true;
    let a = Ask {
        reason: None,
        ..ask(Op::Stop, "b")
    };
    let r = decide(Kind::Owner, &config, &a).unwrap_err();
    assert_eq!((r.rule.as_str(), r.code), ("reason_required", 140));
    assert_eq!(outcome(Kind::Owner, &config, &ask(Op::Stop, "b")), "ok");
}

#[test]
fn the_kill_switch_holds_changes_back_unless_the_owner_forces() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = testkit::config(dir.path());
    let on = |op, target, force| Ask {
        kill_switch: true,
        force,
        ..ask(op, target)
    };
    for op in [Op::Start, Op::Stop, Op::Restart, Op::Signal(3)] {
        let r = decide(Kind::Owner, &config, &on(op, "a", false)).unwrap_err();
        assert_eq!((r.kind, r.code), (ErrorKind::KillSwitch, 139));
        assert!(decide(Kind::Owner, &config, &on(op, "a", true)).is_ok());
        assert!(decide(Kind::Root, &config, &on(op, "a", true)).is_ok());
    }
    let r = decide(Kind::Delegated, &config, &on(Op::Restart, "a", false)).unwrap_err();
    assert_eq!(r.kind, ErrorKind::KillSwitch);
    assert_eq!(
        outcome(Kind::Delegated, &config, &on(Op::Restart, "a", true)),
        "owner_only"
    );
    // Checks are not changes.
    assert!(decide(Kind::Delegated, &config, &on(Op::Health, "c", false)).is_ok());
}

#[test]
fn reread_is_the_owners() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = testkit::config(dir.path());
    let a = Ask {
        target: None,
        ..ask(Op::Reread, "")
    };
    assert!(decide(Kind::Owner, &config, &a).is_ok());
    assert!(decide(Kind::Root, &config, &a).is_ok());
    assert_eq!(outcome(Kind::Delegated, &config, &a), "owner_only");
    assert_eq!(outcome(Kind::Stranger, &config, &a), "not_allowed_user");
}

#[test]
fn reads_show_a_delegated_caller_only_what_it_holds_grants_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = testkit::config(dir.path());
    let seen: Vec<&str> = ["a", "b", "c", "d"]
        .into_iter()
        .filter(|p| visible(Kind::Delegated, &config, p))
        .collect();
    assert_eq!(seen, ["a", "c"], "c through its group's grants");
    assert!(group_visible(Kind::Delegated, &config, "g"));
    assert!(!group_visible(Kind::Delegated, &config, "h"));
    assert!(["a", "b", "c", "d"]
        .iter()
        .all(|p| visible(Kind::Owner, &config, p)));
    assert!(!visible(Kind::Stranger, &config, "a"));
    assert!(!visible(Kind::Owner, &config, "nosuch"));
    for (target, want) in [
        ("a", "ok"),
        ("c", "ok"),
        ("g", "ok"),
        ("b", "not_granted"),
        ("h", "not_granted"),
        ("nosuch", "not_granted"),
        ("all", "ok"),
    ] {
        assert_eq!(
            outcome(Kind::Delegated, &config, &ask(Op::Read, target)),
            want,
            "{target}"
        );
    }
    let none = Ask {
        target: None,
        ..ask(Op::Read, "")
    };
    assert!(decide(Kind::Delegated, &config, &none).is_ok());
    assert_eq!(outcome(Kind::Stranger, &config, &none), "not_allowed_user");
    // Not found says nothing more for an ungranted program than for a missing one.
    let hidden = decide(Kind::Delegated, &config, &ask(Op::Restart, "b")).unwrap_err();
    let missing = decide(Kind::Delegated, &config, &ask(Op::Restart, "zz")).unwrap_err();
    assert_eq!(hidden.message.replacen('b', "zz", 1), missing.message);
    assert_eq!((hidden.rule.as_str(), hidden.code), ("not_granted", 142));
}

#[test]
fn names_resolve_as_usrsvc_reads_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = testkit::config(dir.path());
    assert_eq!(resolve(&config, "all"), Some(Target::All));
    assert!(matches!(resolve(&config, "g"), Some(Target::Group(g)) if g.name == "g"));
    assert!(matches!(
        resolve(&config, "group:g"),
        Some(Target::Group(_))
    ));
    assert!(matches!(resolve(&config, "program:a"), Some(Target::Program(p)) if p.name == "a"));
    assert!(matches!(resolve(&config, "a"), Some(Target::Program(_))));
    assert_eq!(resolve(&config, "group:a"), None);
    assert_eq!(resolve(&config, "zz"), None);
}
