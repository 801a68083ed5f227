//! The client against a tiny fake server: a thread on a socket in a temp dir that answers
//! what each test scripts.

use super::*;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;

/// A server that accepts one connection, reads one request line, hands it to the test
/// through the channel, and writes `answer` (raw bytes).
fn serve_once(answer: Vec<u8>) -> (tempfile::TempDir, PathBuf, std::sync::mpsc::Receiver<Value>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("usrsvcd.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        if reader.read_line(&mut line).is_ok() {
            let _ = tx.send(serde_json::from_str(&line).unwrap_or(Value::Null));
        }
        let _ = reader.get_mut().write_all(&answer);
    });
    (dir, path, rx)
}

fn lines(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        out.extend_from_slice(v.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

#[test]
fn a_call_sends_one_line_and_reads_the_answer() {
    let (_dir, path, rx) = serve_once(lines(&[json!({"v":1,"ok":true,"programs":[]})]));
    let mut c = Client::connect(&path, None).expect("connect");
    let answer = c.call(&json!({"v":1,"op":"list"})).expect("answer");
    assert_eq!(answer["programs"], json!([]));
    assert_eq!(rx.recv().expect("request"), json!({"v":1,"op":"list"}));
    assert_eq!(ApiError::of(&answer), None);
}

#[test]
fn a_change_waits_for_its_result_with_the_output() {
    let (_dir, path, rx) = serve_once(lines(&[
        json!({"v":1,"ok":true,"id":7,"accepted":true}),
        json!({"v":1,"id":6,"done":true,"code":1,"result":"other op"}),
        json!({"v":1,"id":7,"done":true,"code":0,"result":"ok","output":["a","b"]}),
    ]));
    let mut c = Client::connect(&path, None).expect("connect");
    let done = c
        .change(&json!({"v":1,"op":"restart","target":"web","reason":"x"}))
        .expect("talked")
        .expect("not refused");
    assert_eq!(
        done,
        Done {
            id: 7,
            code: 0,
            result: "ok".into(),
            output: vec!["a".into(), "b".into()]
        }
    );
    let sent = rx.recv().expect("request");
    assert_eq!(sent["wait"], json!(true), "{sent}");
    assert_eq!(sent["reason"], json!("x"));
}

#[test]
fn a_refusal_is_142_with_its_rule() {
    let (_dir, path, _rx) = serve_once(lines(&[json!({"v":1,"ok":false,"error":{
        "kind":"refused","message":"alice may not restart web","rule":"no_grant:restart","code":142}})]));
    let mut c = Client::connect(&path, None).expect("connect");
    let e = c
        .change(&json!({"v":1,"op":"restart","target":"web"}))
        .expect("talked")
        .expect_err("refused");
    assert_eq!(e.return_code(), ReturnCode::NotPermitted);
    assert_eq!(e.return_code().code(), 142);
    assert!(
        e.describe().contains("rule no_grant:restart"),
        "{}",
        e.describe()
    );
    assert!(e.describe().contains("alice may not restart web"));
    // Without a code the kind decides.
    let e =
        ApiError::of(&json!({"ok":false,"error":{"kind":"refused","message":"m"}})).expect("error");
    assert_eq!(e.return_code(), ReturnCode::NotPermitted);
}

#[test]
fn a_missing_socket_is_143_and_names_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("none.sock");
    let e = Client::connect(&path, None).expect_err("no socket");
    assert_eq!(e.code(), ReturnCode::DaemonUnreachable);
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    // A socket nobody listens on any more (a daemon that died): refused, also 143.
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).expect("bind"));
    let e = Client::connect(&stale, None).expect_err("stale");
    assert_eq!(e.code(), ReturnCode::DaemonUnreachable);
}

#[test]
fn a_socket_of_another_uid_is_not_trusted() {
    let (_dir, path, _rx) = serve_once(Vec::new());
    let mut owner = crate::proc::my_uid();
    if owner == 0 {
        // As root: give the socket to nobody, as another account's would be.
        std::os::unix::fs::chown(&path, Some(65534), None).expect("chown");
        owner = 65534;
    }
    let e = Client::connect(&path, Some(owner + 1)).expect_err("not its owner");
    assert!(e.to_string().contains("belongs to uid"), "{e}");
    assert_eq!(e.code(), ReturnCode::DaemonUnreachable);
    assert!(Client::connect(&path, Some(owner)).is_ok());
}

#[test]
fn events_come_one_by_one_until_the_daemon_closes() {
    let (_dir, path, rx) = serve_once(lines(&[
        json!({"v":1,"ok":true,"stream":"events"}),
        json!({"v":1,"event":{"kind":"phase","program":"a"}}),
        json!({"v":1,"event":{"kind":"health","program":"a"}}),
    ]));
    let c = Client::connect(&path, None).expect("connect");
    let events = c.events(Some("a")).expect("talked").expect("stream");
    let got: Vec<Value> = events.map(|e| e.expect("event")).collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1]["event"]["kind"], json!("health"));
    assert_eq!(
        rx.recv().expect("request"),
        json!({"v":1,"op":"events","target":"a"})
    );
}

#[test]
fn an_oversized_line_is_an_error_not_a_hoard() {
    let mut big = b"{\"v\":1,\"ok\":true,\"x\":\"".to_vec();
    big.resize(MAX_LINE + 100, b'x');
    big.extend_from_slice(b"\"}\n");
    let (_dir, path, _rx) = serve_once(big);
    let mut c = Client::connect(&path, None).expect("connect");
    let e = c
        .call(&json!({"v":1,"op":"status"}))
        .expect_err("too large");
    assert!(matches!(e, ClientError::TooLarge { .. }), "{e}");
}

#[test]
fn garbage_and_a_cut_line_are_errors() {
    let (_dir, path, _rx) = serve_once(b"not json\n".to_vec());
    let mut c = Client::connect(&path, None).expect("connect");
    let e = c.call(&json!({"v":1,"op":"list"})).expect_err("garbage");
    assert!(matches!(e, ClientError::BadAnswer { .. }), "{e}");
    let (_dir, path, _rx) = serve_once(b"{\"v\":1,".to_vec());
    let mut c = Client::connect(&path, None).expect("connect");
    let e = c.call(&json!({"v":1,"op":"list"})).expect_err("cut");
    assert_eq!(e.code(), ReturnCode::DaemonUnreachable, "{e}");
}

#[test]
fn a_silent_daemon_times_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.sock");
    let _listener = UnixListener::bind(&path).expect("bind");
    // Connected (the backlog holds it) but never answered.
    let mut c = Client::connect(&path, None).expect("connect");
    c.send(&json!({"v":1,"op":"list"})).expect("send");
    let e = c
        .read(Some(Duration::from_millis(200)))
        .expect_err("times out");
    assert!(e.to_string().contains("no answer within"), "{e}");
    assert_eq!(e.code(), ReturnCode::DaemonUnreachable);
}

#[test]
fn the_line_reader_bounds_and_splits() {
    let mut r = std::io::Cursor::new(b"ab\ncd\n\nef".to_vec());
    assert_eq!(read_line(&mut r, 10).ok().flatten(), Some(b"ab".to_vec()));
    assert_eq!(read_line(&mut r, 10).ok().flatten(), Some(b"cd".to_vec()));
    assert_eq!(read_line(&mut r, 10).ok().flatten(), Some(Vec::new()));
    assert!(matches!(read_line(&mut r, 10), Err(Line::Partial)));
    let mut r = std::io::Cursor::new(b"abcdef\n".to_vec());
    assert!(matches!(read_line(&mut r, 5), Err(Line::TooLarge)));
    let mut r = std::io::Cursor::new(Vec::new());
    assert!(matches!(read_line(&mut r, 5), Ok(None)));
}

#[test]
fn an_unknown_account_says_so() {
    let e = account_socket("no-such-user-usrsvc-test-7", None).expect_err("unknown");
    assert!(e.contains("passwd"), "{e}");
    // root exists everywhere; a given --socket is taken as it is.
    let (p, uid) = account_socket("root", Some(Path::new("/x/s.sock"))).expect("root");
    assert_eq!((p, uid), (PathBuf::from("/x/s.sock"), 0));
}
