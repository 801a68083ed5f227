//! The control API's wire format: one JSON object per line each way (see `notes/API.md`).
//! A request line is decoded into [`Request`] — an explicit list of operations and their
//! fields, so an operation nobody wrote a case for cannot be reached (what supervisord's
//! XML-RPC dispatch by name got wrong, CVE-2017-11610) — and every answer is built here, so
//! the shapes live in one place.
//!
//! Must not: decide who may do what (that is `rules`), or touch the daemon. Decoding never
//! panics: whatever the bytes, the result is a `Request` or an error answer.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::exit::ReturnCode;

/// The protocol version this daemon speaks.
pub const VERSION: u64 = 1;

/// A change-making operation's common fields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    pub target: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub wait: bool,
    #[serde(default)]
    pub force: bool,
}

/// `signal`'s fields: a [`Change`] plus the signal.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalChange {
    pub target: String,
    pub signal: SignalSpec,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub wait: bool,
    #[serde(default)]
    pub force: bool,
}

/// `repair`'s fields: a [`Change`] plus the one check whose repair to run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepairChange {
    pub target: String,
    #[serde(default)]
    pub check: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub wait: bool,
}

/// A signal as sent: a name (`QUIT`, `SIGQUIT`) or a number.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum SignalSpec {
    Number(i64),
    Name(String),
}

/// Every operation of the API, with exactly its fields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    List {},
    Status {
        #[serde(default)]
        target: Option<String>,
    },
    Plan {
        #[serde(default)]
        target: Option<String>,
    },
    History {
        #[serde(default)]
        target: Option<String>,
        #[serde(default)]
        limit: Option<u32>,
    },
    Events {
        #[serde(default)]
        target: Option<String>,
    },
    Health {
        target: String,
        #[serde(default)]
        reason: Option<String>,
        #[serde(default)]
        wait: bool,
    },
    Repair(RepairChange),
    Start(Change),
    Stop(Change),
    Restart(Change),
    Signal(SignalChange),
    Reread {
        #[serde(default)]
        force: bool,
    },
    Wait {
        id: u64,
    },
}

impl Request {
    /// The op's name on the wire.
    pub fn op(&self) -> &'static str {
        match self {
            Request::List {} => "list",
            Request::Status { .. } => "status",
            Request::Plan { .. } => "plan",
            Request::History { .. } => "history",
            Request::Events { .. } => "events",
            Request::Health { .. } => "health",
            Request::Repair(_) => "repair",
            Request::Start(_) => "start",
            Request::Stop(_) => "stop",
            Request::Restart(_) => "restart",
            Request::Signal(_) => "signal",
            Request::Reread { .. } => "reread",
            Request::Wait { .. } => "wait",
        }
    }
}

/// The kinds of error answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Version,
    BadRequest,
    TooLarge,
    Busy,
    Timeout,
    NotFound,
    Refused,
    KillSwitch,
    Reread,
    Internal,
}

impl ErrorKind {
    pub fn word(self) -> &'static str {
        match self {
            ErrorKind::Version => "version",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Busy => "busy",
            ErrorKind::Timeout => "timeout",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Refused => "refused",
            ErrorKind::KillSwitch => "kill_switch",
            ErrorKind::Reread => "reread",
            ErrorKind::Internal => "internal",
        }
    }

    /// The exit code a client reports for it (`usrsvc`'s codes).
    pub fn code(self) -> i32 {
        let rc = match self {
            ErrorKind::Version | ErrorKind::BadRequest | ErrorKind::TooLarge => {
                ReturnCode::InvalidAction
            }
            ErrorKind::Busy | ErrorKind::Timeout => ReturnCode::TryAgain,
            ErrorKind::NotFound => ReturnCode::ProgramUndefined,
            ErrorKind::Refused => ReturnCode::NotPermitted,
            ErrorKind::KillSwitch => ReturnCode::KillSwitchEngaged,
            ErrorKind::Reread => ReturnCode::InvalidConfig,
            ErrorKind::Internal => ReturnCode::UnknownFailure,
        };
        i32::from(rc.code())
    }
}

/// An error answer, before it is a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    pub rule: Option<String>,
    pub code: i32,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
            rule: None,
            code: kind.code(),
        }
    }

    /// `{"v":1,"ok":false,"error":{"kind","message","rule"?,"code"}}`.
    pub fn to_value(&self) -> Value {
        let mut error = Map::new();
        error.insert("kind".into(), json!(self.kind.word()));
        error.insert("message".into(), json!(self.message));
        if let Some(rule) = &self.rule {
            error.insert("rule".into(), json!(rule));
        }
        error.insert("code".into(), json!(self.code));
        json!({"v": VERSION, "ok": false, "error": error})
    }
}

/// `{"v":1,"ok":true, ...fields}`; `fields` must be an object (anything else adds nothing).
pub fn ok(fields: Value) -> Value {
    let mut out = Map::new();
    out.insert("v".into(), json!(VERSION));
    out.insert("ok".into(), json!(true));
    if let Value::Object(fields) = fields {
        out.extend(fields);
    }
    Value::Object(out)
}

/// The first answer to a change op: `{"v":1,"ok":true,"id":N,"accepted":true}`.
pub fn accepted(id: u64) -> Value {
    ok(json!({"id": id, "accepted": true}))
}

/// The line after a change op is done:
/// `{"v":1,"id":N,"done":true,"code":RC,"result":..,"output":[..]}`.
pub fn done(id: u64, code: i32, result: &str, output: &[String]) -> Value {
    json!({"v": VERSION, "id": id, "done": true, "code": code, "result": result, "output": output})
}

/// One line of an event stream.
pub fn event(event: &crate::daemon::state::Event) -> Value {
    json!({"v": VERSION, "event": event})
}

/// A value as its line: compact JSON and `\n`.
pub fn line(value: &Value) -> Vec<u8> {
    let mut out = value.to_string().into_bytes();
    out.push(b'\n');
    out
}

/// Decodes one request line (without its `\n`).
pub fn decode(bytes: &[u8]) -> Result<Request, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ApiError::new(ErrorKind::BadRequest, format!("not UTF-8: {e}")))?;
    let mut value: Value = serde_json::from_str(text)
        .map_err(|e| ApiError::new(ErrorKind::BadRequest, format!("not JSON: {e}")))?;
    let Value::Object(obj) = &mut value else {
        return Err(ApiError::new(
            ErrorKind::BadRequest,
            "a request is a JSON object",
        ));
    };
    match obj.remove("v") {
        Some(v) if v.as_u64() == Some(VERSION) => {}
        Some(v) => {
            return Err(ApiError::new(
                ErrorKind::Version,
                format!("protocol version {v} is not spoken here (this daemon speaks v {VERSION})"),
            ))
        }
        None => {
            return Err(ApiError::new(
                ErrorKind::Version,
                format!("no protocol version (\"v\":{VERSION})"),
            ))
        }
    }
    serde_json::from_value(value).map_err(|e| ApiError::new(ErrorKind::BadRequest, e.to_string()))
}

/// A signal's number from `QUIT`, `SIGQUIT`, `quit` or `3` (only signals this system has).
pub fn parse_signal(spec: &SignalSpec) -> Result<i32, String> {
    use nix::sys::signal::Signal;
    let sig = match spec {
        SignalSpec::Number(n) => i32::try_from(*n)
            .ok()
            .and_then(|n| Signal::try_from(n).ok())
            .ok_or_else(|| format!("no signal number {n}"))?,
        SignalSpec::Name(name) => {
            if let Ok(n) = name.trim().parse::<i64>() {
                return parse_signal(&SignalSpec::Number(n));
            }
            let upper = name.trim().to_ascii_uppercase();
            let full = if upper.starts_with("SIG") {
                upper
            } else {
                format!("SIG{upper}")
            };
            full.parse::<Signal>()
                .map_err(|_| format!("no signal named {name:?}"))?
        }
    };
    Ok(sig as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(line: &[u8]) -> ErrorKind {
        match decode(line) {
            Ok(r) => panic!("decoded {r:?}"),
            Err(e) => e.kind,
        }
    }

    #[test]
    fn every_op_decodes() {
        let cases: &[(&str, Request)] = &[
            (r#"{"v":1,"op":"list"}"#, Request::List {}),
            (r#"{"v":1,"op":"status"}"#, Request::Status { target: None }),
            (
                r#"{"v":1,"op":"status","target":"web"}"#,
                Request::Status {
                    target: Some("web".into()),
                },
            ),
            (
                r#"{"v":1,"op":"plan","target":"g"}"#,
                Request::Plan {
                    target: Some("g".into()),
                },
            ),
            (
                r#"{"v":1,"op":"history","target":"web","limit":5}"#,
                Request::History {
                    target: Some("web".into()),
                    limit: Some(5),
                },
            ),
            (r#"{"v":1,"op":"events"}"#, Request::Events { target: None }),
            (
                r#"{"v":1,"op":"health","target":"web","reason":"r","wait":true}"#,
                Request::Health {
                    target: "web".into(),
                    reason: Some("r".into()),
                    wait: true,
                },
            ),
            (
                r#"{"v":1,"op":"repair","target":"web","check":"disk"}"#,
                Request::Repair(RepairChange {
                    target: "web".into(),
                    check: Some("disk".into()),
                    reason: None,
                    wait: false,
                }),
            ),
            (
                r#"{"v":1,"op":"reread","force":true}"#,
                Request::Reread { force: true },
            ),
            (r#"{"v":1,"op":"reread"}"#, Request::Reread { force: false }),
            (r#"{"v":1,"op":"wait","id":7}"#, Request::Wait { id: 7 }),
            (
                r#"{"v":1,"op":"signal","target":"web","signal":"QUIT"}"#,
                Request::Signal(SignalChange {
                    target: "web".into(),
                    signal: SignalSpec::Name("QUIT".into()),
                    reason: None,
                    wait: false,
                    force: false,
                }),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(&decode(line.as_bytes()).expect(line), want, "{line}");
        }
        let change = Change {
            target: "all".into(),
            reason: Some("deploy".into()),
            wait: true,
            force: true,
        };
        for op in ["start", "stop", "restart"] {
            let line = format!(
                r#"{{"v":1,"op":"{op}","target":"all","reason":"deploy","wait":true,"force":true}}"#
            );
            let req = decode(line.as_bytes()).expect(&line);
            assert_eq!(req.op(), op);
            match req {
                Request::Start(c) | Request::Stop(c) | Request::Restart(c) => {
                    assert_eq!(c, change)
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn bad_lines_are_errors_never_panics() {
        assert_eq!(kind(b""), ErrorKind::BadRequest);
        assert_eq!(kind(b"garbage"), ErrorKind::BadRequest);
        assert_eq!(kind(b"[1,2]"), ErrorKind::BadRequest);
        assert_eq!(kind(b"\xff\xfe{}"), ErrorKind::BadRequest);
        assert_eq!(kind(br#"{"op":"list"}"#), ErrorKind::Version);
        assert_eq!(kind(br#"{"v":2,"op":"list"}"#), ErrorKind::Version);
        assert_eq!(kind(br#"{"v":"1","op":"list"}"#), ErrorKind::Version);
        assert_eq!(kind(br#"{"v":1,"op":"shutdown"}"#), ErrorKind::BadRequest);
        assert_eq!(kind(br#"{"v":1}"#), ErrorKind::BadRequest);
        assert_eq!(kind(br#"{"v":1,"op":7}"#), ErrorKind::BadRequest);
        // Extra fields, on unit-like and struct ops alike.
        assert_eq!(kind(br#"{"v":1,"op":"list","x":1}"#), ErrorKind::BadRequest);
        assert_eq!(
            kind(br#"{"v":1,"op":"restart","target":"a","command":"rm -rf ~"}"#),
            ErrorKind::BadRequest
        );
        assert_eq!(kind(br#"{"v":1,"op":"stop"}"#), ErrorKind::BadRequest);
        // Huge numbers.
        assert_eq!(
            kind(br#"{"v":1,"op":"wait","id":1e400}"#),
            ErrorKind::BadRequest
        );
        assert_eq!(
            kind(br#"{"v":1,"op":"wait","id":99999999999999999999999}"#),
            ErrorKind::BadRequest
        );
        assert_eq!(
            kind(br#"{"v":1,"op":"history","limit":-1}"#),
            ErrorKind::BadRequest
        );
        assert_eq!(
            kind(br#"{"v":18446744073709551617,"op":"list"}"#),
            ErrorKind::Version
        );
        // Deep nesting is serde_json's recursion limit, not a stack overflow.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(kind(deep.as_bytes()), ErrorKind::BadRequest);
        let msg = decode(br#"{"v":1,"op":"list","x":1}"#).unwrap_err().message;
        assert!(msg.contains("unknown field"), "{msg}");
    }

    #[test]
    fn signals_by_name_or_number() {
        let name = |s: &str| parse_signal(&SignalSpec::Name(s.into()));
        assert_eq!(name("QUIT"), Ok(3));
        assert_eq!(name("SIGQUIT"), Ok(3));
        assert_eq!(name("hup"), Ok(1));
        assert_eq!(name("15"), Ok(15));
        assert_eq!(parse_signal(&SignalSpec::Number(10)), Ok(10));
        assert!(name("NOPE").is_err());
        assert!(name("").is_err());
        assert!(parse_signal(&SignalSpec::Number(0)).is_err());
        assert!(parse_signal(&SignalSpec::Number(999)).is_err());
        assert!(parse_signal(&SignalSpec::Number(i64::MAX)).is_err());
        assert!(parse_signal(&SignalSpec::Number(-9)).is_err());
        assert!(name("99999999999999999999999").is_err());
    }

    #[test]
    fn answers_have_the_contract_shapes() {
        let mut e = ApiError::new(ErrorKind::Refused, "no");
        e.rule = Some("owner_only".into());
        assert_eq!(
            e.to_value(),
            json!({"v":1,"ok":false,"error":{"kind":"refused","message":"no","rule":"owner_only","code":142}})
        );
        assert_eq!(
            ApiError::new(ErrorKind::NotFound, "x").to_value()["error"]["code"],
            133
        );
        assert_eq!(
            ApiError::new(ErrorKind::KillSwitch, "x").to_value()["error"]["code"],
            139
        );
        assert_eq!(accepted(4), json!({"v":1,"ok":true,"id":4,"accepted":true}));
        assert_eq!(
            done(4, 0, "ok", &["a".into()]),
            json!({"v":1,"id":4,"done":true,"code":0,"result":"ok","output":["a"]})
        );
        assert_eq!(ok(json!({})), json!({"v":1,"ok":true}));
        assert_eq!(line(&ok(json!({}))).last(), Some(&b'\n'));
    }
}
