//! The control API's listeners and connections: the private socket (0600, in the private
//! runtime directory) and, with delegation, the shared one (0666, in a folder only we can
//! write); an acceptor thread each, a thread per connection, every connection bounded — at
//! most [`Limits::max_connections`] at once on each socket, a deadline for each request line, a bounded
//! line, a write timeout — so that no client, however hostile or slow, can pin the daemon's
//! memory or threads. What the requests mean is `dispatch`'s.
//!
//! Must not: run in or wait for the daemon's loop (answers come from `Backend::snapshot()`
//! and `config()`), follow or unlink anything at a socket path that is not a socket, or
//! remove a socket that is no longer the one it bound.

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::socket::{send, MsgFlags};

use super::protocol::{self, ApiError, ErrorKind};
use super::{Backend, Caller};
use crate::control::Report;
use crate::daemon::log::Log;

/// The bounds of every connection (tests shorten them).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Each request line must arrive within this.
    pub deadline: Duration,
    /// A write that cannot go on for this long ends the connection.
    pub write_timeout: Duration,
    pub max_connections: usize,
    /// Bytes of a request line, without its `\n`.
    pub max_line: usize,
    /// The worker of change ops (`/proc/self/exe`, run as `usrsvcd --worker`).
    pub worker: PathBuf,
    /// Whose daemon this is (full rights).
    pub owner_uid: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            deadline: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            max_connections: 64,
            max_line: 64 * 1024,
            worker: PathBuf::from("/proc/self/exe"),
            owner_uid: crate::proc::my_uid(),
        }
    }
}

/// The result of one change op, for `wait`.
#[derive(Debug, Clone)]
pub(super) struct OpResult {
    pub id: u64,
    /// Who asked (only they, the owner and root may wait for it).
    pub uid: u32,
    /// `(code, result, output)` once done.
    pub done: Option<(i32, String, Vec<String>)>,
}

/// How many results `wait` can still find.
pub(super) const KEPT_RESULTS: usize = 256;

/// What every connection thread shares.
pub(super) struct Ctx {
    pub backend: Arc<dyn Backend>,
    pub log: Log,
    pub limits: Limits,
    pub stop: AtomicBool,
    pub next_id: AtomicU64,
    pub results: Mutex<std::collections::VecDeque<OpResult>>,
    pub results_changed: Condvar,
    /// Refusals audited per caller uid in the current minute (any local user can reach the
    /// shared socket: the trail must not be theirs to fill).
    pub refusals: Mutex<std::collections::HashMap<u32, (std::time::Instant, u32)>>,
}

impl Ctx {
    pub(super) fn new(backend: Arc<dyn Backend>, log: Log, limits: Limits) -> Arc<Ctx> {
        Arc::new(Ctx {
            backend,
            log,
            limits,
            stop: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            results: Mutex::default(),
            results_changed: Condvar::new(),
            refusals: Mutex::default(),
        })
    }
}

/// One bound socket.
struct Bound {
    path: PathBuf,
    /// Device and inode of the socket file we bound: removed on shutdown only if still it.
    id: (u64, u64),
    /// A handle on the listener, to wake its acceptor at shutdown.
    listener: UnixListener,
}

/// The running API: dropping it stops the acceptors and removes the sockets.
pub struct Server {
    ctx: Arc<Ctx>,
    bound: Vec<Bound>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// Listens on `private` and, if given and its folder is safe, `shared`. A failure of the
    /// private socket is the error; a refused shared one is logged, and the private one runs.
    pub fn start(
        backend: Arc<dyn Backend>,
        private: PathBuf,
        shared: Option<PathBuf>,
        log: Log,
    ) -> io::Result<Server> {
        Server::start_with(backend, private, shared, log, Limits::default())
    }

    pub fn start_with(
        backend: Arc<dyn Backend>,
        private: PathBuf,
        shared: Option<PathBuf>,
        log: Log,
        limits: Limits,
    ) -> io::Result<Server> {
        let ctx = Ctx::new(backend, log, limits);
        let mut server = Server {
            ctx: Arc::clone(&ctx),
            bound: Vec::new(),
            threads: Vec::new(),
        };
        server.listen(&private, 0o600)?;
        if let Some(path) = shared {
            let folder = path.parent().unwrap_or(Path::new("/"));
            let ok =
                crate::fsafe::check_own_folder(folder).and_then(|()| server.listen(&path, 0o666));
            if let Err(e) = ok {
                ctx.log.error(&format!(
                    "The shared socket {} is not listened on: {e}",
                    path.display()
                ));
            }
        }
        Ok(server)
    }

    /// The paths listened on.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.bound.iter().map(|b| b.path.clone()).collect()
    }

    fn listen(&mut self, path: &Path, mode: u32) -> io::Result<()> {
        let (listener, id) = bind(path, mode)?;
        let wake = listener.try_clone()?;
        let ctx = Arc::clone(&self.ctx);
        // Counted per socket: users flooding the shared socket cannot take the owner's.
        let open = Arc::new(AtomicUsize::new(0));
        let thread = std::thread::Builder::new()
            .name("usrsvcd-api-accept".into())
            .spawn(move || accept_loop(&ctx, &listener, &open))?;
        self.threads.push(thread);
        self.bound.push(Bound {
            path: path.to_path_buf(),
            id,
            listener: wake,
        });
        Ok(())
    }

    /// Stops accepting and removes the sockets (those still ours). Connections under way end
    /// at their next deadline; event streams within a second.
    pub fn shutdown(&mut self) {
        self.ctx.stop.store(true, Ordering::SeqCst);
        for b in &self.bound {
            // Wakes the acceptor blocked in accept(): it returns EINVAL.
            let _ = nix::sys::socket::shutdown(
                b.listener.as_raw_fd(),
                nix::sys::socket::Shutdown::Both,
            );
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for b in self.bound.drain(..) {
            match std::fs::symlink_metadata(&b.path) {
                Ok(m) if m.file_type().is_socket() && (m.dev(), m.ino()) == b.id => {
                    let _ = std::fs::remove_file(&b.path);
                }
                _ => {}
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Binds a socket at `path` with `mode`: a stale socket of a dead daemon (connect refused)
/// is replaced, a live one is an error, anything else at the path is left alone. Bound under
/// a temporary name, given its mode, then renamed into place, so the path never names a
/// socket with other permissions.
fn bind(path: &Path, mode: u32) -> io::Result<(UnixListener, (u64, u64))> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{}: another daemon answers there", path.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        },
        Ok(m) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket ({}); it is left alone",
                    path.display(),
                    kind_of(&m.file_type())
                ),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = path.with_file_name(format!(
        ".s{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let listener = UnixListener::bind(&tmp)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", tmp.display())))?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .and_then(|()| std::fs::rename(&tmp, path))
        .and_then(|()| std::fs::symlink_metadata(path));
    match placed {
        Ok(m) => Ok((listener, (m.dev(), m.ino()))),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(io::Error::new(e.kind(), format!("{}: {e}", path.display())))
        }
    }
}

fn kind_of(t: &std::fs::FileType) -> &'static str {
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a folder"
    } else if t.is_file() {
        "a regular file"
    } else {
        "a special file"
    }
}

/// Decrements the open-connection count when a connection ends, however it ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn accept_loop(ctx: &Arc<Ctx>, listener: &UnixListener, open: &Arc<AtomicUsize>) {
    loop {
        let accepted = listener.accept();
        if ctx.stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of descriptors, say: wait a little rather than spin.
                ctx.log
                    .error(&format!("control socket: accept failed: {e}"));
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        if open.fetch_add(1, Ordering::SeqCst) >= ctx.limits.max_connections {
            open.fetch_sub(1, Ordering::SeqCst);
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let busy = ApiError::new(
                ErrorKind::Busy,
                format!(
                    "{} connections are open, the most there may be; try again",
                    ctx.limits.max_connections
                ),
            );
            send_value(&stream, &busy.to_value());
            continue;
        }
        let slot = Slot(Arc::clone(open));
        let caller = match Caller::of(&stream) {
            Ok(c) => c,
            Err(e) => {
                ctx.log
                    .error(&format!("control socket: no peer credentials: {e}"));
                continue;
            }
        };
        let conn_ctx = Arc::clone(ctx);
        let spawned = std::thread::Builder::new()
            .name("usrsvcd-api".into())
            .spawn(move || {
                let _slot = slot;
                serve(&conn_ctx, &stream, &caller);
            });
        if let Err(e) = spawned {
            ctx.log
                .error(&format!("control socket: cannot start a thread: {e}"));
        }
    }
}

/// Answers the requests of one connection until it ends.
pub(super) fn serve(ctx: &Arc<Ctx>, stream: &UnixStream, caller: &Caller) {
    let _ = stream.set_write_timeout(Some(ctx.limits.write_timeout));
    let mut reader = LineReader::default();
    loop {
        let deadline = Instant::now() + ctx.limits.deadline;
        match reader.next(stream, deadline, ctx.limits.max_line) {
            Ok(line) => {
                let more = match protocol::decode(&line) {
                    Ok(req) => super::dispatch::answer(ctx, stream, caller, req),
                    Err(e) => send_value(stream, &e.to_value()),
                };
                if !more {
                    return;
                }
            }
            Err(Ended::Closed) => return,
            Err(Ended::Timeout) => {
                let e = ApiError::new(
                    ErrorKind::Timeout,
                    format!("no request within {} s", ctx.limits.deadline.as_secs_f64()),
                );
                send_value(stream, &e.to_value());
                return;
            }
            Err(Ended::TooLarge) => {
                let e = ApiError::new(
                    ErrorKind::TooLarge,
                    format!("a request line is at most {} bytes", ctx.limits.max_line),
                );
                send_value(stream, &e.to_value());
                return;
            }
        }
    }
}

/// Why no further line comes.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ended {
    Closed,
    Timeout,
    TooLarge,
}

/// Reads `\n`-terminated lines holding at most `max` bytes plus one read's worth, whatever
/// the client sends.
#[derive(Default)]
pub(super) struct LineReader {
    pending: Vec<u8>,
}

impl LineReader {
    pub(super) fn next(
        &mut self,
        mut stream: &UnixStream,
        deadline: Instant,
        max: usize,
    ) -> Result<Vec<u8>, Ended> {
        let mut buf = [0u8; 8192];
        loop {
            if let Some(at) = self.pending.iter().position(|&b| b == b'\n') {
                if at > max {
                    return Err(Ended::TooLarge);
                }
                let mut line: Vec<u8> = self.pending.drain(..=at).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.pending.len() > max {
                return Err(Ended::TooLarge);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Ended::Timeout);
            }
            // SO_RCVTIMEO with what is left of the line's deadline: a client dribbling one byte
            // at a time still gets the one deadline.
            if stream.set_read_timeout(Some(left)).is_err() {
                return Err(Ended::Closed);
            }
            match stream.read(&mut buf) {
                Ok(0) => return Err(Ended::Closed),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(Ended::Timeout)
                }
                Err(_) => return Err(Ended::Closed),
            }
        }
    }
}

/// Sends one answer line; `false` if the client is gone or does not read (the write timeout).
/// `MSG_NOSIGNAL`: a client that went away is an error, never a SIGPIPE.
pub(super) fn send_value(stream: &UnixStream, value: &serde_json::Value) -> bool {
    let bytes = protocol::line(value);
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        match send(stream.as_fd().as_raw_fd(), rest, MsgFlags::MSG_NOSIGNAL) {
            Ok(0) => return false,
            Ok(n) => rest = &rest[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
    true
}

/// Whether the client closed its end (for event streams, which read nothing): a peek that
/// sees the end of the stream, without waiting.
pub(super) fn peer_gone(stream: &UnixStream) -> bool {
    let mut byte = [0u8; 1];
    match nix::sys::socket::recv(
        stream.as_raw_fd(),
        &mut byte,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(0) => true,
        Ok(_) | Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => false,
        Err(_) => true,
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
