//! The rate limit and the summaries: at most one mail per program per `email_interval`; what
//! happens in between is held and sent as one summary mail when the interval since the last
//! mail has passed, never dropped without a trace. Pure: every decision takes `now` from the
//! caller, so the daemon drives it from its own clock and tests use fixed `Instant`s. Memory
//! stays bounded: at most `HELD_MAX` events per program are kept in full, the rest counted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Local, SecondsFormat};

use super::{AlertEvent, AlertKind, Identity, Mail};

/// Events kept in full per program between two mails; past this the summary says "… and N
/// more" and still shows the latest one (a flapping program can make thousands).
pub const HELD_MAX: usize = 100;

/// Per-program state. A program is absent when it has nothing held and its interval has
/// passed: it then behaves exactly like one never seen.
#[derive(Debug)]
struct Program {
    to: String,
    interval: Duration,
    last_sent: Instant,
    held: Vec<AlertEvent>,
    /// Events beyond `HELD_MAX`, counted; the newest of them is kept in `latest`.
    overflow: usize,
    latest: Option<AlertEvent>,
}

impl Program {
    /// When the held events may be mailed; None if the interval is too long to represent.
    fn due_at(&self) -> Option<Instant> {
        self.last_sent.checked_add(self.interval)
    }

    fn may_send(&self, now: Instant) -> bool {
        self.due_at().is_some_and(|d| now >= d)
    }

    fn hold(&mut self, event: AlertEvent) {
        if self.held.len() < HELD_MAX {
            self.held.push(event);
        } else {
            self.overflow += 1;
            self.latest = Some(event);
        }
    }

    fn take(&mut self) -> Held {
        Held {
            events: std::mem::take(&mut self.held),
            overflow: std::mem::take(&mut self.overflow),
            latest: self.latest.take(),
        }
    }
}

/// What was held for one mail.
struct Held {
    events: Vec<AlertEvent>,
    overflow: usize,
    latest: Option<AlertEvent>,
}

impl Held {
    fn count(&self) -> usize {
        self.events.len() + self.overflow
    }
}

/// Rate limiter and summariser of alert mails; see the module doc.
#[derive(Debug)]
pub struct Alerts {
    identity: Identity,
    programs: BTreeMap<String, Program>,
}

impl Default for Alerts {
    fn default() -> Self {
        Alerts::new()
    }
}

impl Alerts {
    /// Looks up the user and host once (spec §7.2); everything after is pure.
    pub fn new() -> Alerts {
        Alerts::with_identity(Identity::of_this_process())
    }

    /// With a given user and host (tests, and callers that already know them).
    pub fn with_identity(identity: Identity) -> Alerts {
        Alerts {
            identity,
            programs: BTreeMap::new(),
        }
    }

    /// Records an event of `program` (recipients `to` = its `email_alerts`, `interval` = its
    /// `email_interval`; the latest values win, so a reread applies at once). Returns the mail
    /// to send now when none was sent for this program within `interval` (it also carries any
    /// events still held, e.g. after the interval was shortened); otherwise holds the event
    /// for the summary that `due` returns once the interval has passed.
    pub fn push(
        &mut self,
        program: &str,
        to: &str,
        interval: Duration,
        event: AlertEvent,
        now: Instant,
    ) -> Option<Mail> {
        match self.programs.get_mut(program) {
            Some(p) => {
                p.to = to.to_owned();
                p.interval = interval;
                p.hold(event);
                if p.may_send(now) {
                    p.last_sent = now;
                    let held = p.take();
                    return Some(self.compose(program, to, held));
                }
                None
            }
            None => {
                self.programs.insert(
                    program.to_owned(),
                    Program {
                        to: to.to_owned(),
                        interval,
                        last_sent: now,
                        held: Vec::new(),
                        overflow: 0,
                        latest: None,
                    },
                );
                let held = Held {
                    events: vec![event],
                    overflow: 0,
                    latest: None,
                };
                Some(self.compose(program, to, held))
            }
        }
    }

    /// When the next held-back summary becomes due (the daemon sets a timer for it).
    pub fn next_due(&self) -> Option<Instant> {
        self.programs
            .values()
            .filter(|p| !p.held.is_empty())
            .filter_map(Program::due_at)
            .min()
    }

    /// Summary mails that are due at `now`, in program-name order. Also forgets programs
    /// with nothing held whose interval has passed, so the map holds only live state.
    pub fn due(&mut self, now: Instant) -> Vec<Mail> {
        let mut ready = Vec::new();
        for (name, p) in self.programs.iter_mut() {
            if !p.held.is_empty() && p.may_send(now) {
                p.last_sent = now;
                ready.push((name.clone(), p.to.clone(), p.take()));
            }
        }
        self.programs
            .retain(|_, p| !p.held.is_empty() || !p.may_send(now));
        ready
            .into_iter()
            .map(|(name, to, held)| self.compose(&name, &to, held))
            .collect()
    }

    /// Every held-back summary, due or not: at shutdown, what happened is sent rather than
    /// dropped (the next daemon knows nothing of it).
    pub fn flush(&mut self) -> Vec<Mail> {
        let held: Vec<(String, String, Held)> = self
            .programs
            .iter_mut()
            .filter(|(_, p)| !p.held.is_empty())
            .map(|(name, p)| (name.clone(), p.to.clone(), p.take()))
            .collect();
        self.programs.clear();
        held.into_iter()
            .map(|(name, to, held)| self.compose(&name, &to, held))
            .collect()
    }

    /// The mail for one event, or the summary of several.
    fn compose(&self, program: &str, to: &str, held: Held) -> Mail {
        let Identity { user, host } = &self.identity;
        let count = held.count();
        let (subject, mut body) = match (held.events.as_slice(), count) {
            ([only], 1) => (
                format!("{user} - {program} {}", only.kind.subject_word()),
                format!(
                    "At {}, {program} running on {host} {}.\n\n{}\n",
                    when(&only.at),
                    only.kind.phrase(),
                    only.text.trim_end()
                ),
            ),
            _ => {
                let last = held.latest.as_ref().or(held.events.last());
                let last_word = last.map_or("", |e| e.kind.subject_word());
                let mut body = format!(
                    "{count} events for {program} running on {host} since the last mail:\n"
                );
                for e in &held.events {
                    body.push('\n');
                    body.push_str(&summary_entry(e));
                }
                if held.overflow > 0 {
                    // The newest of the uncounted ones is shown: it tells the current state.
                    let hidden = held.overflow - usize::from(held.latest.is_some());
                    body.push_str(&format!("\n… and {hidden} more; the latest:\n"));
                    if let Some(e) = &held.latest {
                        body.push('\n');
                        body.push_str(&summary_entry(e));
                    }
                }
                (
                    format!("{user} - {program}: {count} events, latest {last_word}"),
                    body,
                )
            }
        };
        body.push_str(&format!(
            "\nCheck usrsvcd logs for more information.\n\nYours,\nusrsvcd ({user})\n"
        ));
        Mail {
            program: program.to_owned(),
            to: to.to_owned(),
            subject,
            body,
            events: count,
        }
    }
}

/// `ctime (RFC 3339)`: the log's format (spec §3.1) for people, and an unambiguous one with
/// the UTC offset for everyone else.
fn when(at: &DateTime<Local>) -> String {
    format!(
        "{} ({})",
        at.format("%a %b %e %H:%M:%S %Y"),
        at.to_rfc3339_opts(SecondsFormat::Secs, false)
    )
}

fn summary_entry(e: &AlertEvent) -> String {
    // The subject word says what happened; the single mail's long phrase would drown a list.
    let note = match e.kind {
        AlertKind::GaveUp => " (maxrestarts reached)",
        AlertKind::RunningAgain => " (after usrsvcd had given up)",
        AlertKind::HealthFailing => " (not restarted)",
        AlertKind::Starting
        | AlertKind::Restarting
        | AlertKind::MonitorRestart
        | AlertKind::HealthRestart => "",
    };
    let mut s = format!("At {}: {}{note}.\n", when(&e.at), e.kind.subject_word());
    for line in e.text.trim_end().lines() {
        s.push_str("    ");
        s.push_str(line);
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn alerts() -> Alerts {
        Alerts::with_identity(Identity {
            user: "alice".into(),
            host: "box.example.org".into(),
        })
    }

    fn ev(kind: AlertKind, text: &str) -> AlertEvent {
        AlertEvent {
            kind,
            at: Local
                .with_ymd_and_hms(2016, 3, 8, 22, 14, 34)
                .single()
                .expect("unambiguous local time"),
            text: text.into(),
        }
    }

    const MIN5: Duration = Duration::from_secs(300);

    #[test]
    fn first_event_is_mailed_at_once_with_1_5_13_subject_and_ending() {
        let mut a = alerts();
        let t0 = Instant::now();
        let m = a
            .push(
                "web",
                "ops@x.org",
                MIN5,
                ev(AlertKind::Restarting, "crashed (exit 3)"),
                t0,
            )
            .expect("first mail goes out at once");
        assert_eq!(m.subject, "alice - web restarting");
        assert_eq!(m.to, "ops@x.org");
        assert_eq!(m.events, 1);
        assert!(
            m.body
                .starts_with("At Tue Mar  8 22:14:34 2016 (2016-03-08T22:14:34"),
            "{}",
            m.body
        );
        assert!(m.body.contains(
            "web running on box.example.org was restarted because it was found not running.\n\ncrashed (exit 3)\n"
        ));
        assert!(
            m.body.ends_with("\n\nYours,\nusrsvcd (alice)\n"),
            "{}",
            m.body
        );
        assert_eq!(a.next_due(), None, "nothing held");
    }

    #[test]
    fn subjects_per_kind() {
        let t0 = Instant::now();
        for (kind, word) in [
            (AlertKind::Starting, "alice - p starting"),
            (AlertKind::Restarting, "alice - p restarting"),
            (
                AlertKind::MonitorRestart,
                "alice - p monitor-triggered restart",
            ),
            (AlertKind::HealthFailing, "alice - p health check failing"),
            (
                AlertKind::HealthRestart,
                "alice - p health-triggered restart",
            ),
            (AlertKind::GaveUp, "alice - p failed"),
            (AlertKind::RunningAgain, "alice - p running again"),
        ] {
            let m = alerts()
                .push("p", "a@b", MIN5, ev(kind, "t"), t0)
                .expect("mail");
            assert_eq!(m.subject, word);
        }
    }

    #[test]
    fn flush_sends_what_is_held_before_it_is_due() {
        let mut a = alerts();
        let t0 = Instant::now();
        assert!(a
            .push("web", "o@x", MIN5, ev(AlertKind::Starting, "first"), t0)
            .is_some());
        assert!(a
            .push("web", "o@x", MIN5, ev(AlertKind::Restarting, "second"), t0)
            .is_none());
        assert!(a.due(t0 + Duration::from_secs(1)).is_empty(), "not due yet");
        let mails = a.flush();
        assert_eq!(mails.len(), 1);
        assert!(mails[0].body.contains("second"), "{}", mails[0].body);
        assert!(
            a.flush().is_empty() && a.next_due().is_none(),
            "nothing left"
        );
    }

    #[test]
    fn later_events_are_held_and_summarised_in_one_mail_when_due() {
        let mut a = alerts();
        let t0 = Instant::now();
        assert!(a
            .push("web", "o@x", MIN5, ev(AlertKind::Starting, "first"), t0)
            .is_some());
        let t1 = t0 + Duration::from_secs(10);
        assert!(a
            .push("web", "o@x", MIN5, ev(AlertKind::Restarting, "second"), t1)
            .is_none());
        let t2 = t0 + Duration::from_secs(20);
        assert!(a
            .push("web", "o@x", MIN5, ev(AlertKind::GaveUp, "third"), t2)
            .is_none());
        assert_eq!(a.next_due(), Some(t0 + MIN5));
        assert!(
            a.due(t0 + MIN5 - Duration::from_millis(1)).is_empty(),
            "not yet"
        );
        let mails = a.due(t0 + MIN5);
        assert_eq!(mails.len(), 1, "one summary, not one per event");
        let m = &mails[0];
        assert_eq!(m.events, 2);
        assert_eq!(m.subject, "alice - web: 2 events, latest failed");
        let second = m.body.find("second").expect("second event in summary");
        let third = m.body.find("third").expect("third event in summary");
        assert!(second < third, "in order: {}", m.body);
        assert!(!m.body.contains("first"), "already mailed");
        assert_eq!(a.next_due(), None);
        assert!(a.due(t0 + MIN5 * 3).is_empty(), "nothing twice");
    }

    #[test]
    fn a_summary_restarts_the_interval() {
        let mut a = alerts();
        let t0 = Instant::now();
        a.push("web", "o@x", MIN5, ev(AlertKind::Starting, "1"), t0);
        a.push(
            "web",
            "o@x",
            MIN5,
            ev(AlertKind::Restarting, "2"),
            t0 + Duration::from_secs(1),
        );
        let t_sum = t0 + MIN5 + Duration::from_secs(7);
        assert_eq!(a.due(t_sum).len(), 1);
        // Within the interval after the summary: held again.
        assert!(a
            .push(
                "web",
                "o@x",
                MIN5,
                ev(AlertKind::Restarting, "3"),
                t_sum + Duration::from_secs(1)
            )
            .is_none());
        assert_eq!(a.next_due(), Some(t_sum + MIN5));
        // After it: mailed at once, and the program is forgotten in between.
        assert_eq!(a.due(t_sum + MIN5).len(), 1);
        assert!(a.due(t_sum + MIN5 * 2).is_empty());
        assert!(a.programs.is_empty(), "no state kept for quiet programs");
        assert!(a
            .push(
                "web",
                "o@x",
                MIN5,
                ev(AlertKind::Restarting, "4"),
                t_sum + MIN5 * 2
            )
            .is_some());
    }

    #[test]
    fn interval_zero_mails_every_event() {
        let mut a = alerts();
        let t0 = Instant::now();
        for i in 0..5 {
            let m = a.push(
                "p",
                "o@x",
                Duration::ZERO,
                ev(AlertKind::Restarting, "x"),
                t0,
            );
            assert!(m.is_some(), "event {i} mailed at once");
        }
        assert_eq!(a.next_due(), None);
    }

    #[test]
    fn shortening_the_interval_sends_what_was_held_with_the_next_event() {
        let mut a = alerts();
        let t0 = Instant::now();
        a.push("p", "o@x", MIN5, ev(AlertKind::Starting, "a"), t0);
        a.push("p", "o@x", MIN5, ev(AlertKind::Restarting, "b"), t0);
        let m = a
            .push(
                "p",
                "o@x",
                Duration::ZERO,
                ev(AlertKind::Restarting, "c"),
                t0,
            )
            .expect("interval 0 now");
        assert_eq!(m.events, 2);
        assert!(
            m.body.contains("    b\n") && m.body.contains("    c\n"),
            "{}",
            m.body
        );
    }

    #[test]
    fn memory_is_bounded_and_the_summary_counts_the_rest() {
        let mut a = alerts();
        let t0 = Instant::now();
        a.push("p", "o@x", MIN5, ev(AlertKind::Starting, "start"), t0);
        let n = HELD_MAX + 50;
        for i in 0..n {
            let text = format!("event number {i}");
            assert!(a
                .push("p", "o@x", MIN5, ev(AlertKind::Restarting, &text), t0)
                .is_none());
        }
        let p = &a.programs["p"];
        assert_eq!(p.held.len(), HELD_MAX);
        let m = a.due(t0 + MIN5).pop().expect("summary");
        assert_eq!(m.events, n);
        assert!(m.subject.contains(&format!("{n} events")), "{}", m.subject);
        assert!(m.body.contains("event number 99\n"));
        assert!(!m.body.contains("event number 100\n"));
        assert!(m.body.contains("… and 49 more; the latest:"), "{}", m.body);
        assert!(m.body.contains(&format!("event number {}\n", n - 1)));
    }

    #[test]
    fn programs_are_independent() {
        let mut a = alerts();
        let t0 = Instant::now();
        assert!(a
            .push("a", "o@x", MIN5, ev(AlertKind::Restarting, "a1"), t0)
            .is_some());
        assert!(a
            .push("b", "p@x", MIN5, ev(AlertKind::Restarting, "b1"), t0)
            .is_some());
        let t1 = t0 + Duration::from_secs(100);
        assert!(a
            .push("a", "o@x", MIN5, ev(AlertKind::Restarting, "a2"), t1)
            .is_none());
        let long = Duration::from_secs(600);
        assert!(a
            .push("c", "q@x", long, ev(AlertKind::Restarting, "c1"), t1)
            .is_some());
        assert!(a
            .push("c", "q@x", long, ev(AlertKind::Restarting, "c2"), t1)
            .is_none());
        assert_eq!(a.next_due(), Some(t0 + MIN5), "a's summary comes first");
        let mails = a.due(t0 + MIN5);
        assert_eq!(mails.len(), 1);
        assert_eq!(mails[0].program, "a");
        assert_eq!(mails[0].to, "o@x");
        assert_eq!(a.next_due(), Some(t1 + long));
        let mails = a.due(t1 + long);
        assert_eq!(mails.len(), 1);
        assert_eq!(mails[0].program, "c");
    }

    #[test]
    fn an_absurd_interval_never_panics() {
        let mut a = alerts();
        let t0 = Instant::now();
        let huge = Duration::from_secs(u64::MAX);
        assert!(a
            .push("p", "o@x", huge, ev(AlertKind::Starting, "1"), t0)
            .is_some());
        assert!(a
            .push("p", "o@x", huge, ev(AlertKind::Starting, "2"), t0)
            .is_none());
        assert_eq!(a.next_due(), None);
        assert!(a.due(t0 + Duration::from_secs(1 << 40)).is_empty());
    }
}
