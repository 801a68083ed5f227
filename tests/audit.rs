//! The audit trail through the library API, against real processes and sockets: 20 writer
//! processes appending at the same moment (whole lines, none lost), syslog over UDP, TCP and a
//! Unix datagram socket on this host checked by a strict RFC 5424 parser, and dead log servers
//! (a problem string, the file still written, no long wait).
//!
//! The concurrent writers are this test binary run again: `helper_append_one_record` is an
//! ignored test that does nothing unless the parent set `AUDIT_HELPER_LOG`; it waits for its
//! stdin to close so that all 20 append together.

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use usrsvc::audit::{
    format_history, read_history, AuditLog, Record, SyslogTarget, Trigger, SYSLOG_TIMEOUT,
};

const HELPER_LOG: &str = "AUDIT_HELPER_LOG";
const HELPER_INDEX: &str = "AUDIT_HELPER_INDEX";
const HELPER_REASON_LEN: &str = "AUDIT_HELPER_REASON_LEN";
/// Socket reads wait at most this long: generous, only reached when something is broken.
const READ_DEADLINE: Duration = Duration::from_secs(10);

/// A reason of `len` bytes that is different for every writer, so a line made of two writers'
/// halves cannot pass for either.
fn reason_for(index: usize, len: usize) -> String {
    let head = format!("writer {index}:");
    let fill = char::from(b'a' + (index % 26) as u8);
    let mut s = head;
    while s.len() < len {
        s.push(fill);
    }
    s
}

#[test]
#[ignore = "helper: run in child processes by the concurrent-writer tests"]
fn helper_append_one_record() {
    let Some(log) = std::env::var_os(HELPER_LOG) else {
        return;
    };
    let index: usize = std::env::var(HELPER_INDEX)
        .expect("index")
        .parse()
        .expect("number");
    let len: usize = std::env::var(HELPER_REASON_LEN)
        .expect("len")
        .parse()
        .expect("number");
    let record = Record::new(
        format!("p{index}"),
        "start",
        Trigger::Autostart,
        Some(reason_for(index, len)),
        "ok",
        None,
        Some(i32::try_from(index).expect("small")),
    );
    // The go signal: the parent closes every writer's stdin at once.
    std::io::stdin()
        .read_to_end(&mut Vec::new())
        .expect("stdin");
    let problems = AuditLog::new(PathBuf::from(log), None).append(&record);
    assert!(problems.is_empty(), "{problems:?}");
}

/// Runs one writer process per entry of `reason_lens`, all appending to `log` together.
fn run_writers(log: &Path, reason_lens: &[usize]) {
    let exe = std::env::current_exe().expect("test binary");
    let mut children = Vec::new();
    for (i, len) in reason_lens.iter().enumerate() {
        let child = Command::new(&exe)
            .args([
                "helper_append_one_record",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HELPER_LOG, log)
            .env(HELPER_INDEX, i.to_string())
            .env(HELPER_REASON_LEN, len.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn writer");
        children.push(child);
    }
    let stdins: Vec<_> = children
        .iter_mut()
        .map(|c| c.stdin.take().expect("stdin"))
        .collect();
    drop(stdins);
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().expect("wait writer");
        assert!(
            out.status.success(),
            "writer {i} failed: {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

const FIELDS: [&str; 11] = [
    "time", "host", "user", "uid", "program", "action", "trigger", "reason", "result", "old_pid",
    "new_pid",
];

/// Every line is one whole record of one writer, and every writer has exactly one line.
fn assert_one_whole_line_each(log: &Path, reason_lens: &[usize]) {
    let text = std::fs::read_to_string(log).expect("read log");
    assert!(text.ends_with('\n'), "last line unfinished");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), reason_lens.len(), "line count");
    let mut seen = vec![false; reason_lens.len()];
    for line in lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {:.200}", line));
        let object = value.as_object().expect("an object");
        assert!(
            line.len() < usrsvc::audit::MAX_RECORD,
            "{} bytes",
            line.len()
        );
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        let record: Record = serde_json::from_value(value.clone()).expect("a record");
        let mut sorted_fields = FIELDS.to_vec();
        if record.truncated {
            sorted_fields.push("truncated");
        }
        sorted_fields.sort_unstable();
        assert_eq!(keys, sorted_fields, "fields");
        let index = usize::try_from(record.new_pid.expect("new_pid")).expect("index");
        assert!(!seen[index], "writer {index} twice");
        seen[index] = true;
        assert_eq!(record.program, format!("p{index}"));
        let full = reason_for(index, reason_lens[index]);
        let reason = record.reason.clone().expect("reason");
        if record.truncated {
            // Over the bound: the reason is cut, marked, and what is kept is its start.
            let kept = reason
                .strip_suffix(usrsvc::audit::TRUNCATED_MARK)
                .expect("marked");
            assert!(
                full.starts_with(kept) && kept.len() > 3000,
                "{:.100}",
                reason
            );
        } else {
            assert_eq!(reason, full);
        }
        assert_eq!(record.trigger, Trigger::Autostart);
        assert_eq!(object["old_pid"], serde_json::Value::Null);
    }
    assert!(seen.iter().all(|&s| s));
}

#[test]
fn twenty_processes_append_twenty_whole_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("state/audit.log");
    let lens = [40; 20];
    run_writers(&log, &lens);
    assert_one_whole_line_each(&log, &lens);
}

#[test]
fn large_reasons_stay_whole_under_concurrency() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.log");
    // 3000 bytes (over 2 KiB, a common syslog line limit; kept whole) and 100 000 (over a
    // pipe's and most kernels' page-sized buffers; cut to the 4 KiB record bound) alternately.
    let lens: Vec<usize> = (0..20)
        .map(|i| if i % 2 == 0 { 3000 } else { 100_000 })
        .collect();
    run_writers(&log, &lens);
    assert_one_whole_line_each(&log, &lens);
}

/// A strictly parsed RFC 5424 message.
#[derive(Debug)]
struct Syslog {
    pri: u32,
    timestamp: String,
    hostname: String,
    app_name: String,
    procid: String,
    msgid: String,
    /// (SD-ID, [(PARAM-NAME, unescaped value)])
    sd: Vec<(String, Vec<(String, String)>)>,
    /// The MSG after its BOM, as the record it must be.
    record: Record,
}

/// RFC 5424 §6, as strictly as this project's messages need: every header field present,
/// 1..max printable US-ASCII characters or `-`; SD elements with escaped values; MSG a BOM and
/// UTF-8 that is a JSON record.
fn parse_rfc5424(bytes: &[u8]) -> Result<Syslog, String> {
    let rest = bytes
        .strip_prefix(b"<")
        .ok_or("no '<' at the start of PRI")?;
    let close = rest
        .iter()
        .position(|&b| b == b'>')
        .ok_or("PRI not closed")?;
    let pri_text = std::str::from_utf8(&rest[..close]).map_err(|e| e.to_string())?;
    if pri_text.is_empty()
        || pri_text.len() > 3
        || !pri_text.bytes().all(|b| b.is_ascii_digit())
        || (pri_text.len() > 1 && pri_text.starts_with('0'))
    {
        return Err(format!("bad PRI {pri_text:?}"));
    }
    let pri: u32 = pri_text.parse().map_err(|_| "PRI")?;
    if pri > 191 {
        return Err(format!("PRI {pri} out of range"));
    }
    let mut rest = rest[close + 1..]
        .strip_prefix(b"1 ")
        .ok_or("VERSION is not 1 followed by SP")?;

    let mut field = |name: &str, max: usize| -> Result<String, String> {
        let end = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or(format!("no SP after {name}"))?;
        let value = &rest[..end];
        if value.is_empty() || value.len() > max || !value.iter().all(|b| (33..=126).contains(b)) {
            return Err(format!("bad {name} {:?}", String::from_utf8_lossy(value)));
        }
        rest = &rest[end + 1..];
        Ok(String::from_utf8(value.to_vec()).expect("ASCII"))
    };
    let timestamp = field("TIMESTAMP", 64)?;
    let hostname = field("HOSTNAME", 255)?;
    let app_name = field("APP-NAME", 48)?;
    let procid = field("PROCID", 128)?;
    let msgid = field("MSGID", 32)?;
    if timestamp != "-" {
        chrono::DateTime::parse_from_rfc3339(&timestamp)
            .map_err(|e| format!("TIMESTAMP {timestamp:?}: {e}"))?;
        // RFC 5424 §6.2.3: upper-case T and Z, at most six fraction digits.
        if timestamp.contains(['t', 'z', ' ']) {
            return Err(format!("TIMESTAMP {timestamp:?} not in RFC 5424's form"));
        }
        if let Some(frac) = timestamp.split('.').nth(1) {
            let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
            if !(1..=6).contains(&digits) {
                return Err(format!("TIMESTAMP {timestamp:?}: {digits} fraction digits"));
            }
        }
    }

    let mut sd = Vec::new();
    if let Some(after) = rest.strip_prefix(b"-") {
        rest = after;
    } else {
        while rest.first() == Some(&b'[') {
            rest = &rest[1..];
            let name_end = rest
                .iter()
                .position(|&b| b == b' ' || b == b']')
                .ok_or("SD-ID not ended")?;
            let id = sd_name(&rest[..name_end])?;
            rest = &rest[name_end..];
            let mut params = Vec::new();
            while let Some(after) = rest.strip_prefix(b" ") {
                let eq = after.iter().position(|&b| b == b'=').ok_or("no '='")?;
                let pname = sd_name(&after[..eq])?;
                let mut value_bytes = after[eq + 1..]
                    .strip_prefix(b"\"")
                    .ok_or("PARAM-VALUE not quoted")?;
                let mut value = Vec::new();
                loop {
                    match value_bytes {
                        [b'\\', c @ (b'"' | b'\\' | b']'), tail @ ..] => {
                            value.push(*c);
                            value_bytes = tail;
                        }
                        [b'"', tail @ ..] => {
                            value_bytes = tail;
                            break;
                        }
                        [b']', ..] => return Err("unescaped ']' in PARAM-VALUE".into()),
                        [c, tail @ ..] => {
                            value.push(*c);
                            value_bytes = tail;
                        }
                        [] => return Err("PARAM-VALUE not closed".into()),
                    }
                }
                let value = String::from_utf8(value).map_err(|e| e.to_string())?;
                params.push((pname, value));
                rest = value_bytes;
            }
            rest = rest.strip_prefix(b"]").ok_or("SD-ELEMENT not closed")?;
            sd.push((id, params));
        }
        if sd.is_empty() {
            return Err("STRUCTURED-DATA is neither '-' nor an element".into());
        }
    }

    let msg = rest.strip_prefix(b" ").ok_or("no SP before MSG")?;
    let json = msg
        .strip_prefix(b"\xEF\xBB\xBF")
        .ok_or("MSG does not start with a BOM")?;
    let json = std::str::from_utf8(json).map_err(|e| format!("MSG not UTF-8: {e}"))?;
    let record = serde_json::from_str(json).map_err(|e| format!("MSG not a record: {e}"))?;
    Ok(Syslog {
        pri,
        timestamp,
        hostname,
        app_name,
        procid,
        msgid,
        sd,
        record,
    })
}

fn sd_name(b: &[u8]) -> Result<String, String> {
    if b.is_empty()
        || b.len() > 32
        || !b
            .iter()
            .all(|c| (33..=126).contains(c) && !matches!(c, b'=' | b']' | b'"'))
    {
        return Err(format!("bad SD-NAME {:?}", String::from_utf8_lossy(b)));
    }
    Ok(String::from_utf8(b.to_vec()).expect("ASCII"))
}

/// A record whose free text needs escaping everywhere it goes.
fn tricky_record() -> Record {
    Record::new(
        "web \"front\"",
        "restart",
        Trigger::Monitor("rss]limit\\".into()),
        Some("rss 600 MB > 500 MB\nsecond line, café".into()),
        "ok",
        Some(1234),
        Some(5678),
    )
}

/// Checks a received message against what `append` was given and what the file holds.
fn assert_message_is_the_record(bytes: &[u8], record: &Record, log: &Path) {
    let m = parse_rfc5424(bytes)
        .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(bytes)));
    assert_eq!(m.pri, 3 * 8 + 5, "daemon.notice");
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(&m.timestamp).expect("time"),
        chrono::DateTime::parse_from_rfc3339(&record.time).expect("time")
    );
    assert_eq!(m.hostname, record.host);
    assert_eq!(m.app_name, "usrsvc");
    assert_eq!(m.procid, std::process::id().to_string());
    assert_eq!(m.msgid, "audit");
    let expected_sd = vec![(
        "usrsvc@32473".to_owned(),
        vec![
            ("program".to_owned(), record.program.clone()),
            ("action".to_owned(), record.action.clone()),
            ("trigger".to_owned(), record.trigger.to_string()),
            ("result".to_owned(), record.result.clone()),
        ],
    )];
    assert_eq!(m.sd, expected_sd);
    assert_eq!(&m.record, record);
    let (in_file, skipped) = read_history(log, None, 10).expect("read log");
    assert_eq!((in_file, skipped), (vec![record.clone()], 0));
}

#[test]
fn udp_target_gets_one_rfc5424_datagram() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
    server
        .set_read_timeout(Some(READ_DEADLINE))
        .expect("timeout");
    let target: SyslogTarget = format!("udp://{}", server.local_addr().expect("addr"))
        .parse()
        .expect("target");
    let log = dir.path().join("audit.log");
    let record = tricky_record();
    assert_eq!(
        AuditLog::new(log.clone(), Some(target)).append(&record),
        Vec::<String>::new()
    );
    let mut buf = vec![0; 65536];
    let n = server
        .recv(&mut buf)
        .expect("a datagram within the deadline");
    assert_message_is_the_record(&buf[..n], &record, &log);
}

#[test]
fn tcp_target_gets_one_octet_counted_frame_per_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let target: SyslogTarget = format!("tcp://{}", server.local_addr().expect("addr"))
        .parse()
        .expect("target");
    let log = dir.path().join("audit.log");
    let record = tricky_record();
    // The kernel completes the handshake and buffers the frame before we accept.
    assert_eq!(
        AuditLog::new(log.clone(), Some(target)).append(&record),
        Vec::<String>::new()
    );
    let (mut conn, _) = server.accept().expect("accept");
    conn.set_read_timeout(Some(READ_DEADLINE)).expect("timeout");
    let mut frame = Vec::new();
    conn.read_to_end(&mut frame)
        .expect("the sender closes after one frame");
    let sp = frame.iter().position(|&b| b == b' ').expect("MSG-LEN SP");
    let len_text = std::str::from_utf8(&frame[..sp]).expect("ASCII");
    assert!(
        !len_text.is_empty()
            && !len_text.starts_with('0')
            && len_text.bytes().all(|b| b.is_ascii_digit()),
        "MSG-LEN {len_text:?}"
    );
    let len: usize = len_text.parse().expect("MSG-LEN");
    let msg = &frame[sp + 1..];
    assert_eq!(msg.len(), len, "exactly one frame of MSG-LEN octets");
    assert_message_is_the_record(msg, &record, &log);
}

#[test]
fn unix_datagram_target_gets_the_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("log.sock");
    let server = UnixDatagram::bind(&socket).expect("bind");
    server
        .set_read_timeout(Some(READ_DEADLINE))
        .expect("timeout");
    let target: SyslogTarget = format!("unix:{}", socket.display())
        .parse()
        .expect("target");
    let log = dir.path().join("audit.log");
    let record = tricky_record();
    assert_eq!(
        AuditLog::new(log.clone(), Some(target)).append(&record),
        Vec::<String>::new()
    );
    let mut buf = vec![0; 65536];
    let n = server
        .recv(&mut buf)
        .expect("a datagram within the deadline");
    assert_message_is_the_record(&buf[..n], &record, &log);
}

#[path = "common/net.rs"]
mod net;

#[test]
fn refused_tcp_is_a_problem_and_the_file_still_has_the_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Bound, never listening: refused for as long as the test holds it.
    let refusing = net::RefusingPort::new();
    let target_text = format!("tcp://127.0.0.1:{}", refusing.port);
    let log = dir.path().join("audit.log");
    let audit = AuditLog::new(log.clone(), Some(target_text.parse().expect("target")));
    let record = tricky_record();
    let start = Instant::now();
    let problems = audit.append(&record);
    assert!(
        start.elapsed() < SYSLOG_TIMEOUT * 3,
        "{:?}",
        start.elapsed()
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with(&format!("audit syslog {target_text}: connect: ")),
        "{problems:?}"
    );
    assert_eq!(read_history(&log, None, 10).expect("read").0, vec![record]);
}

#[test]
fn refused_udp_is_a_problem_and_the_file_still_has_every_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let refusing = net::RefusingUdpPort::new();
    let port = refusing.port;
    let target_text = format!("udp://127.0.0.1:{port}");
    let log = dir.path().join("audit.log");
    let audit = AuditLog::new(log.clone(), Some(target_text.parse().expect("target")));
    // UDP reports a refusal only if the ICMP answer is already back when the send returns;
    // on loopback it nearly always is, but a busy machine may deliver it later, so the
    // condition is "reported within the deadline", each try writing its record.
    let deadline = Instant::now() + READ_DEADLINE;
    let mut appended = 0;
    let problems = loop {
        let problems = audit.append(&tricky_record());
        appended += 1;
        if !problems.is_empty() || Instant::now() > deadline {
            break problems;
        }
    };
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with(&format!("audit syslog {target_text}: send: ")),
        "{problems:?}"
    );
    let (records, skipped) = read_history(&log, None, usize::MAX).expect("read");
    assert_eq!((records.len(), skipped), (appended, 0));
}

#[test]
fn a_missing_unix_socket_is_a_problem_and_the_file_still_has_the_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("no.sock");
    let log = dir.path().join("audit.log");
    let audit = AuditLog::new(log.clone(), Some(SyslogTarget::Unix(socket.clone())));
    let problems = audit.append(&tricky_record());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with(&format!("audit syslog unix:{}: send: ", socket.display())),
        "{problems:?}"
    );
    assert_eq!(read_history(&log, None, 10).expect("read").0.len(), 1);
}

#[test]
fn an_unwritable_file_does_not_stop_syslog() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
    server
        .set_read_timeout(Some(READ_DEADLINE))
        .expect("timeout");
    let target = SyslogTarget::Udp(server.local_addr().expect("addr").to_string());
    // The log path is a directory.
    let audit = AuditLog::new(dir.path().to_owned(), Some(target));
    let record = tricky_record();
    let problems = audit.append(&record);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("audit log "), "{problems:?}");
    let mut buf = vec![0; 65536];
    let n = server
        .recv(&mut buf)
        .expect("a datagram within the deadline");
    assert_eq!(parse_rfc5424(&buf[..n]).expect("RFC 5424").record, record);
}

#[test]
fn failed_results_go_to_syslog_as_warnings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
    server
        .set_read_timeout(Some(READ_DEADLINE))
        .expect("timeout");
    let target = SyslogTarget::Udp(server.local_addr().expect("addr").to_string());
    let audit = AuditLog::new(dir.path().join("audit.log"), Some(target));
    let record = Record::new("db", "start", Trigger::Cli, None, "failed", None, None);
    assert_eq!(audit.append(&record), Vec::<String>::new());
    let mut buf = vec![0; 65536];
    let n = server
        .recv(&mut buf)
        .expect("a datagram within the deadline");
    let m = parse_rfc5424(&buf[..n]).expect("RFC 5424");
    assert_eq!(m.pri, 3 * 8 + 4, "daemon.warning");
    assert_eq!(m.record, record);
}

#[test]
fn history_reads_back_what_was_appended() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.log");
    let audit = AuditLog::new(log.clone(), None);
    let mut written = Vec::new();
    for (i, program) in ["web", "db", "web", "web", "db"].iter().enumerate() {
        let pid = i32::try_from(i).expect("small") + 100;
        let r = Record::new(
            *program,
            "restart",
            Trigger::Crash,
            None,
            "ok",
            Some(pid),
            Some(pid + 1),
        );
        assert!(audit.append(&r).is_empty());
        written.push(r);
    }
    // Someone edited the file by hand.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| f.write_all(b"# comment\n"))
        .expect("append garbage");

    let (web, skipped) = read_history(&log, Some("web"), 2).expect("read");
    assert_eq!(skipped, 1);
    assert_eq!(web, vec![written[2].clone(), written[3].clone()]);

    let table = format_history(&web);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with(&written[2].time), "{table}");
    assert!(
        lines[0].contains("  web  restart  crash  ok  102→103"),
        "{table}"
    );
    assert!(lines[1].ends_with("103→104"), "{table}");
}

#[test]
fn strict_parser_rejects_what_rfc5424_forbids() {
    let record = Record::new("web", "start", Trigger::Cli, None, "ok", None, Some(1));
    let good = String::from_utf8(usrsvc::audit::format_rfc5424(&record, 7)).expect("UTF-8");
    assert_eq!(
        parse_rfc5424(good.as_bytes())
            .expect("our own message")
            .record,
        record
    );
    let time = &record.time;
    for (from, to) in [
        ("<29>1 ", "<29>2 "),
        ("<29>1 ", "<192>1 "),
        ("<29>1 ", "<029>1 "),
        (time.as_str(), &time.replace('T', "t")),
        (" usrsvc 7 ", " usrsvc  7 "),
        ("program=\"web\"", "program=\"w]eb\""),
        ("result=\"ok\"]", "result=\"ok\""),
        ("result=\"ok\"]", "result=ok]"),
        ("\u{feff}", ""),
        ("\"program\":\"web\"", "\"program\":7"),
    ] {
        assert!(good.contains(from), "{from:?} not in {good:?}");
        let bad = good.replacen(from, to, 1);
        assert!(parse_rfc5424(bad.as_bytes()).is_err(), "accepted {bad:?}");
    }
}
