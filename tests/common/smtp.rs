//! A small SMTP server for tests, on 127.0.0.1 only: speaks enough ESMTP for lettre (220
//! greeting, EHLO, optional AUTH PLAIN/LOGIN, MAIL, RCPT, DATA with dot-unstuffing, RSET,
//! NOOP, QUIT) and records every message with its envelope. `SmtpSink::hanging()` accepts
//! connections and never says a word, like a wedged mail server. Everything stops on drop.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One message as the sink received it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    /// The EHLO/HELO argument.
    pub helo: String,
    /// `MAIL FROM:<x>` → `x`.
    pub mail_from: String,
    /// Each `RCPT TO:<x>` → `x`.
    pub rcpt_to: Vec<String>,
    /// `(user, password)` when the client authenticated.
    pub auth: Option<(String, String)>,
    /// The DATA, dot-unstuffed, with its CRLFs, without the final `.` line.
    pub data: String,
}

impl Received {
    /// A header's value from the DATA (first occurrence, unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(v) = value.as_mut() {
                if line.starts_with([' ', '\t']) {
                    v.push_str(line);
                    continue;
                }
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case(name) {
                    value = Some(v.trim().to_owned());
                }
            }
        }
        value
    }

    /// The body (after the blank line), CRLFs as sent.
    pub fn body(&self) -> String {
        self.data
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Speak { auth: bool },
    Hang,
}

pub struct SmtpSink {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    /// Connections accepted so far (a hanging sink counts them too).
    connections: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl SmtpSink {
    /// A working sink without AUTH.
    pub fn start() -> (u16, SmtpSink) {
        Self::launch(Mode::Speak { auth: false })
    }

    /// A working sink that advertises `AUTH PLAIN LOGIN` and records the credentials.
    pub fn with_auth() -> (u16, SmtpSink) {
        Self::launch(Mode::Speak { auth: true })
    }

    /// Accepts connections and never answers.
    pub fn hanging() -> (u16, SmtpSink) {
        Self::launch(Mode::Hang)
    }

    fn launch(mode: Mode) -> (u16, SmtpSink) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("local addr").port();
        let sink = SmtpSink {
            port,
            received: Default::default(),
            connections: Default::default(),
            stop: Default::default(),
        };
        let (received, connections, stop) = (
            Arc::clone(&sink.received),
            Arc::clone(&sink.connections),
            Arc::clone(&sink.stop),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                if let Ok(copy) = conn.try_clone() {
                    connections.lock().expect("lock").push(copy);
                }
                if mode == Mode::Hang {
                    continue;
                }
                let received = Arc::clone(&received);
                std::thread::spawn(move || {
                    let auth = matches!(mode, Mode::Speak { auth: true });
                    let _ = serve(conn, auth, &received);
                });
            }
        });
        (port, sink)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    pub fn connections(&self) -> usize {
        self.connections.lock().expect("lock").len()
    }

    /// Waits up to `limit` until `n` messages arrived; returns what arrived.
    pub fn wait_for(&self, n: usize, limit: Duration) -> Vec<Received> {
        super::wait_for(limit, || self.received().len() >= n);
        self.received()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for c in self.connections.lock().expect("lock").drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        // Wakes the accept loop so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(conn: TcpStream, auth: bool, out: &Mutex<Vec<Received>>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    let mut cur = Received::default();
    let mut helo = String::new();
    let mut auth_seen: Option<(String, String)> = None;
    w.write_all(b"220 sink.test ESMTP test sink\r\n")?;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end_matches(['\r', '\n']).to_owned();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            helo = cmd[4..].trim().to_owned();
            if upper.starts_with("HELO") {
                w.write_all(b"250 sink.test\r\n")?;
            } else if auth {
                w.write_all(b"250-sink.test\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n")?;
            } else {
                w.write_all(b"250-sink.test\r\n250 8BITMIME\r\n")?;
            }
        } else if upper.starts_with("AUTH PLAIN") {
            let initial = cmd[10..].trim().to_owned();
            let b64 = if initial.is_empty() {
                w.write_all(b"334 \r\n")?;
                read_line(&mut r)?
            } else {
                initial
            };
            let raw = base64_decode(&b64);
            let parts: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
            if parts.len() == 3 {
                auth_seen = Some((text(parts[1]), text(parts[2])));
                w.write_all(b"235 2.7.0 ok\r\n")?;
            } else {
                w.write_all(b"535 5.7.8 bad\r\n")?;
            }
        } else if upper.starts_with("AUTH LOGIN") {
            w.write_all(b"334 VXNlcm5hbWU6\r\n")?;
            let user = text(&base64_decode(&read_line(&mut r)?));
            w.write_all(b"334 UGFzc3dvcmQ6\r\n")?;
            let pass = text(&base64_decode(&read_line(&mut r)?));
            auth_seen = Some((user, pass));
            w.write_all(b"235 2.7.0 ok\r\n")?;
        } else if upper.starts_with("MAIL FROM:") {
            cur = Received {
                helo: helo.clone(),
                mail_from: angle(&cmd[10..]),
                auth: auth_seen.clone(),
                ..Default::default()
            };
            w.write_all(b"250 2.1.0 ok\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            cur.rcpt_to.push(angle(&cmd[8..]));
            w.write_all(b"250 2.1.5 ok\r\n")?;
        } else if upper == "DATA" {
            w.write_all(b"354 go ahead\r\n")?;
            let mut data = String::new();
            loop {
                let mut l = String::new();
                if r.read_line(&mut l)? == 0 {
                    return Ok(());
                }
                if l == ".\r\n" || l == ".\n" {
                    break;
                }
                data.push_str(l.strip_prefix('.').unwrap_or(&l));
            }
            cur.data = data;
            out.lock().expect("lock").push(std::mem::take(&mut cur));
            w.write_all(b"250 2.0.0 queued\r\n")?;
        } else if upper == "RSET" || upper == "NOOP" {
            w.write_all(b"250 ok\r\n")?;
        } else if upper == "QUIT" {
            w.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else {
            w.write_all(b"502 5.5.2 not implemented\r\n")?;
        }
    }
}

fn read_line(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut l = String::new();
    r.read_line(&mut l)?;
    Ok(l.trim_end_matches(['\r', '\n']).to_owned())
}

/// `<x> SIZE=…` → `x`.
fn angle(s: &str) -> String {
    let s = s.trim();
    match (s.find('<'), s.find('>')) {
        (Some(a), Some(b)) if a < b => s[a + 1..b].to_owned(),
        _ => s.split_whitespace().next().unwrap_or("").to_owned(),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Standard base64 (what SMTP AUTH uses); ignores anything outside the alphabet.
pub fn base64_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let Some(v) = ALPHABET.iter().position(|a| *a == c) else {
            continue;
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}
