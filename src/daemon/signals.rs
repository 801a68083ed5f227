//! Signals, turned into flags plus a wake-up byte on a socket the loop polls (signal-hook's
//! self-pipe): the handlers do nothing else.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Signals, turned into flags plus a wake-up byte on a socket the loop polls.
pub(super) struct Signals {
    pub(super) read: UnixStream,
    /// The write end, for the monitor thread to wake the loop.
    pub(super) wake: UnixStream,
    pub(super) term: Arc<AtomicBool>,
    pub(super) reread: Arc<AtomicBool>,
    pub(super) nudge: Arc<AtomicBool>,
    pub(super) child: Arc<AtomicBool>,
}

impl Signals {
    pub(super) fn install() -> std::io::Result<Signals> {
        use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let s = Signals {
            read,
            wake: write.try_clone()?,
            term: Arc::default(),
            reread: Arc::default(),
            nudge: Arc::default(),
            child: Arc::default(),
        };
        for (sig, flag) in [
            (SIGTERM, &s.term),
            (SIGINT, &s.term),
            (SIGHUP, &s.reread),
            (SIGUSR1, &s.reread),
            (SIGUSR2, &s.nudge),
            (SIGCHLD, &s.child),
        ] {
            // The flag is set before the wake-up byte is written, so a woken loop sees it.
            signal_hook::flag::register(sig, Arc::clone(flag))?;
            signal_hook::low_level::pipe::register(sig, write.try_clone()?)?;
        }
        Ok(s)
    }

    pub(super) fn drain(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.read).read(&mut buf), Ok(n) if n > 0) {}
    }
}
