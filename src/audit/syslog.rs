//! Audit records to syslog as RFC 5424 messages: to a local datagram socket (`/dev/log`), one
//! UDP datagram, or a TCP connection per record with RFC 6587 octet counting. Owns the target
//! syntax and the message format; must not wait on a log server for more than about
//! [`SYSLOG_TIMEOUT`] per step (name lookup with connect, then write), nor keep connections or
//! sockets between records (a restarted log server needs no reconnect logic, and `AuditLog`
//! stays a plain value).

use std::fmt;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat};

use super::Record;

/// How long a syslog server may take: to resolve and connect (together), and then to take
/// the record. An action is never held up much longer than this by a dead or slow server.
pub const SYSLOG_TIMEOUT: Duration = Duration::from_secs(1);

/// Facility `daemon` (3): usrsvc acts as a service manager.
const FACILITY: u8 = 3;
const SEVERITY_WARNING: u8 = 4;
const SEVERITY_NOTICE: u8 = 5;
/// The SD-ID of our structured data. 32473 is the private enterprise number RFC 5612 sets
/// aside for examples; it marks the element as ours without claiming a registered number.
const SD_ID: &str = "usrsvc@32473";

const ACCEPTED: &str =
    "expected unix:/PATH (e.g. unix:/dev/log), udp://HOST:PORT or tcp://HOST:PORT";

/// Where syslog copies of audit records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogTarget {
    /// A local datagram socket, usually `/dev/log`.
    Unix(PathBuf),
    /// `host:port`, one datagram per record.
    Udp(String),
    /// `host:port`, one connection per record, octet-counted (RFC 6587).
    Tcp(String),
}

impl fmt::Display for SyslogTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyslogTarget::Unix(path) => write!(f, "unix:{}", path.display()),
            SyslogTarget::Udp(hp) => write!(f, "udp://{hp}"),
            SyslogTarget::Tcp(hp) => write!(f, "tcp://{hp}"),
        }
    }
}

/// A syslog target string in none of the accepted forms; says what is wrong and what is
/// accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad syslog target {given:?}: {why}; {ACCEPTED}")]
pub struct BadSyslogTarget {
    pub given: String,
    pub why: String,
}

impl FromStr for SyslogTarget {
    type Err = BadSyslogTarget;

    fn from_str(s: &str) -> Result<SyslogTarget, BadSyslogTarget> {
        let bad = |why: &str| BadSyslogTarget {
            given: s.to_owned(),
            why: why.to_owned(),
        };
        if let Some(path) = s.strip_prefix("unix:") {
            if path.starts_with("//") {
                return Err(bad("unix: takes a path, not a URL (unix:/dev/log)"));
            }
            if !path.starts_with('/') {
                return Err(bad("the socket path must be absolute"));
            }
            return Ok(SyslogTarget::Unix(PathBuf::from(path)));
        }
        if let Some(hp) = s.strip_prefix("udp://") {
            check_host_port(hp).map_err(|why| bad(&why))?;
            return Ok(SyslogTarget::Udp(hp.to_owned()));
        }
        if let Some(hp) = s.strip_prefix("tcp://") {
            check_host_port(hp).map_err(|why| bad(&why))?;
            return Ok(SyslogTarget::Tcp(hp.to_owned()));
        }
        Err(bad("unknown form"))
    }
}

/// `HOST:PORT` with a non-empty host (an IPv6 address in brackets) and a port 1–65535. The host
/// itself is only looked up when a record is sent: a config check must not need DNS.
fn check_host_port(hp: &str) -> Result<(), String> {
    let Some((host, port)) = hp.rsplit_once(':') else {
        return Err("missing :PORT".into());
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 && !port.starts_with('+') => {}
        _ => return Err(format!("port {port:?} is not a number from 1 to 65535")),
    }
    if host.is_empty() {
        return Err("missing host".into());
    }
    if let Some(inner) = host.strip_prefix('[') {
        let ok = inner
            .strip_suffix(']')
            .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
        if !ok {
            return Err(format!("{host:?} is not a bracketed IPv6 address"));
        }
    } else if host.contains(':') {
        return Err("an IPv6 address needs brackets: udp://[ADDR]:PORT".into());
    } else if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '[' | ']' | '@'))
    {
        return Err(format!("{host:?} is not a host name or address"));
    }
    Ok(())
}

impl SyslogTarget {
    /// Sends one RFC 5424 message for `record`. The error says which step failed.
    pub fn send(&self, record: &Record) -> Result<(), String> {
        let msg = format_rfc5424(record, std::process::id());
        match self {
            SyslogTarget::Unix(path) => {
                let sock = UnixDatagram::unbound().map_err(|e| step("socket", e))?;
                // A syslog daemon that stops reading fills /dev/log's queue; then send blocks.
                sock.set_write_timeout(Some(SYSLOG_TIMEOUT))
                    .map_err(|e| step("socket", e))?;
                let n = sock.send_to(&msg, path).map_err(|e| step("send", e))?;
                whole(n, msg.len())
            }
            SyslogTarget::Udp(hp) => {
                let addr = *resolve(hp, SYSLOG_TIMEOUT)?
                    .first()
                    .ok_or_else(|| format!("{hp} has no address"))?;
                let any: SocketAddr = if addr.is_ipv4() {
                    (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let sock = UdpSocket::bind(any).map_err(|e| step("socket", e))?;
                // Connected, so that an ICMP "port unreachable" becomes an error on this
                // socket. UDP never waits for it: only a refusal that is already there when
                // the send returns (a closed port on this host) is seen.
                sock.connect(addr).map_err(|e| step("connect", e))?;
                sock.set_write_timeout(Some(SYSLOG_TIMEOUT))
                    .map_err(|e| step("socket", e))?;
                let n = sock.send(&msg).map_err(|e| step("send", e))?;
                whole(n, msg.len())?;
                match sock.take_error() {
                    Ok(Some(e)) | Err(e) => Err(step("send", e)),
                    Ok(None) => Ok(()),
                }
            }
            SyslogTarget::Tcp(hp) => {
                let deadline = Instant::now() + SYSLOG_TIMEOUT;
                let addrs = resolve(hp, SYSLOG_TIMEOUT)?;
                let mut stream = connect_within(&addrs, deadline)?;
                stream
                    .set_write_timeout(Some(SYSLOG_TIMEOUT))
                    .map_err(|e| step("socket", e))?;
                // RFC 6587 octet counting: the message may contain newlines (a reason
                // can), which would split it under newline framing.
                let mut frame = format!("{} ", msg.len()).into_bytes();
                frame.extend_from_slice(&msg);
                stream.write_all(&frame).map_err(|e| step("send", e))
            }
        }
    }
}

/// Names the step and turns a timeout's EAGAIN into words.
fn step(what: &str, e: io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            format!("{what}: timed out after {} s", SYSLOG_TIMEOUT.as_secs())
        }
        _ => format!("{what}: {e}"),
    }
}

fn whole(sent: usize, len: usize) -> Result<(), String> {
    if sent == len {
        Ok(())
    } else {
        Err(format!("send: only {sent} of {len} bytes sent"))
    }
}

/// The addresses of `host:port`. An address literal needs no lookup; a name is looked up in a
/// helper thread given `within` (a hung resolver is left behind, holding nothing).
fn resolve(hp: &str, within: Duration) -> Result<Vec<SocketAddr>, String> {
    if let Ok(addr) = hp.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let (tx, rx) = mpsc::channel();
    let name = hp.to_owned();
    std::thread::Builder::new()
        .name("usrsvc-syslog-dns".into())
        .spawn(move || {
            let _ = tx.send(name.to_socket_addrs().map(Iterator::collect::<Vec<_>>));
        })
        .map_err(|e| step("lookup", e))?;
    match rx.recv_timeout(within) {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Ok(Ok(_)) => Err(format!("lookup: {hp} has no address")),
        Ok(Err(e)) => Err(step("lookup", e)),
        Err(_) => Err(format!("lookup: no answer within {} s", within.as_secs())),
    }
}

/// Connects to the first address that answers before `deadline`.
fn connect_within(addrs: &[SocketAddr], deadline: Instant) -> Result<TcpStream, String> {
    let mut last = String::from("connect: no address");
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "connect: timed out after {} s",
                SYSLOG_TIMEOUT.as_secs()
            ));
        }
        match TcpStream::connect_timeout(addr, left) {
            Ok(s) => return Ok(s),
            Err(e) => last = step("connect", e),
        }
    }
    Err(last)
}

/// The RFC 5424 message for `record` from process `pid`:
/// `<PRI>1 TIMESTAMP HOSTNAME usrsvc PID audit [usrsvc@32473 program=".." action=".."
/// trigger=".." result=".."] BOM{json}`. Facility daemon; severity warning for a failed
/// result, else notice. The structured data repeats the fields a log server filters on; the
/// message is the record's JSON line (without its newline) after a UTF-8 BOM, which RFC 5424
/// asks for when MSG is UTF-8.
pub fn format_rfc5424(record: &Record, pid: u32) -> Vec<u8> {
    let severity = if record.failed() {
        SEVERITY_WARNING
    } else {
        SEVERITY_NOTICE
    };
    // Normalised through chrono: RFC 5424 wants an upper-case `T` and at most six fraction
    // digits, and a record built by hand may hold anything.
    let timestamp = DateTime::parse_from_rfc3339(&record.time)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, false))
        .unwrap_or_else(|_| "-".to_owned());
    let json = record.to_line();
    let out = format!(
        "<{pri}>1 {timestamp} {host} usrsvc {pid} audit [{SD_ID} program=\"{program}\" \
         action=\"{action}\" trigger=\"{trigger}\" result=\"{result}\"] \u{feff}{json}",
        pri = FACILITY * 8 + severity,
        host = header_field(&record.host, 255),
        program = sd_escape(&record.program),
        action = sd_escape(&record.action),
        trigger = sd_escape(&record.trigger.to_string()),
        result = sd_escape(&record.result),
        json = json.trim_end_matches('\n'),
    );
    out.into_bytes()
}

/// A header field: 1 to `max` printable US-ASCII characters, else `-` (NILVALUE). Other
/// characters become `_` rather than dropping the field.
fn header_field(s: &str, max: usize) -> String {
    let f: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    if f.is_empty() {
        "-".to_owned()
    } else {
        f
    }
}

/// PARAM-VALUE escaping (RFC 5424 §6.3.3): `"`, `\` and `]` get a backslash.
fn sd_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Trigger;

    fn record() -> Record {
        Record {
            time: "2026-11-23T15:20:01.123+01:00".into(),
            host: "box".into(),
            user: "alice".into(),
            uid: 1000,
            caller: None,
            caller_uid: None,
            program: "web".into(),
            action: "restart".into(),
            trigger: Trigger::Crash,
            reason: None,
            result: "ok".into(),
            old_pid: Some(1),
            new_pid: Some(2),
            truncated: false,
        }
    }

    #[test]
    fn message_is_exactly_rfc5424() {
        let msg = String::from_utf8(format_rfc5424(&record(), 42)).expect("utf-8");
        let json = record().to_line();
        assert_eq!(
            msg,
            format!(
                "<29>1 2026-11-23T15:20:01.123+01:00 box usrsvc 42 audit [usrsvc@32473 \
                 program=\"web\" action=\"restart\" trigger=\"crash\" result=\"ok\"] \
                 \u{feff}{}",
                json.trim_end()
            )
        );
    }

    #[test]
    fn failed_results_are_warnings_and_the_rest_notices() {
        let mut r = record();
        r.result = "failed".into();
        assert!(format_rfc5424(&r, 1).starts_with(b"<28>1 "));
        r.result = "not running".into();
        assert!(format_rfc5424(&r, 1).starts_with(b"<29>1 "));
    }

    #[test]
    fn structured_data_values_are_escaped() {
        let mut r = record();
        r.program = r#"a"b\c]d"#.into();
        r.trigger = Trigger::Monitor("x]".into());
        let msg = String::from_utf8(format_rfc5424(&r, 1)).expect("utf-8");
        assert!(msg.contains(r#"program="a\"b\\c\]d""#), "{msg}");
        assert!(msg.contains(r#"trigger="monitor:x\]""#), "{msg}");
    }

    #[test]
    fn odd_header_values_become_valid_fields() {
        let mut r = record();
        r.host = "my host\u{e9}".into();
        r.time = "yesterday".into();
        let msg = String::from_utf8(format_rfc5424(&r, 1)).expect("utf-8");
        assert!(
            msg.starts_with("<29>1 - my_host_ usrsvc 1 audit ["),
            "{msg}"
        );
        r.host = String::new();
        r.time = "2026-11-23t15:20:01.123456789Z".into();
        let msg = String::from_utf8(format_rfc5424(&r, 1)).expect("utf-8");
        assert!(
            msg.starts_with("<29>1 2026-11-23T15:20:01.123+00:00 - usrsvc"),
            "{msg}"
        );
    }

    #[test]
    fn targets_parse_and_display_back() {
        for (text, target) in [
            ("unix:/dev/log", SyslogTarget::Unix("/dev/log".into())),
            (
                "udp://127.0.0.1:514",
                SyslogTarget::Udp("127.0.0.1:514".into()),
            ),
            (
                "udp://logs.example.org:5514",
                SyslogTarget::Udp("logs.example.org:5514".into()),
            ),
            ("tcp://[::1]:601", SyslogTarget::Tcp("[::1]:601".into())),
            (
                "tcp://localhost:65535",
                SyslogTarget::Tcp("localhost:65535".into()),
            ),
        ] {
            assert_eq!(text.parse::<SyslogTarget>(), Ok(target.clone()), "{text}");
            assert_eq!(target.to_string(), text);
        }
    }

    #[test]
    fn bad_targets_say_what_is_accepted() {
        for (text, why) in [
            ("", "unknown form"),
            ("/dev/log", "unknown form"),
            ("syslog://h:514", "unknown form"),
            ("UDP://h:514", "unknown form"),
            ("unix:", "absolute"),
            ("unix:dev/log", "absolute"),
            ("unix:///dev/log", "not a URL"),
            ("udp://host", "missing :PORT"),
            ("udp://host:", "not a number"),
            ("udp://host:0", "not a number"),
            ("udp://host:65536", "not a number"),
            ("udp://host:+5", "not a number"),
            ("udp://host:x", "not a number"),
            ("tcp://:514", "missing host"),
            ("tcp://::1:514", "brackets"),
            ("tcp://[nothex]:514", "bracketed"),
            ("tcp://a b:514", "not a host"),
            ("tcp://h/x:514", "not a host"),
        ] {
            let err = text.parse::<SyslogTarget>().expect_err(text);
            let msg = err.to_string();
            assert!(msg.contains(why), "{text}: {msg}");
            assert!(
                msg.contains("unix:/PATH") && msg.contains("tcp://HOST:PORT"),
                "{msg}"
            );
        }
    }

    #[test]
    fn an_unresolvable_name_is_an_error_within_the_deadline() {
        let start = Instant::now();
        // `.invalid` never resolves (RFC 6761); whatever the resolver does, we stop waiting.
        let err = resolve("no-such-host.invalid:514", SYSLOG_TIMEOUT).expect_err("resolves");
        assert!(err.starts_with("lookup: "), "{err}");
        assert!(start.elapsed() < SYSLOG_TIMEOUT + Duration::from_secs(1));
    }
}
