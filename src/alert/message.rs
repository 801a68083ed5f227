//! A [`Mail`] as an RFC 5322 message (lettre): Date, Message-ID, From, To, Subject, MIME
//! text/plain in UTF-8, CRLF line ends. Owns the reading of `email_alerts` into addresses; a
//! part lettre cannot parse is reported to the caller and skipped, never a panic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use lettre::message::header::{ContentType, MIME_VERSION_1_0};
use lettre::message::Mailbox;
use lettre::Message;

use super::Mail;

/// A formatted message and the parts of `email_alerts` that were left out of it.
#[derive(Debug)]
pub struct Built {
    pub message: Message,
    /// Recipients that are not addresses, as written (for the log).
    pub skipped: Vec<String>,
}

/// Splits `email_alerts` ("a@x, Bob <b@y>, root") at commas into mailboxes. A bare name
/// without `@` is a local user, as sendmail takes it, and gets `@<host>` (1.5.13's sendmail
/// delivered `email_alerts = root` locally; the header and SMTP need a full address). Returns
/// the addresses and the parts that could not be parsed.
pub fn parse_recipients(to: &str, host: &str) -> (Vec<Mailbox>, Vec<String>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for part in to.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let qualified = if part.contains('@') {
            part.to_owned()
        } else {
            format!("{part}@{host}")
        };
        match qualified.parse::<Mailbox>() {
            Ok(m) => good.push(m),
            Err(_) => bad.push(part.to_owned()),
        }
    }
    (good, bad)
}

/// Builds the message of `mail` from `from`, with `host` for the Message-ID and for local
/// recipients. Fails only when no recipient is left or `from` is not an address.
pub fn format_message(mail: &Mail, from: &str, host: &str) -> Result<Built, String> {
    let from: Mailbox = from
        .parse()
        .map_err(|e| format!("sender {from:?} is not an address ({e})"))?;
    let (to, skipped) = parse_recipients(&mail.to, host);
    if to.is_empty() {
        return Err(format!("no valid recipient in email_alerts {:?}", mail.to));
    }
    let mut builder = Message::builder()
        .from(from)
        .subject(mail.subject.as_str())
        .date(SystemTime::now())
        .message_id(Some(message_id(host)));
    for m in to {
        builder = builder.to(m);
    }
    let message = builder
        // lettre adds MIME-Version only to multipart messages; a Content-Type means MIME.
        .header(MIME_VERSION_1_0)
        .header(ContentType::TEXT_PLAIN)
        .body(mail.body.clone())
        .map_err(|e| format!("cannot build the message: {e}"))?;
    Ok(Built { message, skipped })
}

/// `<usrsvcd.SECONDS.NANOS.PID.N@host>`: unique without a random source (time, pid and a
/// counter), and says who sent it.
fn message_id(host: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // The right side must be a dot-atom; a host name with odd characters gets a safe one.
    let domain = if !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        host
    } else {
        "localhost"
    };
    format!(
        "<usrsvcd.{}.{}.{}.{n}@{domain}>",
        t.as_secs(),
        t.subsec_nanos(),
        std::process::id()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(to: &str, body: &str) -> Mail {
        Mail {
            program: "web".into(),
            to: to.into(),
            subject: "alice - web restarting".into(),
            body: body.into(),
            events: 1,
        }
    }

    /// The header block (unfolded) and the raw body of formatted bytes.
    fn split(bytes: &[u8]) -> (Vec<(String, String)>, String) {
        let text = String::from_utf8(bytes.to_vec()).expect("utf-8 message");
        let (head, body) = text
            .split_once("\r\n\r\n")
            .expect("blank line after headers");
        // Every line of the header ends in CRLF: no bare LF anywhere before the body.
        assert!(
            !head.replace("\r\n", "").contains('\n'),
            "bare LF in {head:?}"
        );
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                let last = headers.last_mut().expect("continuation after a header");
                last.1.push_str(line);
            } else {
                let (k, v) = line.split_once(':').expect("header line");
                headers.push((k.to_owned(), v.trim().to_owned()));
            }
        }
        (headers, body.to_owned())
    }

    fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
        h.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn message_parses_back_with_every_header() {
        let m = mail(
            "ops@example.org, Bob <bob@example.org>",
            "At Tue Mar  8 22:14:34 2016, web crashed.\n\nYours,\nusrsvcd (alice)\n",
        );
        let built = format_message(&m, "alice@box.example.org", "box.example.org").expect("built");
        assert!(built.skipped.is_empty());
        let bytes = built.message.formatted();
        let (h, body) = split(&bytes);
        assert_eq!(header(&h, "From"), Some("alice@box.example.org"));
        assert_eq!(
            header(&h, "To"),
            Some("ops@example.org, Bob <bob@example.org>")
        );
        assert_eq!(header(&h, "Subject"), Some("alice - web restarting"));
        let date = header(&h, "Date").expect("Date");
        chrono::DateTime::parse_from_rfc2822(date).expect("RFC 5322 date");
        let id = header(&h, "Message-ID").expect("Message-ID");
        assert!(
            id.starts_with("<usrsvcd.") && id.ends_with("@box.example.org>"),
            "{id}"
        );
        assert_eq!(header(&h, "MIME-Version"), Some("1.0"));
        assert_eq!(
            header(&h, "Content-Type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(header(&h, "Content-Transfer-Encoding"), Some("7bit"));
        assert_eq!(
            body,
            "At Tue Mar  8 22:14:34 2016, web crashed.\r\n\r\nYours,\r\nusrsvcd (alice)\r\n"
        );
        let env = built.message.envelope();
        assert_eq!(
            env.from().map(|a| a.to_string()),
            Some("alice@box.example.org".into())
        );
        let rcpt: Vec<String> = env.to().iter().map(|a| a.to_string()).collect();
        assert_eq!(rcpt, ["ops@example.org", "bob@example.org"]);
    }

    #[test]
    fn message_ids_differ() {
        let m = mail("a@b.c", "x\n");
        let a = format_message(&m, "u@h", "h")
            .expect("a")
            .message
            .formatted();
        let b = format_message(&m, "u@h", "h")
            .expect("b")
            .message
            .formatted();
        let id = |bytes: &[u8]| header(&split(bytes).0, "Message-ID").map(str::to_owned);
        assert_ne!(id(&a), id(&b));
    }

    #[test]
    fn bad_addresses_are_skipped_and_local_names_qualified() {
        let (good, bad) = parse_recipients("root, not an address@, ops@x.org, @@", "box");
        let good: Vec<String> = good.iter().map(|m| m.email.to_string()).collect();
        assert_eq!(good, ["root@box", "ops@x.org"]);
        assert_eq!(bad, ["not an address@", "@@"]);
        let built = format_message(&mail("a b c@, ops@x.org", "x\n"), "u@h", "h").expect("built");
        assert_eq!(built.skipped, ["a b c@"]);
    }

    #[test]
    fn no_recipient_left_is_an_error_not_a_panic() {
        let e = format_message(&mail("@@, ,", "x\n"), "u@h", "h").expect_err("no recipient");
        assert!(e.contains("no valid recipient"), "{e}");
        let e = format_message(&mail("a@b.c", "x\n"), "not a sender", "h").expect_err("bad from");
        assert!(e.contains("sender"), "{e}");
    }

    #[test]
    fn utf8_text_survives() {
        let body = "Grüße — … and 3 more\n";
        let built = format_message(&mail("a@b.c", body), "u@h", "h").expect("built");
        let bytes = built.message.formatted();
        let (h, raw) = split(&bytes);
        let cte = header(&h, "Content-Transfer-Encoding").expect("CTE");
        assert!(
            cte == "quoted-printable" || cte == "base64" || cte == "8bit",
            "{cte}"
        );
        assert!(!raw.is_empty());
    }
}
