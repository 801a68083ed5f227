//! E-mail alerts (spec §7, fixed): what the daemon tells a program's `email_alerts` recipients
//! when it starts, restarts or gives up on a program, or sees a failed one running again.
//!
//! Owns three things, each in its own file: `limit` decides which mails to send and when (at
//! most one per program per `email_interval`, the rest summarised in the next mail; pure, no
//! I/O, no clock reads); `message` turns a [`Mail`] into RFC 5322 bytes with lettre; `deliver`
//! hands those bytes to `sendmail_path` or an SMTP server on a background thread.
//!
//! Must not: block or slow the supervision path (a hung or failing mail server delays no
//! restart: `Deliverer::send` only queues), panic on anything from the config or the outside
//! (a bad address, a missing sendmail, a refused connection are one log line each), or start
//! or signal any process but its own `sendmail_path` children.

mod deliver;
pub(crate) mod identity;
mod limit;
mod message;

pub use deliver::{Deliverer, DELIVERY_TIMEOUT, QUEUE_MAX};
pub use identity::Identity;
pub(crate) use identity::{short_host, user_name};
pub use limit::{Alerts, HELD_MAX};
pub use message::{format_message, parse_recipients};

use chrono::{DateTime, Local};

/// What the daemon did or saw. The triggers of 1.5.13 (§7.1) plus the two it lacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    /// An autostart attempt (1.5.13: "starting").
    Starting,
    /// An automatic restart after the program was found not running.
    Restarting,
    /// A restart because a monitor fired.
    MonitorRestart,
    /// New in 2.0: a restart because a health check kept failing.
    HealthRestart,
    /// A health check failed `failures` times with `action = alert`: nothing was restarted.
    HealthFailing,
    /// `maxrestarts` reached: no more automatic restarts until it runs again.
    GaveUp,
    /// A program the daemon had given up on was seen running again.
    RunningAgain,
}

impl AlertKind {
    /// The end of the subject line, after `<user> - <name> `; 1.5.13's words, with its
    /// "monitor-triggred" typo fixed.
    pub fn subject_word(self) -> &'static str {
        match self {
            AlertKind::Starting => "starting",
            AlertKind::Restarting => "restarting",
            AlertKind::MonitorRestart => "monitor-triggered restart",
            AlertKind::HealthRestart => "health-triggered restart",
            AlertKind::HealthFailing => "health check failing",
            AlertKind::GaveUp => "failed",
            AlertKind::RunningAgain => "running again",
        }
    }

    /// What happened, as the predicate of "<name> running on <host> …".
    fn phrase(self) -> &'static str {
        match self {
            AlertKind::Starting => "was started because it was found not running",
            AlertKind::Restarting => "was restarted because it was found not running",
            AlertKind::MonitorRestart => "was restarted due to triggered monitor",
            AlertKind::HealthRestart => "was restarted because a health check kept failing",
            AlertKind::HealthFailing => {
                "is failing a health check and was not restarted (action = alert)"
            }
            AlertKind::GaveUp => {
                "has failed too often and will not be restarted until it is seen running again \
                 (fix it, then run \"usrsvc start\")"
            }
            AlertKind::RunningAgain => "was seen running again after usrsvcd had given up on it",
        }
    }
}

/// One thing that happened to a program, as the daemon reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertEvent {
    pub kind: AlertKind,
    /// Wall-clock time of the event (shown in the mail; the rate limit uses `Instant`s).
    pub at: DateTime<Local>,
    /// The daemon's one-paragraph "why", e.g. "crashed (killed by signal 9, SIGKILL) after
    /// running 3 s; restart 2, maxrestarts 5".
    pub text: String,
}

/// A mail ready to be formatted and delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub program: String,
    /// The program's `email_alerts` value as written (one or more addresses, comma-separated).
    pub to: String,
    pub subject: String,
    pub body: String,
    /// How many events this mail tells of (1, or more for a summary).
    pub events: usize,
}
