//! The client side of the control API: connect to a daemon's socket (within a timeout), send
//! one request line, read answer lines (each bounded: [`MAX_LINE`]), follow an `events`
//! stream; and find the socket — the owner's in the private runtime directory
//! ([`owner_socket`]), another account's shared one ([`account_socket`]).
//!
//! Speaks the wire format of the API in `serde_json::Value`s only, never the server's types,
//! so an older or newer daemon's extra fields pass through. Must not: wait without bound on a
//! daemon for anything but an `events` stream (connects, answers and results all have
//! deadlines), panic on anything a socket sends, or trust a shared socket's file that is not
//! owned by the account asked for (or root).

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::exit::ReturnCode;

/// The longest answer line read (a `status` of thousands of programs fits many times over).
pub const MAX_LINE: usize = 16 << 20;
/// How long a connect may take (a daemon whose listen backlog is full does not accept).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an answer may take once the request is sent.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the result of a change (`wait: true`) may take: a group restart of slow
/// programs takes minutes; a daemon stuck for an hour is not going to answer.
pub const DONE_TIMEOUT: Duration = Duration::from_secs(3600);

/// What went wrong talking to a daemon. Every kind is exit 143 (DAEMON_UNREACHABLE) but a
/// daemon that answers nonsense (1).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {}: {why}", socket.display())]
    Unreachable { socket: PathBuf, why: String },
    #[error("lost the daemon at {}: {why}", socket.display())]
    Lost { socket: PathBuf, why: String },
    #[error("the daemon at {} sent a line over {} MiB", socket.display(), MAX_LINE >> 20)]
    TooLarge { socket: PathBuf },
    #[error("the daemon at {} sent what is not a JSON object: {why}", socket.display())]
    BadAnswer { socket: PathBuf, why: String },
}

impl ClientError {
    pub fn code(&self) -> ReturnCode {
        match self {
            ClientError::Unreachable { .. } | ClientError::Lost { .. } => {
                ReturnCode::DaemonUnreachable
            }
            ClientError::TooLarge { .. } | ClientError::BadAnswer { .. } => {
                ReturnCode::GeneralFailure
            }
        }
    }
}

/// An error answer: `{"ok":false,"error":{"kind","message","rule"?,"code"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: String,
    pub message: String,
    pub rule: Option<String>,
    pub code: i32,
}

impl ApiError {
    /// The error of an answer, if it is one (`ok` false, or no `ok` and an `error`).
    pub fn of(answer: &Value) -> Option<ApiError> {
        if answer["ok"].as_bool() == Some(true) {
            return None;
        }
        let e = &answer["error"];
        if answer["ok"].as_bool().is_none() && e.is_null() {
            return None;
        }
        let kind = e["kind"].as_str().unwrap_or("internal").to_owned();
        let code = e["code"]
            .as_i64()
            .and_then(|c| i32::try_from(c).ok())
            .unwrap_or(match kind.as_str() {
                "refused" => i32::from(ReturnCode::NotPermitted.code()),
                "not_found" => i32::from(ReturnCode::ProgramUndefined.code()),
                "kill_switch" => i32::from(ReturnCode::KillSwitchEngaged.code()),
                _ => i32::from(ReturnCode::GeneralFailure.code()),
            });
        Some(ApiError {
            message: e["message"].as_str().unwrap_or("(no message)").to_owned(),
            rule: e["rule"].as_str().map(str::to_owned),
            kind,
            code,
        })
    }

    /// The exit code to end with: the answer's, else 1.
    pub fn return_code(&self) -> ReturnCode {
        ReturnCode::from_code(self.code).unwrap_or(ReturnCode::GeneralFailure)
    }

    /// `refused (rule no_grant:restart): MESSAGE`, for the terminal.
    pub fn describe(&self) -> String {
        match &self.rule {
            Some(rule) => format!("{} (rule {rule}): {}", self.kind, self.message),
            None => format!("{}: {}", self.kind, self.message),
        }
    }
}

/// The result line of a change made with `wait: true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub id: u64,
    pub code: i32,
    pub result: String,
    pub output: Vec<String>,
}

/// One connection to a daemon.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<UnixStream>,
    socket: PathBuf,
}

impl Client {
    /// Connects to `socket` within [`CONNECT_TIMEOUT`]. With `owner`, the socket's file must
    /// belong to that uid or to root (a shared socket of another account: whoever answers
    /// there would see the reasons sent and could answer anything).
    pub fn connect(socket: &Path, owner: Option<u32>) -> Result<Client, ClientError> {
        Client::connect_within(socket, owner, CONNECT_TIMEOUT)
    }

    pub fn connect_within(
        socket: &Path,
        owner: Option<u32>,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let unreachable = |why: String| ClientError::Unreachable {
            socket: socket.to_path_buf(),
            why,
        };
        if let Some(uid) = owner {
            let meta = std::fs::metadata(socket).map_err(|e| unreachable(e.to_string()))?;
            if meta.uid() != uid && meta.uid() != 0 {
                return Err(unreachable(format!(
                    "the socket belongs to uid {}, not to uid {uid} (the account asked for)",
                    meta.uid()
                )));
            }
        }
        let stream = connect_within(socket, timeout).map_err(|e| unreachable(e.to_string()))?;
        Ok(Client {
            reader: BufReader::new(stream),
            socket: socket.to_path_buf(),
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn lost(&self, why: impl std::fmt::Display) -> ClientError {
        ClientError::Lost {
            socket: self.socket.clone(),
            why: why.to_string(),
        }
    }

    /// Sends one request line.
    pub fn send(&mut self, request: &Value) -> Result<(), ClientError> {
        let mut line = request.to_string();
        line.push('\n');
        let stream = self.reader.get_mut();
        let _ = stream.set_write_timeout(Some(ANSWER_TIMEOUT));
        stream
            .write_all(line.as_bytes())
            .and_then(|()| stream.flush())
            .map_err(|e| self.lost(format!("cannot send the request: {e}")))
    }

    /// The next answer line as JSON, waiting at most `timeout` (`None`: for ever); `Ok(None)`
    /// when the daemon closed the connection between lines.
    pub fn read(&mut self, timeout: Option<Duration>) -> Result<Option<Value>, ClientError> {
        if let Err(e) = self.reader.get_ref().set_read_timeout(timeout) {
            return Err(self.lost(e));
        }
        let line = match read_line(&mut self.reader, MAX_LINE) {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(None),
            Err(Line::TooLarge) => {
                return Err(ClientError::TooLarge {
                    socket: self.socket.clone(),
                })
            }
            Err(Line::Io(e)) if is_timeout(&e) => {
                let secs = timeout.map_or(0, |t| t.as_secs());
                return Err(self.lost(format!("no answer within {secs} s")));
            }
            Err(Line::Io(e)) => return Err(self.lost(e)),
            Err(Line::Partial) => return Err(self.lost("it closed the connection mid-line")),
        };
        match serde_json::from_slice::<Value>(&line) {
            Ok(v) if v.is_object() => Ok(Some(v)),
            Ok(_) => Err(ClientError::BadAnswer {
                socket: self.socket.clone(),
                why: "not an object".into(),
            }),
            Err(e) => Err(ClientError::BadAnswer {
                socket: self.socket.clone(),
                why: e.to_string(),
            }),
        }
    }

    /// Sends `request` and reads its answer ([`ANSWER_TIMEOUT`]).
    pub fn call(&mut self, request: &Value) -> Result<Value, ClientError> {
        self.call_within(request, ANSWER_TIMEOUT)
    }

    /// Sends `request` and reads its answer within `timeout`.
    pub fn call_within(
        &mut self,
        request: &Value,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        self.send(request)?;
        match self.read(Some(timeout))? {
            Some(v) => Ok(v),
            None => Err(self.lost("it closed the connection without an answer")),
        }
    }

    /// A change op with `wait: true`: the refusal, or the result once it is done.
    pub fn change(&mut self, request: &Value) -> Result<Result<Done, ApiError>, ClientError> {
        let mut request = request.clone();
        if let Some(obj) = request.as_object_mut() {
            obj.insert("wait".into(), Value::Bool(true));
        }
        let first = self.call(&request)?;
        if let Some(e) = ApiError::of(&first) {
            return Ok(Err(e));
        }
        let id = first["id"].as_u64();
        loop {
            let Some(line) = self.read(Some(DONE_TIMEOUT))? else {
                return Err(self.lost("it closed the connection before the result"));
            };
            if let Some(e) = ApiError::of(&line) {
                return Ok(Err(e));
            }
            if line["done"].as_bool() != Some(true) || (id.is_some() && line["id"].as_u64() != id) {
                continue;
            }
            return Ok(Ok(Done {
                id: line["id"].as_u64().unwrap_or_default(),
                code: line["code"]
                    .as_i64()
                    .and_then(|c| i32::try_from(c).ok())
                    .unwrap_or(i32::from(ReturnCode::UnknownFailure.code())),
                result: line["result"].as_str().unwrap_or("").to_owned(),
                output: line["output"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|l| l.as_str().map_or_else(|| l.to_string(), str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
            }));
        }
    }

    /// Asks for the `events` stream (of `target`, else everything the caller may see): the
    /// refusal, or the events one by one.
    pub fn events(mut self, target: Option<&str>) -> Result<Result<Events, ApiError>, ClientError> {
        let mut request = json!({"v": 1, "op": "events"});
        if let Some(t) = target {
            request["target"] = Value::String(t.to_owned());
        }
        let first = self.call(&request)?;
        if let Some(e) = ApiError::of(&first) {
            return Ok(Err(e));
        }
        Ok(Ok(Events {
            client: self,
            done: false,
        }))
    }
}

/// The lines of an `events` stream: `Ok(line)` each (`{"v":1,"event":{..}}`), an `Err` once
/// if the stream breaks, and the end when the daemon closes it.
#[derive(Debug)]
pub struct Events {
    client: Client,
    done: bool,
}

impl Iterator for Events {
    type Item = Result<Value, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.client.read(None) {
            Ok(Some(v)) => Some(Ok(v)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// The owner's socket: `usrsvcd.sock` in the private runtime directory.
pub fn owner_socket() -> PathBuf {
    crate::control::runtime_dir()
        .unwrap_or_else(|_| PathBuf::from(format!("/tmp/usrsvc-{}", crate::proc::my_uid())))
        .join(super::SOCKET)
}

/// Where `usrsvc --user ACCOUNT` connects, and the uid that must own the socket: `--socket`,
/// else `$USRSVC_SOCKET`, else `[Main] shared_socket` of `~ACCOUNT/usrsvc.cfg`. `Err` says
/// what was tried.
pub fn account_socket(account: &str, flag: Option<&Path>) -> Result<(PathBuf, u32), String> {
    let user = match nix::unistd::User::from_name(account) {
        Ok(Some(u)) => u,
        Ok(None) => return Err(format!("no user {account:?} in the passwd database")),
        Err(e) => return Err(format!("cannot look up the user {account:?}: {e}")),
    };
    let uid = user.uid.as_raw();
    if let Some(p) = flag {
        return Ok((p.to_path_buf(), uid));
    }
    if let Some(p) = std::env::var_os("USRSVC_SOCKET").filter(|v| !v.is_empty()) {
        return Ok((PathBuf::from(p), uid));
    }
    let file = user.dir.join("usrsvc.cfg");
    let tried = format!(
        "no --socket, no $USRSVC_SOCKET, and {account}'s main config {}",
        file.display()
    );
    let bytes = read_bounded(&file, 4 << 20).map_err(|e| format!("{tried} is unreadable: {e}"))?;
    let base = file.parent().unwrap_or(Path::new("/"));
    match crate::config::peek::main_path(&bytes, "shared_socket", &user.dir, base) {
        Ok(Some(p)) => Ok((p, uid)),
        Ok(None) => Err(format!(
            "{tried} has no [Main] shared_socket (the account shares no socket)"
        )),
        Err(e) => Err(format!("{tried}: {e}")),
    }
}

/// A file's first `max` bytes at most, opened without ever blocking (a FIFO is refused).
fn read_bounded(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let file = crate::fsafe::open_read(path)?;
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// `UnixStream::connect` within `timeout`: in a thread of its own, left behind if it hangs
/// (a full backlog), which costs a blocked thread in a command that is about to end.
fn connect_within(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    let (tx, rx) = std::sync::mpsc::channel();
    let p = path.to_path_buf();
    std::thread::Builder::new()
        .name("connect".into())
        .spawn(move || {
            let _ = tx.send(UnixStream::connect(&p));
        })?;
    match rx.recv_timeout(timeout) {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "no connection within {} s (the daemon does not accept)",
                timeout.as_secs()
            ),
        )),
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

enum Line {
    Io(io::Error),
    TooLarge,
    /// The connection ended in the middle of a line.
    Partial,
}

/// The next `\n`-terminated line (without it), at most `max` bytes; `None` at a clean end.
fn read_line(reader: &mut impl BufRead, max: usize) -> Result<Option<Vec<u8>>, Line> {
    let mut buf = Vec::new();
    loop {
        let chunk = match reader.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Line::Io(e)),
        };
        if chunk.is_empty() {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(Line::Partial)
            };
        }
        let (part, used, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], i + 1, true),
            None => (chunk, chunk.len(), false),
        };
        if buf.len() + part.len() > max {
            return Err(Line::TooLarge);
        }
        buf.extend_from_slice(part);
        reader.consume(used);
        if done {
            return Ok(Some(buf));
        }
    }
}

#[cfg(test)]
mod tests;
