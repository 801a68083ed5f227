use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::AtomicUsize;

use serde_json::{json, Value};

use super::*;
use crate::api::testkit;
use crate::config::Config;
use crate::daemon::log::Format;
use crate::daemon::state::{Event, GroupState, ProgramState, Shared, Snapshot};

struct Fake {
    shared: Shared,
    config: Mutex<Arc<Config>>,
    nudges: AtomicUsize,
}

impl Backend for Fake {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot()
    }
    fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.lock().expect("config"))
    }
    fn subscribe(&self) -> std::sync::mpsc::Receiver<Arc<Event>> {
        self.shared.subscribe()
    }
    fn emit(&self, event: Event) {
        self.shared.emit(event);
    }
    fn nudge(&self) {
        self.nudges.fetch_add(1, Ordering::SeqCst);
    }
    fn reread(&self, force: bool) -> Result<(), (i32, Vec<String>)> {
        if force {
            Ok(())
        } else {
            Err((130, vec!["usrsvc.cfg line 3: bad".into()]))
        }
    }
}

struct Setup {
    dir: tempfile::TempDir,
    fake: Arc<Fake>,
    limits: Limits,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = testkit::config(dir.path());
    config.main.audit_log = Some(dir.path().join("audit.log"));
    let shared = Shared::new();
    let program = |name: &str, groups: &[&str]| ProgramState {
        name: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        state: "running".into(),
        pid: Some(100),
        ..ProgramState::default()
    };
    let group = |name: &str, programs: &[&str]| GroupState {
        name: name.into(),
        programs: programs.iter().map(|p| p.to_string()).collect(),
        ..GroupState::default()
    };
    shared.publish(Snapshot {
        pid: 7,
        config_file: "usrsvc.cfg".into(),
        programs: vec![
            program("a", &[]),
            program("b", &[]),
            program("c", &["g"]),
            program("d", &["h"]),
        ],
        groups: vec![group("g", &["c"]), group("h", &["d"])],
        ..Snapshot::default()
    });
    // The fake worker: says what it was given, keeps its stdin, and exits 0.
    let worker = dir.path().join("worker");
    std::fs::write(
        &worker,
        format!(
            "#!/bin/sh\necho \"args: $*\"\ncat > {}/stdin.json\necho to-stderr >&2\nexit 0\n",
            dir.path().display()
        ),
    )
    .expect("worker");
    std::fs::set_permissions(&worker, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let limits = Limits {
        deadline: Duration::from_secs(1),
        worker,
        ..Limits::default()
    };
    Setup {
        fake: Arc::new(Fake {
            shared,
            config: Mutex::new(Arc::new(config)),
            nudges: AtomicUsize::new(0),
        }),
        dir,
        limits,
    }
}

impl Setup {
    fn sock(&self) -> PathBuf {
        self.dir.path().join("usrsvcd.sock")
    }

    fn start(&self, shared: Option<PathBuf>) -> io::Result<Server> {
        Server::start_with(
            self.fake.clone(),
            self.sock(),
            shared,
            Log::new(Format::Human, false),
            self.limits.clone(),
        )
    }

    /// A connection served as `caller` (over a socketpair: the rules, not SO_PEERCRED).
    fn as_caller(&self, caller: Caller) -> Client {
        let ctx = Ctx::new(
            self.fake.clone(),
            Log::new(Format::Human, false),
            self.limits.clone(),
        );
        let (ours, theirs) = UnixStream::pair().expect("pair");
        std::thread::spawn(move || serve(&ctx, &theirs, &caller));
        Client::new(ours)
    }

    fn audit(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("audit.log")).unwrap_or_default()
    }
}

struct Client {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Client {
    fn new(stream: UnixStream) -> Client {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        Client { stream, reader }
    }

    fn connect(path: &Path) -> Client {
        Client::new(UnixStream::connect(path).expect("connect"))
    }

    fn send(&mut self, line: &str) {
        self.stream.write_all(line.as_bytes()).expect("send");
        self.stream.write_all(b"\n").expect("send");
    }

    /// The next line, or `Value::Null` at the end.
    fn recv(&mut self) -> Value {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => Value::Null,
            Ok(_) => serde_json::from_str(&line).expect("a JSON line"),
        }
    }

    fn ask(&mut self, line: &str) -> Value {
        self.send(line);
        self.recv()
    }
}

fn names(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .expect("array")
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_string())
        .collect()
}

fn alice() -> Caller {
    Caller {
        uid: 1001,
        gid: 1001,
        pid: 1,
        user: "alice".into(),
        groups: vec![],
    }
}

#[test]
fn every_read_op_answers_the_owner() {
    let s = setup();
    let _server = s.start(None).expect("start");
    let mode = std::fs::symlink_metadata(s.sock())
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let mut c = Client::connect(&s.sock());
    let list = c.ask(r#"{"v":1,"op":"list"}"#);
    assert_eq!(list["ok"], true, "{list}");
    assert_eq!(names(&list, "programs"), ["a", "b", "c", "d"]);
    assert_eq!(
        list["programs"][2],
        json!({"name":"c","state":"running","pid":100,"groups":["g"]})
    );
    assert_eq!(list["groups"][0], json!({"name":"g","programs":["c"]}));
    let status = c.ask(r#"{"v":1,"op":"status"}"#);
    assert_eq!(status["daemon"]["pid"], 7);
    assert_eq!(status["programs"][0]["state"], "running");
    let g = c.ask(r#"{"v":1,"op":"status","target":"g"}"#);
    assert_eq!(names(&g, "programs"), ["c"]);
    assert_eq!(names(&g, "groups"), ["g"]);
    let plan = c.ask(r#"{"v":1,"op":"plan","target":"a"}"#);
    assert_eq!(
        plan["programs"],
        json!([{"name":"a","next_planned_restart":null,"planned_restart_held":null}])
    );
    let missing = c.ask(r#"{"v":1,"op":"status","target":"nosuch"}"#);
    assert_eq!(missing["error"]["kind"], "not_found");
    assert_eq!(missing["error"]["code"], 133);
    // History: none yet, then the last ones, newest last.
    assert_eq!(c.ask(r#"{"v":1,"op":"history"}"#)["records"], json!([]));
    let log = crate::audit::AuditLog::new(s.dir.path().join("audit.log"), None);
    for (p, a) in [("a", "start"), ("b", "stop"), ("a", "restart")] {
        let r = crate::audit::Record::new(p, a, crate::audit::Trigger::Cli, None, "ok", None, None);
        assert!(log.append(&r).is_empty());
    }
    let h = c.ask(r#"{"v":1,"op":"history","target":"a","limit":1}"#);
    assert_eq!(h["records"].as_array().map(Vec::len), Some(1), "{h}");
    assert_eq!(h["records"][0]["action"], "restart");
    assert_eq!(
        c.ask(r#"{"v":1,"op":"history"}"#)["records"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    // Garbage and a wrong version are answered, and the connection goes on.
    assert_eq!(c.ask("not json")["error"]["kind"], "bad_request");
    assert_eq!(
        c.ask(r#"{"v":1,"op":"rm"}"#)["error"]["kind"],
        "bad_request"
    );
    assert_eq!(c.ask(r#"{"v":9,"op":"list"}"#)["error"]["kind"], "version");
    assert_eq!(c.ask(r#"{"v":1,"op":"list"}"#)["ok"], true);
    // Reread: the backend's answer.
    let r = c.ask(r#"{"v":1,"op":"reread"}"#);
    assert_eq!(
        (r["error"]["kind"].as_str(), r["error"]["code"].as_i64()),
        (Some("reread"), Some(130))
    );
    assert_eq!(
        c.ask(r#"{"v":1,"op":"reread","force":true}"#),
        json!({"v":1,"ok":true})
    );
    // Events: the header, then what happens.
    let mut e = Client::connect(&s.sock());
    assert_eq!(
        e.ask(r#"{"v":1,"op":"events"}"#),
        json!({"v":1,"ok":true,"stream":"events"})
    );
    let ev = Event::Reread {
        at: "now".into(),
        ok: true,
        errors: vec![],
    };
    s.fake.shared.emit(ev.clone());
    assert_eq!(e.recv(), json!({"v":1,"event":ev}));
}

#[test]
fn a_delegated_caller_sees_and_does_only_what_it_is_granted() {
    let s = setup();
    let mut c = s.as_caller(alice());
    let list = c.ask(r#"{"v":1,"op":"list"}"#);
    assert_eq!(names(&list, "programs"), ["a", "c"], "{list}");
    assert_eq!(names(&list, "groups"), ["g"]);
    let b = c.ask(r#"{"v":1,"op":"status","target":"b"}"#);
    assert_eq!(b["error"]["rule"], "not_granted", "{b}");
    assert_eq!(b["error"]["code"], 142);
    let r = c.ask(r#"{"v":1,"op":"restart","target":"a"}"#);
    assert_eq!(r["error"]["rule"], "reason_required", "{r}");
    assert_eq!(r["error"]["code"], 142);
    let audit = s.audit();
    assert!(
        audit.contains(r#""caller":"alice","caller_uid":1001"#)
            && audit.contains("refused: reason_required"),
        "{audit}"
    );
    let r = c.ask(r#"{"v":1,"op":"stop","target":"a","reason":"x"}"#);
    assert_eq!(r["error"]["rule"], "no_grant:stop");
    assert_eq!(
        c.ask(r#"{"v":1,"op":"reread"}"#)["error"]["rule"],
        "owner_only"
    );
    assert_eq!(
        c.ask(r#"{"v":1,"op":"restart","target":"all","reason":"x"}"#)["error"]["rule"],
        "owner_only"
    );
    assert_eq!(
        s.audit().lines().count(),
        4,
        "every refusal is in the trail"
    );
    // Events: only those of programs it sees.
    let mut e = s.as_caller(alice());
    assert_eq!(e.ask(r#"{"v":1,"op":"events"}"#)["stream"], "events");
    let phase = |p: &str| Event::Phase {
        at: String::new(),
        program: p.into(),
        from: "running".into(),
        to: "waiting".into(),
        pid: None,
        detail: String::new(),
    };
    s.fake.shared.emit(phase("b"));
    s.fake.shared.emit(phase("a"));
    assert_eq!(e.recv()["event"]["program"], "a");
    // A stranger gets nothing.
    let mut x = s.as_caller(Caller {
        user: "mallory".into(),
        uid: 1002,
        ..alice()
    });
    assert_eq!(
        x.ask(r#"{"v":1,"op":"list"}"#)["error"]["rule"],
        "not_allowed_user"
    );
}

#[test]
fn a_change_op_runs_the_worker_with_the_programs_config_and_reports_when_done() {
    let s = setup();
    let events = s.fake.shared.subscribe();
    let mut c = s.as_caller(alice());
    let first = c.ask(r#"{"v":1,"op":"restart","target":"a","reason":"ticket 9","wait":true}"#);
    assert_eq!(first["accepted"], true, "{first}");
    let id = first["id"].as_u64().expect("id");
    let done = c.recv();
    assert_eq!(done["done"], true, "{done}");
    assert_eq!(done["id"], id);
    assert_eq!(
        (done["code"].as_i64(), done["result"].as_str()),
        (Some(0), Some("ok"))
    );
    let output: Vec<&str> = done["output"]
        .as_array()
        .expect("output")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        output,
        [
            "args: --worker restart --log-format human --trigger=delegated --reason=ticket 9 --caller=alice:1001 -- a",
            "to-stderr"
        ]
    );
    let stdin: Config = serde_json::from_str(
        &std::fs::read_to_string(s.dir.path().join("stdin.json")).expect("stdin"),
    )
    .expect("config");
    assert_eq!(
        stdin
            .programs
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["a"]
    );
    assert!(stdin.groups.is_empty());
    assert_eq!(s.fake.nudges.load(Ordering::SeqCst), 1);
    let ev = events
        .recv_timeout(Duration::from_secs(10))
        .expect("op_done");
    assert!(
        matches!(&*ev, Event::OpDone { id: i, target, code: 0, .. } if *i == id && target == "a"),
        "{ev:?}"
    );
    // Its result, again, for the same caller; nobody else's.
    assert_eq!(
        c.ask(&format!(r#"{{"v":1,"op":"wait","id":{id}}}"#))["done"],
        true
    );
    let mut other = s.as_caller(Caller {
        uid: 1003,
        user: "bob".into(),
        groups: vec!["ops".into()],
        ..alice()
    });
    assert_eq!(
        other.ask(&format!(r#"{{"v":1,"op":"wait","id":{id}}}"#))["error"]["kind"],
        "not_found"
    );
    // A group goes to one group worker with the group and its members.
    let mut o = s.as_caller(Caller {
        uid: s.limits.owner_uid,
        user: "me".into(),
        ..alice()
    });
    let first = o.ask(r#"{"v":1,"op":"stop","target":"g","wait":true}"#);
    assert_eq!(first["accepted"], true, "{first}");
    let done = o.recv();
    assert!(
        done["output"][0]
            .as_str()
            .expect("line")
            .starts_with("args: --worker stop-group --log-format human --trigger=cli -- g"),
        "{done}"
    );
    let stdin: Config = serde_json::from_str(
        &std::fs::read_to_string(s.dir.path().join("stdin.json")).expect("stdin"),
    )
    .expect("config");
    assert_eq!(
        stdin
            .groups
            .iter()
            .map(|g| g.name.as_str())
            .collect::<Vec<_>>(),
        ["g"]
    );
    assert_eq!(
        stdin
            .programs
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["c"]
    );
}

#[test]
fn the_kill_switch_refuses_changes_unless_forced() {
    let s = setup();
    let switch = s.dir.path().join("kill");
    std::fs::write(&switch, "").expect("switch");
    {
        let mut cfg = s.fake.config.lock().expect("config");
        let mut new = (**cfg).clone();
        new.main.kill_switch_file = Some(switch);
        *cfg = Arc::new(new);
    }
    let mut o = s.as_caller(Caller {
        uid: s.limits.owner_uid,
        user: "me".into(),
        ..alice()
    });
    let r = o.ask(r#"{"v":1,"op":"restart","target":"b"}"#);
    assert_eq!(
        (r["error"]["kind"].as_str(), r["error"]["code"].as_i64()),
        (Some("kill_switch"), Some(139)),
        "{r}"
    );
    assert_eq!(
        o.ask(r#"{"v":1,"op":"signal","target":"b","signal":"HUP"}"#)["error"]["kind"],
        "kill_switch"
    );
    let r = o.ask(r#"{"v":1,"op":"restart","target":"b","force":true}"#);
    assert_eq!(r["accepted"], true, "{r}");
    let bad = o.ask(r#"{"v":1,"op":"signal","target":"b","signal":"NOPE","force":true}"#);
    assert_eq!(bad["error"]["kind"], "bad_request");
}

#[test]
fn a_client_that_sends_nothing_is_closed_at_the_deadline() {
    let s = setup();
    let _server = s.start(None).expect("start");
    let mut c = Client::connect(&s.sock());
    let t = Instant::now();
    assert_eq!(c.recv()["error"]["kind"], "timeout");
    assert_eq!(c.recv(), Value::Null, "closed");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(20),
        "{took:?}"
    );
    // Dribbling does not extend the deadline: one deadline for the whole line.
    let mut d = Client::connect(&s.sock());
    let t = Instant::now();
    let mut closed = false;
    while t.elapsed() < Duration::from_secs(6) {
        if d.stream.write_all(b" ").is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(closed, "a dribbling client was closed");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(d.recv()["error"]["kind"], "timeout");
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

#[test]
fn a_huge_line_is_too_large_and_never_held() {
    let s = setup();
    let _server = s.start(None).expect("start");
    let before = rss_kib();
    let mut c = Client::connect(&s.sock());
    let mut writer = c.stream.try_clone().expect("clone");
    let sender = std::thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 20];
        let mut sent = 0usize;
        while sent < 100 << 20 {
            if writer.write_all(&chunk).is_err() {
                break;
            }
            sent += chunk.len();
        }
        sent
    });
    let answer = c.recv();
    assert_eq!(answer["error"]["kind"], "too_large", "{answer}");
    assert_eq!(c.recv(), Value::Null, "closed");
    let sent = sender.join().expect("sender");
    assert!(sent < 100 << 20, "the server stopped reading (sent {sent})");
    let grown = rss_kib().saturating_sub(before);
    // Other tests share this process; 100 MB held would show far above this.
    assert!(grown < 40 * 1024, "RSS grew by {grown} KiB");
    // A line at the limit is fine.
    let mut ok = Client::connect(&s.sock());
    let pad = " ".repeat(64 * 1024 - r#"{"v":1,"op":"list"}"#.len());
    assert_eq!(
        ok.ask(&format!(r#"{{"v":1,"op":"list"}}{pad}"#))["ok"],
        true
    );
}

#[test]
fn the_65th_connection_is_told_busy() {
    let mut s = setup();
    s.limits.deadline = Duration::from_secs(60);
    let _server = s.start(None).expect("start");
    let mut held: Vec<Client> = Vec::new();
    for _ in 0..64 {
        let mut c = Client::connect(&s.sock());
        // Answered: its thread runs (and counts) before the next is accepted.
        assert_eq!(c.ask(r#"{"v":1,"op":"list"}"#)["ok"], true);
        held.push(c);
    }
    let mut extra = Client::connect(&s.sock());
    let busy = extra.recv();
    assert_eq!(busy["error"]["kind"], "busy", "{busy}");
    assert_eq!(extra.recv(), Value::Null);
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut c = Client::connect(&s.sock());
        if c.ask(r#"{"v":1,"op":"list"}"#)["ok"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "a slot came free");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_stale_socket_is_replaced_a_live_one_and_other_files_are_left_alone() {
    let s = setup();
    // A dead daemon's socket: bound, then its listener gone.
    drop(UnixListener::bind(s.sock()).expect("bind"));
    let server = s.start(None).expect("stale socket replaced");
    assert_eq!(
        Client::connect(&s.sock()).ask(r#"{"v":1,"op":"list"}"#)["ok"],
        true
    );
    // A live one: the second server refuses, and the first goes on.
    let e = s.start(None).err().expect("a live daemon is there");
    assert!(e.to_string().contains("another daemon answers"), "{e}");
    assert_eq!(
        Client::connect(&s.sock()).ask(r#"{"v":1,"op":"list"}"#)["ok"],
        true
    );
    drop(server);
    assert!(!s.sock().exists(), "removed at shutdown");
    // A symlink: neither followed nor removed.
    let target = s.dir.path().join("precious");
    std::fs::write(&target, "data").expect("target");
    std::os::unix::fs::symlink(&target, s.sock()).expect("symlink");
    let e = s.start(None).err().expect("refused");
    assert!(e.to_string().contains("symbolic link"), "{e}");
    assert!(std::fs::symlink_metadata(s.sock())
        .expect("still there")
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_to_string(&target).expect("target"), "data");
    std::fs::remove_file(s.sock()).expect("rm");
    std::fs::write(s.sock(), "file").expect("file");
    assert!(s.start(None).is_err());
    assert_eq!(std::fs::read_to_string(s.sock()).expect("file"), "file");
}

#[test]
fn a_socket_replaced_meanwhile_is_not_removed_at_shutdown() {
    let s = setup();
    let server = s.start(None).expect("start");
    std::fs::remove_file(s.sock()).expect("rm");
    let _other = UnixListener::bind(s.sock()).expect("another socket");
    drop(server);
    assert!(s.sock().exists(), "not ours any more");
}

#[test]
fn the_shared_socket_needs_a_folder_only_we_can_write() {
    let s = setup();
    let folder = s.dir.path().join("share");
    std::fs::create_dir(&folder).expect("mkdir");
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o775)).expect("chmod");
    let shared = folder.join("usrsvcd.sock");
    let server = s.start(Some(shared.clone())).expect("start");
    assert!(!shared.exists(), "not listened on");
    assert_eq!(server.paths(), [s.sock()]);
    drop(server);
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let server = s.start(Some(shared.clone())).expect("start");
    let mode = std::fs::symlink_metadata(&shared)
        .expect("shared")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o666);
    assert_eq!(
        Client::connect(&shared).ask(r#"{"v":1,"op":"list"}"#)["ok"],
        true
    );
    drop(server);
    assert!(!shared.exists() && !s.sock().exists());
}

/// Another user, through the shared socket: who it is comes from the kernel.
#[test]
fn another_user_is_known_by_its_peer_credentials() {
    if crate::proc::my_uid() != 0
        || !Path::new("/usr/bin/setpriv").exists()
        || !Path::new("/usr/bin/python3").exists()
    {
        eprintln!("skipped: needs root, setpriv and python3");
        return;
    }
    let s = setup();
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o711)).expect("chmod");
    let folder = s.dir.path().join("share");
    std::fs::create_dir(&folder).expect("mkdir");
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let shared = folder.join("usrsvcd.sock");
    let _server = s.start(Some(shared.clone())).expect("start");
    let as_nobody = || {
        let out = std::process::Command::new("/usr/bin/setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c"])
            .arg("import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\ns.sendall(b'{\"v\":1,\"op\":\"list\"}\\n')\nprint(s.makefile().readline())")
            .arg(&shared)
            .output()
            .expect("setpriv");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).expect("answer")
    };
    assert_eq!(as_nobody()["error"]["rule"], "not_allowed_user");
    let nobody = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(65534))
        .ok()
        .flatten()
        .map_or("65534".into(), |u| u.name);
    {
        let mut cfg = s.fake.config.lock().expect("config");
        let mut new = (**cfg).clone();
        new.main.allow_users = vec![nobody];
        *cfg = Arc::new(new);
    }
    let list = as_nobody();
    assert_eq!(names(&list, "programs"), ["a", "c"], "{list}");
}

#[test]
fn a_full_shared_socket_leaves_the_private_one_free() {
    let mut s = setup();
    s.limits.deadline = Duration::from_secs(60);
    s.limits.max_connections = 2;
    let folder = s.dir.path().join("share");
    std::fs::create_dir(&folder).expect("mkdir");
    let shared = folder.join("usrsvcd.sock");
    let _server = s.start(Some(shared.clone())).expect("start");
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = Client::connect(&shared);
        assert_eq!(c.ask(r#"{"v":1,"op":"list"}"#)["ok"], true);
        held.push(c);
    }
    assert_eq!(Client::connect(&shared).recv()["error"]["kind"], "busy");
    assert_eq!(
        Client::connect(&s.sock()).ask(r#"{"v":1,"op":"list"}"#)["ok"],
        true
    );
}
