//! Placeholder with the agreed API until the alert branch lands.
#![allow(dead_code, unused_variables)]
use std::sync::Arc;
use std::time::{Duration, Instant};
pub enum AlertKind {
    Starting,
    Restarting,
    MonitorRestart,
    GaveUp,
    RunningAgain,
}
pub struct AlertEvent {
    pub kind: AlertKind,
    pub at: chrono::DateTime<chrono::Local>,
    pub text: String,
}
pub struct Mail {
    pub program: String,
    pub to: String,
    pub subject: String,
    pub body: String,
}
#[derive(Default)]
pub struct Alerts;
impl Alerts {
    pub fn new() -> Alerts {
        Alerts
    }
    pub fn push(
        &mut self,
        program: &str,
        to: &str,
        interval: Duration,
        event: AlertEvent,
        now: Instant,
    ) -> Option<Mail> {
        None
    }
    pub fn next_due(&self) -> Option<Instant> {
        None
    }
    pub fn due(&mut self, now: Instant) -> Vec<Mail> {
        Vec::new()
    }
}
pub struct Deliverer;
impl Deliverer {
    pub fn start(
        main: &crate::config::MainConfig,
        log: Arc<dyn Fn(&str) + Send + Sync>,
    ) -> Deliverer {
        Deliverer
    }
    pub fn update(&self, main: &crate::config::MainConfig) {}
    pub fn send(&self, mail: Mail) {}
    pub fn shutdown(self, timeout: Duration) {}
}
