//! Delivery off the supervision path: `send` puts a mail in a bounded queue and returns; one
//! background thread formats and delivers the queue in order, through SMTP (`smtp_host` set)
//! or `sendmail_path`, each attempt bounded by a timeout. A hung or failing mail server only
//! delays later mails. Every problem is one line to the daemon's `log`; nothing is retried
//! (the next alert tells the story again, and the rate limit summarises what was missed).
//!
//! Must not: block `send`, hold the queue lock while talking to a server or a process, leave a
//! timed-out sendmail (or what it started in its process group) running, or put an SMTP
//! password in a log line.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::extension::ClientId;
use lettre::{Message, SmtpTransport, Transport as _};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::{format_message, Identity, Mail};
use crate::config::{MainConfig, SmtpConfig};
use crate::control::signal::Pidfd;

/// How long one delivery may take: the SMTP connect and each read/write, or a sendmail run.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Mails waiting for delivery; past this `send` drops the oldest (mails are already rate
/// limited per program, so only a dead transport with very many programs gets here).
pub const QUEUE_MAX: usize = 100;

/// After SIGTERM to a timed-out sendmail, this long before SIGKILL (1.5.13 waited 1 s too).
const KILL_GRACE: Duration = Duration::from_secs(1);

/// How much of a failing sendmail's output goes into the log line.
const OUTPUT_LINES: usize = 5;
const OUTPUT_LINE_CHARS: usize = 200;
/// Output kept in memory per stream; the rest is read and discarded so the pipe never fills.
const OUTPUT_KEEP: usize = 16 * 1024;

type Log = Arc<dyn Fn(&str) + Send + Sync>;

/// The `[Main]` settings that choose and configure the transport.
#[derive(Debug, Clone)]
struct Transport {
    sendmail: Option<PathBuf>,
    smtp: Option<SmtpConfig>,
}

impl Transport {
    fn of(main: &MainConfig) -> Transport {
        Transport {
            sendmail: main.sendmail_path.clone(),
            smtp: main.smtp.clone(),
        }
    }
}

struct State {
    queue: VecDeque<Mail>,
    transport: Transport,
    /// `shutdown` was called: finish the queue, then exit.
    stopping: bool,
    /// The thread is delivering a mail it took off the queue.
    busy: bool,
    /// The process group of the running sendmail, while its leader is not reaped (so the id
    /// cannot have been reused): `shutdown` kills it when it gives up waiting.
    sendmail_group: Option<i32>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled on a new mail, on shutdown, and when a delivery ends.
    wake: Condvar,
    identity: Identity,
    timeout: Duration,
    log: Log,
}

impl Shared {
    /// The state, even if the delivery thread panicked while holding it (the queue is still
    /// consistent: every change is a single push or pop).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The delivery thread and its queue; see the module doc.
pub struct Deliverer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Deliverer {
    /// Starts the delivery thread. `log` receives one line per delivery problem (the daemon
    /// timestamps and writes it).
    pub fn start(main: &MainConfig, log: Arc<dyn Fn(&str) + Send + Sync>) -> Deliverer {
        Deliverer::start_with_timeout(main, log, DELIVERY_TIMEOUT)
    }

    /// `start` with another delivery timeout (tests use a short one instead of waiting 30 s).
    #[doc(hidden)]
    pub fn start_with_timeout(
        main: &MainConfig,
        log: Arc<dyn Fn(&str) + Send + Sync>,
        timeout: Duration,
    ) -> Deliverer {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                transport: Transport::of(main),
                stopping: false,
                busy: false,
                sendmail_group: None,
            }),
            wake: Condvar::new(),
            identity: Identity::of_this_process(),
            timeout,
            log,
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("usrsvc-mail".into())
            .spawn(move || run(&worker));
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                (shared.log)(&format!(
                    "Cannot start the mail delivery thread ({e}); alerts will not be sent."
                ));
                None
            }
        };
        Deliverer { shared, thread }
    }

    /// New transport settings after a config reread (applies to mails sent from now on).
    pub fn update(&self, main: &MainConfig) {
        self.shared.lock().transport = Transport::of(main);
    }

    /// Queues a mail; never blocks (a full queue drops the oldest mail and logs that it did).
    pub fn send(&self, mail: Mail) {
        let dropped = {
            let mut st = self.shared.lock();
            st.queue.push_back(mail);
            if st.queue.len() > QUEUE_MAX {
                st.queue.pop_front()
            } else {
                None
            }
        };
        self.shared.wake.notify_all();
        if let Some(m) = dropped {
            (self.shared.log)(&format!(
                "Mail queue full ({QUEUE_MAX} waiting), dropped the oldest: {}",
                describe(&m)
            ));
        }
        if self.thread.is_none() {
            (self.shared.log)("Mail not sent: the mail delivery thread is not running.");
        }
    }

    /// For shutdown: waits up to `timeout` for the queue to drain, then gives up (logs what was
    /// not sent, and kills a sendmail still running).
    pub fn shutdown(mut self, timeout: Duration) {
        self.shared.lock().stopping = true;
        self.shared.wake.notify_all();
        let (mut st, waited) = self
            .shared
            .wake
            .wait_timeout_while(self.shared.lock(), timeout, |st| {
                !st.queue.is_empty() || st.busy
            })
            .unwrap_or_else(|e| e.into_inner());
        if !waited.timed_out() {
            drop(st);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
            return;
        }
        let left: Vec<Mail> = st.queue.drain(..).collect();
        let busy = st.busy;
        if let Some(group) = st.sendmail_group {
            // Its leader is not reaped yet (the thread clears this first), so the group id is
            // still that sendmail's.
            let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
        }
        drop(st);
        let log = &self.shared.log;
        if busy {
            log("Shutting down: gave up waiting for the mail being delivered.");
        }
        for m in &left {
            log(&format!("Shutting down: mail not sent: {}", describe(m)));
        }
        // The thread may still be inside an SMTP exchange (bounded by its timeout); it ends
        // with the process, and joining it would make shutdown wait for a hung server.
        self.thread.take();
    }
}

impl Drop for Deliverer {
    fn drop(&mut self) {
        // Without `shutdown`, the thread still delivers what is queued, then exits.
        self.shared.lock().stopping = true;
        self.shared.wake.notify_all();
    }
}

/// "about PROGRAM to TO (SUBJECT)": how a mail is named in log lines.
fn describe(m: &Mail) -> String {
    format!("about {} to {} ({:?})", m.program, m.to, m.subject)
}

/// The delivery thread: takes one mail at a time, never holding the lock while delivering.
fn run(shared: &Shared) {
    loop {
        let (mail, transport) = {
            let mut st = shared.lock();
            loop {
                if let Some(m) = st.queue.pop_front() {
                    st.busy = true;
                    break (m, st.transport.clone());
                }
                if st.stopping {
                    return;
                }
                st = shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        };
        if let Err(e) = deliver(shared, &mail, &transport) {
            (shared.log)(&format!("Failed to send mail {}: {e}", describe(&mail)));
        }
        shared.lock().busy = false;
        shared.wake.notify_all();
    }
}

fn deliver(shared: &Shared, mail: &Mail, transport: &Transport) -> Result<(), String> {
    let id = &shared.identity;
    let configured_from = transport.smtp.as_ref().and_then(|s| s.from.as_deref());
    let from = match configured_from {
        Some(f) if f.parse::<lettre::message::Mailbox>().is_ok() => f.to_owned(),
        Some(f) => {
            (shared.log)(&format!(
                "smtp_from {f:?} is not an address; using {}",
                id.default_from()
            ));
            id.default_from()
        }
        None => id.default_from(),
    };
    if transport.smtp.is_none() && transport.sendmail.is_none() {
        // As 1.5.13 (§7.3), but without its dict dump: one line per mail.
        (shared.log)(&format!(
            "Would have sent mail {} but no sendmail_path / smtp_host is configured",
            describe(mail)
        ));
        return Ok(());
    }
    let built = format_message(mail, &from, &id.host)?;
    for bad in &built.skipped {
        (shared.log)(&format!(
            "email_alerts of {}: {bad:?} is not an address, skipped",
            mail.program
        ));
    }
    if let Some(smtp) = &transport.smtp {
        send_smtp(shared, smtp, &built.message)
    } else if let Some(path) = &transport.sendmail {
        run_sendmail(shared, path, &mail.to, built.message.formatted())
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// SMTP

fn send_smtp(shared: &Shared, smtp: &SmtpConfig, message: &Message) -> Result<(), String> {
    let where_ = format!("SMTP {}:{}", smtp.host, smtp.port);
    let builder = if smtp.starttls {
        // STARTTLS required: no fallback to plain text if the server does not offer it.
        SmtpTransport::starttls_relay(&smtp.host).map_err(|e| format!("{where_}: {e}"))?
    } else {
        SmtpTransport::builder_dangerous(&smtp.host)
    };
    let mut builder = builder
        .port(smtp.port)
        .timeout(Some(shared.timeout))
        .hello_name(ClientId::Domain(shared.identity.host.clone()));
    if let Some(file) = &smtp.credentials_file {
        if !smtp.starttls && !is_loopback(&smtp.host) {
            return Err(format!(
                "{where_}: refusing to send the credentials of {} over an unencrypted \
                 connection; set smtp_starttls = true (only a loopback server may do without)",
                file.display()
            ));
        }
        builder = builder.credentials(read_credentials(file)?);
    }
    builder
        .build()
        .send(message)
        .map(|_| ())
        .map_err(|e| format!("{where_}: {e}"))
}

/// A relay on this machine: nothing crosses a network, so credentials may go in plain text.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `username:password` on the first line of `file` (the password may contain `:`). Read at
/// send time, so a rotated password needs no reread; refused when group or others may read
/// it, as ssh refuses such keys, because a leaked mail password is worth guarding.
fn read_credentials(file: &Path) -> Result<Credentials, String> {
    let shown = file.display();
    let meta = std::fs::metadata(file)
        .map_err(|e| format!("cannot read smtp_credentials_file {shown}: {e}"))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "smtp_credentials_file {shown} is accessible by group or others (mode {mode:04o}); \
             refusing to use it: chmod 600 {shown}"
        ));
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read smtp_credentials_file {shown}: {e}"))?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    match line.split_once(':') {
        Some((user, password)) if !user.is_empty() => {
            Ok(Credentials::new(user.to_owned(), password.to_owned()))
        }
        _ => Err(format!(
            "smtp_credentials_file {shown}: the first line must be username:password"
        )),
    }
}

// ---------------------------------------------------------------------------------------
// sendmail

/// Runs `<path> <to>` as 1.5.13 did (the recipient string as one argument: custom scripts
/// depend on it) with the message on stdin. Its own process group, so a timeout can end
/// whatever it started too: SIGTERM to the group, SIGKILL after `KILL_GRACE`.
fn run_sendmail(shared: &Shared, path: &Path, to: &str, message: Vec<u8>) -> Result<(), String> {
    let shown = path.display();
    let mut child = Command::new(path)
        .arg(to)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run sendmail_path {shown}: {e}"))?;
    let Ok(group) = i32::try_from(child.id()) else {
        return Err(format!("{shown}: pid out of range"));
    };
    shared.lock().sendmail_group = Some(group);

    // Writing and reading in helper threads: a sendmail that does not read its stdin, or
    // fills a pipe, must not stall us past the timeout.
    if let Some(mut stdin) = child.stdin.take() {
        spawn_quiet(move || {
            let _ = stdin.write_all(&message);
        });
    }
    let outputs: Vec<mpsc::Receiver<Vec<u8>>> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(collect_output)
    .collect();

    let deadline = Instant::now() + shared.timeout;
    let exited = wait_exit(&child, shared.timeout);
    if !exited {
        let _ = killpg(Pid::from_raw(group), Signal::SIGTERM);
        wait_exit(&child, KILL_GRACE);
    }
    if !exited {
        // Also whatever in the group ignored SIGTERM or outlived its leader.
        let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
    }
    // Cleared before the reap: after it the group id may belong to someone else.
    shared.lock().sendmail_group = None;
    let status = child.wait();

    let mut output = Vec::new();
    for rx in outputs {
        // A background child may keep the pipe open; do not wait on it for long, but give a
        // killed one a moment so its last words reach the log.
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(200), Duration::from_secs(1));
        if let Ok(bytes) = rx.recv_timeout(wait) {
            output.extend_from_slice(&bytes);
        }
    }
    let output = first_lines(&output);

    if !exited {
        return Err(format!(
            "sendmail_path {shown} did not finish within {} s and was terminated{output}",
            shared.timeout.as_secs_f64()
        ));
    }
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => match s.code() {
            Some(code) => Err(format!("{shown} exited with code {code}{output}")),
            None => Err(format!(
                "{shown} was killed by signal {}{output}",
                std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0)
            )),
        },
        Err(e) => Err(format!("{shown}: cannot get its exit status: {e}{output}")),
    }
}

/// Waits up to `timeout` for our child to exit, without reaping it (its pid and group stay
/// ours until `Child::wait`).
fn wait_exit(child: &Child, timeout: Duration) -> bool {
    if let Ok(fd) = Pidfd::for_child(child.id()) {
        return fd.wait_exit(Some(timeout));
    }
    // No pidfds (old kernel, seccomp): look without reaping, a few times a second. Only a
    // mail delivery waits here, never supervision.
    let Ok(raw) = i32::try_from(child.id()) else {
        return false;
    };
    let pid = Pid::from_raw(raw);
    let end = Instant::now() + timeout;
    loop {
        use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT | WaitPidFlag::WNOHANG;
        match waitid(Id::Pid(pid), flags) {
            Ok(WaitStatus::StillAlive) => {}
            _ => return true,
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads a stream to its end on a helper thread, keeping the first `OUTPUT_KEEP` bytes.
fn collect_output(mut r: Box<dyn Read + Send>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    spawn_quiet(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = OUTPUT_KEEP.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        let _ = tx.send(kept);
    });
    rx
}

/// A helper thread whose failure to start only costs its job (the pipe closes on drop).
fn spawn_quiet(f: impl FnOnce() + Send + 'static) {
    let _ = std::thread::Builder::new()
        .name("usrsvc-mail-io".into())
        .spawn(f);
}

/// `; output: a / b / c` from the first non-empty lines, or nothing.
fn first_lines(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(OUTPUT_LINES)
        .map(|l| l.chars().take(OUTPUT_LINE_CHARS).collect())
        .collect();
    if lines.is_empty() {
        String::new()
    } else {
        format!("; output: {}", lines.join(" / "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "127.0.0.1", "::1", "[::1]", "127.1.2.3"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["mail.example.org", "10.0.0.1", "localhost.example.org"] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn credentials_file_rules() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("cred");
        std::fs::write(&f, "bob:pa:ss\nignored\n").expect("write");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(
            read_credentials(&f).expect("600 is fine"),
            Credentials::new("bob".into(), "pa:ss".into())
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let e = read_credentials(&f).expect_err("group-readable");
        assert!(e.contains("mode 0640") && e.contains("chmod 600"), "{e}");
        assert!(!e.contains("pa:ss"), "no secret in the message");
        std::fs::write(&f, "no colon here\n").expect("write");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let e = read_credentials(&f).expect_err("bad format");
        assert!(e.contains("username:password"), "{e}");
        let e = read_credentials(&dir.path().join("missing")).expect_err("missing");
        assert!(e.contains("cannot read"), "{e}");
    }

    #[test]
    fn output_lines_are_few_and_short() {
        let long = "x".repeat(500);
        let text = format!("\n a\n\nb\n{long}\nc\nd\ne\nf\n");
        let s = first_lines(text.as_bytes());
        assert!(s.starts_with("; output: a / b / xxx"), "{s}");
        assert!(s.ends_with(" / c / d"), "{s}");
        assert!(s.len() < 300);
        assert_eq!(first_lines(b"\n\n"), "");
    }
}
