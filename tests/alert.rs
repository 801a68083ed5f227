//! E-mail alerts through the library API, against real processes and sockets: a stub
//! `sendmail_path` script, the test SMTP sink on 127.0.0.1 (tests/common/smtp.rs), a server
//! that never answers, and a sendmail that hangs.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::smtp::SmtpSink;
use common::Env;
use usrsvc::alert::{AlertEvent, AlertKind, Alerts, Deliverer, Identity, Mail};
use usrsvc::config::{MainConfig, SmtpConfig};

/// Collects the lines the deliverer logs.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn sink(&self) -> Arc<dyn Fn(&str) + Send + Sync> {
        let lines = Arc::clone(&self.0);
        Arc::new(move |l: &str| lines.lock().expect("log lock").push(l.to_owned()))
    }
    fn lines(&self) -> Vec<String> {
        self.0.lock().expect("log lock").clone()
    }
    fn text(&self) -> String {
        self.lines().join("\n")
    }
}

fn main_config(sendmail: Option<PathBuf>, smtp: Option<SmtpConfig>) -> MainConfig {
    MainConfig {
        config_dir: None,
        pidfile: "/nonexistent/usrsvcd.pid".into(),
        usrsvcd_stdout: None,
        usrsvcd_stderr: None,
        sendmail_path: sendmail,
        smtp,
        restart_windows: None,
        kill_switch_file: None,
        require_reason: false,
        audit_log: None,
        audit_syslog: None,
        allow_users: Vec::new(),
        allow_groups: Vec::new(),
        shared_socket: None,
    }
}

fn smtp(port: u16) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        from: None,
        starttls: false,
        credentials_file: None,
    }
}

/// A mail as the daemon would make it: through `Alerts`, first event of the program.
fn mail(program: &str, to: &str, text: &str) -> Mail {
    Alerts::new()
        .push(
            program,
            to,
            Duration::from_secs(300),
            AlertEvent {
                kind: AlertKind::Restarting,
                at: chrono::Local::now(),
                text: text.into(),
            },
            Instant::now(),
        )
        .expect("the first event is mailed at once")
}

const DRAIN: Duration = Duration::from_secs(20);

#[test]
fn sendmail_gets_the_recipient_string_as_its_one_argument_and_the_message_on_stdin() {
    let t = Env::new();
    let stub = t.script(
        "sendmail",
        "#!/bin/sh\nd=$(dirname \"$0\")\nprintf '%s\\n' \"$#\" > \"$d/argc\"\n\
         for a in \"$@\"; do printf '%s\\n' \"$a\"; done > \"$d/argv\"\ncat > \"$d/stdin\"\n",
    );
    let log = Log::default();
    let d = Deliverer::start(&main_config(Some(stub), None), log.sink());
    let to = "ops@example.org, Bob <bob@example.org>";
    d.send(mail(
        "web",
        to,
        "crashed (exit status 3) after running 2 s; restart 1",
    ));
    d.shutdown(DRAIN);

    assert_eq!(common::read(&t.path("argc")), "1\n", "log: {}", log.text());
    assert_eq!(common::read(&t.path("argv")), format!("{to}\n"));
    let msg = common::read(&t.path("stdin"));
    let id = Identity::of_this_process();
    let (head, body) = msg
        .split_once("\r\n\r\n")
        .expect("headers, blank line, body");
    assert!(
        !head.replace("\r\n", "").contains('\n'),
        "CRLF headers: {head:?}"
    );
    assert!(
        head.contains(&format!("\r\nFrom: {}@{}", id.user, id.host))
            || head.starts_with(&format!("From: {}@{}", id.user, id.host)),
        "{head}"
    );
    assert!(
        head.contains("To: ops@example.org, Bob <bob@example.org>"),
        "{head}"
    );
    assert!(
        head.contains(&format!("Subject: {} - web restarting", id.user)),
        "{head}"
    );
    assert!(
        head.contains("Date: ") && head.contains("Message-ID: <usrsvcd."),
        "{head}"
    );
    assert!(
        body.contains("crashed (exit status 3) after running 2 s; restart 1"),
        "{body}"
    );
    assert!(
        body.ends_with(&format!("Yours,\r\nusrsvcd ({})\r\n", id.user)),
        "{body}"
    );
    assert!(log.lines().is_empty(), "no problem logged: {}", log.text());
}

#[test]
fn sendmail_failure_is_logged_with_its_exit_code_and_output() {
    let t = Env::new();
    let stub = t.script(
        "sendmail",
        "#!/bin/sh\ncat >/dev/null\necho 'ops@example.org... User unknown' >&2\nexit 67\n",
    );
    let log = Log::default();
    let d = Deliverer::start(&main_config(Some(stub.clone()), None), log.sink());
    d.send(mail("web", "ops@example.org", "x"));
    d.shutdown(DRAIN);
    let text = log.text();
    assert_eq!(log.lines().len(), 1, "{text}");
    assert!(
        text.contains(&format!("{} exited with code 67", stub.display())),
        "{text}"
    );
    assert!(text.contains("User unknown"), "{text}");
    assert!(text.contains("about web to ops@example.org"), "{text}");
}

#[test]
fn a_hanging_sendmail_and_what_it_started_are_killed_at_the_timeout() {
    let t = Env::new();
    let sleep = t.sleep(1);
    let stub = t.script(
        "sendmail",
        &format!(
            "#!/bin/sh\nd=$(dirname \"$0\")\necho $$ > \"$d/shpid\"\n{sleep} &\necho $! > \"$d/sleeppid\"\nwait\n"
        ),
    );
    let log = Log::default();
    let timeout = Duration::from_secs(1);
    let d = Deliverer::start_with_timeout(&main_config(Some(stub), None), log.sink(), timeout);
    let started = Instant::now();
    d.send(mail("web", "ops@example.org", "x"));
    // Registers both pids for the harness to kill even if an assertion below fails.
    let pid_in = |name: &str| -> Option<i32> { common::read(&t.path(name)).trim().parse().ok() };
    assert!(
        common::wait_for(Duration::from_secs(5), || pid_in("sleeppid").is_some()),
        "the stub ran"
    );
    let (sh, sleeper) = (
        pid_in("shpid").expect("sh pid"),
        pid_in("sleeppid").expect("sleep pid"),
    );
    t.track(sh);
    t.track(sleeper);
    d.shutdown(DRAIN);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "ended at the timeout, took {took:?}"
    );
    assert!(took >= timeout, "not before the timeout: {took:?}");
    assert!(
        common::wait_for(Duration::from_secs(5), || !common::alive(sleeper)
            && !common::alive(sh)),
        "the sendmail and its sleep are gone"
    );
    let text = log.text();
    assert!(
        text.contains("did not finish within 1 s and was terminated"),
        "{text}"
    );
}

#[test]
fn smtp_delivers_with_the_right_envelope_and_headers() {
    let (port, sink) = SmtpSink::start();
    let log = Log::default();
    let mut cfg = smtp(port);
    cfg.from = Some("usrsvcd@example.org".into());
    let d = Deliverer::start(&main_config(None, Some(cfg)), log.sink());
    d.send(mail(
        "db",
        "ops@example.org, not an address@, dev@example.org",
        "monitor fired",
    ));
    d.shutdown(DRAIN);
    let got = sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1, "log: {}", log.text());
    let m = &got[0];
    let id = Identity::of_this_process();
    assert_eq!(m.mail_from, "usrsvcd@example.org");
    assert_eq!(m.rcpt_to, ["ops@example.org", "dev@example.org"]);
    assert_eq!(m.helo, id.host);
    assert_eq!(m.auth, None);
    assert_eq!(m.header("From").as_deref(), Some("usrsvcd@example.org"));
    assert_eq!(
        m.header("To").as_deref(),
        Some("ops@example.org, dev@example.org")
    );
    assert_eq!(
        m.header("Subject"),
        Some(format!("{} - db restarting", id.user))
    );
    assert!(m.header("Date").is_some() && m.header("Message-ID").is_some());
    assert!(m.body().contains("monitor fired"), "{}", m.body());
    let text = log.text();
    assert_eq!(log.lines().len(), 1, "only the bad address: {text}");
    assert!(
        text.contains("\"not an address@\" is not an address, skipped"),
        "{text}"
    );
}

#[test]
fn smtp_credentials_from_a_private_file() {
    use std::os::unix::fs::PermissionsExt;
    let t = Env::new();
    let (port, sink) = SmtpSink::with_auth();
    let cred = t.path("smtp.cred");
    std::fs::write(&cred, "alerts:s3cr:et\n").expect("write credentials");
    std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let mut cfg = smtp(port);
    cfg.credentials_file = Some(cred.clone());
    let log = Log::default();
    let d = Deliverer::start(&main_config(None, Some(cfg.clone())), log.sink());
    d.send(mail("web", "ops@example.org", "x"));
    d.shutdown(DRAIN);
    let got = sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1, "log: {}", log.text());
    assert_eq!(
        got[0].auth,
        Some(("alerts".to_owned(), "s3cr:et".to_owned()))
    );

    // Readable by others: refused, nothing sent, the secret not logged.
    std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let log = Log::default();
    let d = Deliverer::start(&main_config(None, Some(cfg)), log.sink());
    d.send(mail("web", "ops@example.org", "x"));
    d.shutdown(DRAIN);
    assert_eq!(sink.received().len(), 1, "no second mail");
    let text = log.text();
    assert!(
        text.contains("mode 0644") && text.contains("refusing"),
        "{text}"
    );
    assert!(!text.contains("s3cr"), "{text}");
}

#[test]
fn starttls_required_means_no_plain_text_fallback() {
    let (port, sink) = SmtpSink::start();
    let mut cfg = smtp(port);
    cfg.starttls = true;
    let log = Log::default();
    let d = Deliverer::start(&main_config(None, Some(cfg)), log.sink());
    d.send(mail("web", "ops@example.org", "x"));
    d.shutdown(DRAIN);
    assert!(sink.received().is_empty(), "nothing sent in the clear");
    let text = log.text();
    assert!(
        text.contains("Failed to send mail about web")
            && text.contains(&format!("SMTP 127.0.0.1:{port}")),
        "{text}"
    );
}

#[test]
fn a_hanging_smtp_server_never_blocks_send_and_delays_no_other_deliverer() {
    let (hung_port, hung) = SmtpSink::hanging();
    let hung_log = Log::default();
    let stuck = Deliverer::start(&main_config(None, Some(smtp(hung_port))), hung_log.sink());
    let mut worst = Duration::ZERO;
    for i in 0..5 {
        let m = mail(&format!("p{i}"), "ops@example.org", "x");
        let t0 = Instant::now();
        stuck.send(m);
        worst = worst.max(t0.elapsed());
    }
    assert!(worst < Duration::from_millis(100), "send() took {worst:?}");
    assert!(
        common::wait_for(Duration::from_secs(5), || hung.connections() >= 1),
        "the stuck deliverer is talking to the hung server"
    );

    let (port, sink) = SmtpSink::start();
    let ok_log = Log::default();
    let working = Deliverer::start(&main_config(None, Some(smtp(port))), ok_log.sink());
    working.send(mail("web", "ops@example.org", "meanwhile"));
    let got = sink.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "log: {}", ok_log.text());
    working.shutdown(DRAIN);
    assert!(
        hung_log.lines().is_empty(),
        "still waiting: {}",
        hung_log.text()
    );

    // Shutdown does not wait for the hung server beyond its own limit, and says what was lost.
    let t0 = Instant::now();
    stuck.shutdown(Duration::from_millis(200));
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    let text = hung_log.text();
    assert!(
        text.contains("gave up waiting for the mail being delivered"),
        "{text}"
    );
    assert_eq!(
        text.matches("Shutting down: mail not sent").count(),
        4,
        "{text}"
    );
}

#[test]
fn a_hanging_smtp_server_costs_one_timeout_per_mail() {
    let (port, _hung) = SmtpSink::hanging();
    let log = Log::default();
    let d = Deliverer::start_with_timeout(
        &main_config(None, Some(smtp(port))),
        log.sink(),
        Duration::from_secs(1),
    );
    let t0 = Instant::now();
    d.send(mail("web", "ops@example.org", "x"));
    d.shutdown(DRAIN);
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "bounded by the timeout: {took:?}"
    );
    let text = log.text();
    assert!(text.contains("Failed to send mail about web"), "{text}");
}

#[test]
fn a_full_queue_drops_the_oldest_and_says_so() {
    let (port, _hung) = SmtpSink::hanging();
    let log = Log::default();
    let d = Deliverer::start(&main_config(None, Some(smtp(port))), log.sink());
    for i in 0..usrsvc::alert::QUEUE_MAX + 3 {
        d.send(mail(&format!("p{i}"), "ops@example.org", "x"));
    }
    let text = log.text();
    assert!(text.contains("Mail queue full"), "{text}");
    assert!(text.contains("dropped the oldest: about p"), "{text}");
    d.shutdown(Duration::ZERO);
}

#[test]
fn update_applies_to_mails_sent_after_it() {
    let (port, sink) = SmtpSink::start();
    let log = Log::default();
    let d = Deliverer::start(&main_config(None, None), log.sink());
    d.update(&main_config(None, Some(smtp(port))));
    d.send(mail("web", "ops@example.org", "after the reread"));
    d.shutdown(DRAIN);
    let got = sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1, "log: {}", log.text());
    assert!(got[0].body().contains("after the reread"));
}

#[test]
fn no_transport_is_one_log_line_per_mail() {
    let log = Log::default();
    let d = Deliverer::start(&main_config(None, None), log.sink());
    d.send(mail("a", "ops@example.org", "x"));
    d.send(mail("b", "ops@example.org", "x"));
    d.shutdown(DRAIN);
    let lines = log.lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for l in &lines {
        assert!(
            l.contains("would have sent mail") || l.contains("Would have sent mail"),
            "{l}"
        );
        assert!(
            l.contains("no sendmail_path / smtp_host is configured"),
            "{l}"
        );
    }
}
