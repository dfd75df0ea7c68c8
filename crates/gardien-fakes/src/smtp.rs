//! A real SMTP server on 127.0.0.1 that keeps what it receives (RFC 5321 subset: EHLO/HELO,
//! AUTH PLAIN and LOGIN when credentials are configured, MAIL FROM, RCPT TO, DATA with
//! dot-unstuffing, RSET, NOOP, QUIT), with switches to refuse recipients (`550`), answer
//! transient errors (`421`/`451`), refuse authentication (`535`), be slow or go down.
//!
//! Written by hand on tokio: the maintained SMTP server crates (`mailin-embedded`,
//! `samotop`) run their own threads or runtimes and offer no hook to inject a failure at a
//! given command, which is what these tests need. No TLS: `STARTTLS` is not offered, so a
//! client configured for it must refuse to go on.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Largest message taken (`SIZE` in EHLO).
pub const MAX_MESSAGE_BYTES: usize = 10 * 1024 * 1024;
/// Longest command line (RFC 5321 §4.5.3.1.4 says 512; text lines 1000).
const MAX_LINE_BYTES: usize = 4096;
const HOSTNAME: &str = "fake-smtp.gardien.test";

/// A message the sink took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// When the final `.` arrived (for latency measurements).
    pub received_at: Instant,
    pub received_at_system: SystemTime,
    /// The name given in `EHLO`/`HELO`.
    pub client_name: String,
    /// The user that authenticated, if any.
    pub authenticated_as: Option<String>,
    /// The `MAIL FROM` address (empty for `<>`).
    pub mail_from: String,
    /// The `RCPT TO` addresses taken.
    pub rcpt_to: Vec<String>,
    /// The message, dot-unstuffed, lines ending in CRLF, without the final `.`.
    pub data: Vec<u8>,
    /// The id answered in `250 … queued as ID`, if one was.
    pub queue_id: Option<String>,
}

impl ReceivedMail {
    /// The message as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    /// The first header `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let text = self.text();
        let head = text.split("\r\n\r\n").next().unwrap_or("");
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(current) = value.as_mut() {
                    current.push(' ');
                    current.push_str(line.trim());
                }
                continue;
            }
            if value.is_some() {
                break;
            }
            if let Some((key, rest)) = line.split_once(':') {
                if key.trim().eq_ignore_ascii_case(name) {
                    value = Some(rest.trim().to_owned());
                }
            }
        }
        value
    }
}

/// An authentication attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthAttempt {
    pub mechanism: String,
    pub username: String,
    pub succeeded: bool,
}

#[derive(Debug)]
struct Switches {
    credentials: Option<(String, String)>,
    mechanisms: Vec<String>,
    refuse_auth: bool,
    rejected_recipients: HashSet<String>,
    reject_all_recipients: bool,
    mail_failures: VecDeque<u16>,
    refused_connections: u32,
    delay: Duration,
    queue_ids: bool,
}

impl Default for Switches {
    fn default() -> Self {
        Switches {
            credentials: None,
            mechanisms: vec!["PLAIN".into(), "LOGIN".into()],
            refuse_auth: false,
            rejected_recipients: HashSet::new(),
            reject_all_recipients: false,
            mail_failures: VecDeque::new(),
            refused_connections: 0,
            delay: Duration::ZERO,
            queue_ids: true,
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    switches: Mutex<Switches>,
    messages: Mutex<Vec<ReceivedMail>>,
    auth_attempts: Mutex<Vec<AuthAttempt>>,
    connections: Mutex<usize>,
}

/// The SMTP sink.
#[derive(Debug)]
pub struct FakeSmtp {
    addr: SocketAddr,
    shared: Arc<Shared>,
    running: Mutex<Option<JoinHandle<()>>>,
}

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

impl FakeSmtp {
    /// Starts on an ephemeral port of 127.0.0.1, without authentication.
    ///
    /// # Panics
    /// When no loopback port can be bound (a test set-up failure).
    pub async fn start() -> FakeSmtp {
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0)))
            .unwrap_or_else(|e| panic!("fake SMTP: cannot listen on 127.0.0.1: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("fake SMTP: no local address: {e}"));
        let sink = FakeSmtp {
            addr,
            shared: Arc::new(Shared::default()),
            running: Mutex::new(None),
        };
        sink.run(listener);
        sink
    }

    fn run(&self, listener: TcpListener) {
        let shared = Arc::clone(&self.shared);
        let task = tokio::spawn(async move {
            let mut sessions = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        *shared.connections.lock() += 1;
                        let shared = Arc::clone(&shared);
                        sessions.spawn(async move {
                            let _ = session(stream, &shared).await;
                        });
                    }
                    Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                }
            }
        });
        *self.running.lock() = Some(task);
    }

    /// `127.0.0.1`.
    pub fn host(&self) -> String {
        self.addr.ip().to_string()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requires `AUTH` with these credentials before `MAIL FROM` (or changes them: a
    /// rotated password).
    pub fn require_auth(&self, username: &str, password: &str) {
        self.shared.switches.lock().credentials = Some((username.to_owned(), password.to_owned()));
    }

    /// The mechanisms advertised when authentication is required (default `PLAIN LOGIN`).
    pub fn auth_mechanisms(&self, mechanisms: &[&str]) {
        self.shared.switches.lock().mechanisms =
            mechanisms.iter().map(|m| m.to_ascii_uppercase()).collect();
    }

    /// Every `AUTH` answers `535` while on.
    pub fn refuse_auth(&self, refuse: bool) {
        self.shared.switches.lock().refuse_auth = refuse;
    }

    /// `RCPT TO:<address>` answers `550 5.1.1`.
    pub fn reject_recipient(&self, address: &str) {
        self.shared
            .switches
            .lock()
            .rejected_recipients
            .insert(address.to_ascii_lowercase());
    }

    /// Every `RCPT TO` answers `550 5.1.1` while on.
    pub fn reject_all_recipients(&self, reject: bool) {
        self.shared.switches.lock().reject_all_recipients = reject;
    }

    /// The next `n` `MAIL FROM` answer `code` (`451`: try later; `421`: and the connection
    /// closes; a `5xx` for a permanent refusal).
    pub fn fail_next_mail(&self, n: usize, code: u16) {
        self.shared
            .switches
            .lock()
            .mail_failures
            .extend(std::iter::repeat_n(code, n));
    }

    /// The next `n` connections are greeted `421` and closed.
    pub fn refuse_next_connections(&self, n: u32) {
        self.shared.switches.lock().refused_connections = n;
    }

    /// The reply to the end of the message waits `delay` (zero to stop).
    pub fn delay(&self, delay: Duration) {
        self.shared.switches.lock().delay = delay;
    }

    /// Whether the `250` after the message carries `queued as ID` (default on).
    pub fn queue_ids(&self, on: bool) {
        self.shared.switches.lock().queue_ids = on;
    }

    /// Closes the port and every session: clients see connection refused.
    pub async fn go_down(&self) {
        let task = self.running.lock().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    ///
    /// # Panics
    /// When the port cannot be bound again.
    pub async fn come_back(&self) {
        if self.running.lock().is_some() {
            return;
        }
        let listener =
            listen(self.addr).unwrap_or_else(|e| panic!("fake SMTP: cannot listen again: {e}"));
        self.run(listener);
    }

    pub fn is_up(&self) -> bool {
        self.running.lock().is_some()
    }

    /// Every message taken, in order.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.shared.messages.lock().clone()
    }

    /// Every `AUTH` attempt, in order.
    pub fn auth_attempts(&self) -> Vec<AuthAttempt> {
        self.shared.auth_attempts.lock().clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        *self.shared.connections.lock()
    }

    /// Forgets messages, attempts and the connection count (switches stay).
    pub fn clear(&self) {
        self.shared.messages.lock().clear();
        self.shared.auth_attempts.lock().clear();
        *self.shared.connections.lock() = 0;
    }
}

impl Drop for FakeSmtp {
    fn drop(&mut self) {
        if let Some(task) = self.running.lock().take() {
            task.abort();
        }
    }
}

/// One client's state between commands.
#[derive(Debug, Default)]
struct Session {
    client_name: Option<String>,
    authenticated_as: Option<String>,
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
}

impl Session {
    fn reset(&mut self) {
        self.mail_from = None;
        self.rcpt_to.clear();
    }
}

type Lines = BufReader<TcpStream>;

async fn reply(stream: &mut Lines, text: &str) -> std::io::Result<()> {
    stream.get_mut().write_all(text.as_bytes()).await?;
    stream.get_mut().write_all(b"\r\n").await?;
    stream.get_mut().flush().await
}

/// One line without its CRLF; `None` at end of stream; an error when too long.
async fn read_line(stream: &mut Lines) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let read = (&mut *stream)
        .take(MAX_LINE_BYTES as u64 + 2)
        .read_until(b'\n', &mut line)
        .await?;
    if read == 0 {
        return Ok(None);
    }
    if !line.ends_with(b"\n") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "line too long",
        ));
    }
    line.pop();
    if line.ends_with(b"\r") {
        line.pop();
    }
    Ok(Some(line))
}

/// The address between `<` and `>` after `prefix` (`FROM:`, `TO:`), parameters ignored.
fn path_argument(argument: &str, prefix: &str) -> Option<String> {
    let rest = argument.get(..prefix.len())?;
    if !rest.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = argument[prefix.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    Some(rest[..end].to_owned())
}

fn decode(text: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()?;
    String::from_utf8(bytes).ok()
}

async fn session(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut stream = BufReader::new(stream);
    {
        let refuse = {
            let mut switches = shared.switches.lock();
            let refuse = switches.refused_connections > 0;
            if refuse {
                switches.refused_connections -= 1;
            }
            refuse
        };
        if refuse {
            return reply(
                &mut stream,
                &format!(
                    "421 4.3.2 {HOSTNAME} Service not available, closing transmission channel"
                ),
            )
            .await;
        }
    }
    reply(&mut stream, &format!("220 {HOSTNAME} ESMTP gardien-fakes")).await?;
    let mut state = Session::default();
    loop {
        let line = match read_line(&mut stream).await {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                reply(&mut stream, "500 5.5.0 Error: line too long").await?;
                continue;
            }
            Err(e) => return Err(e),
        };
        let line = String::from_utf8_lossy(&line).into_owned();
        let (verb, argument) = match line.split_once(' ') {
            Some((verb, argument)) => (verb.to_ascii_uppercase(), argument.trim().to_owned()),
            None => (line.trim().to_ascii_uppercase(), String::new()),
        };
        match verb.as_str() {
            "EHLO" | "HELO" => {
                if argument.is_empty() {
                    reply(&mut stream, "501 5.5.4 Syntax: EHLO hostname").await?;
                    continue;
                }
                state = Session {
                    client_name: Some(argument.clone()),
                    ..Session::default()
                };
                if verb == "HELO" {
                    reply(&mut stream, &format!("250 {HOSTNAME}")).await?;
                    continue;
                }
                let mut lines = vec![
                    format!("{HOSTNAME} greets {argument}"),
                    "8BITMIME".to_owned(),
                    "SMTPUTF8".to_owned(),
                    format!("SIZE {MAX_MESSAGE_BYTES}"),
                    "ENHANCEDSTATUSCODES".to_owned(),
                ];
                {
                    let switches = shared.switches.lock();
                    if switches.credentials.is_some() && !switches.mechanisms.is_empty() {
                        lines.push(format!("AUTH {}", switches.mechanisms.join(" ")));
                    }
                }
                let last = lines.len() - 1;
                let text: Vec<String> = lines
                    .iter()
                    .enumerate()
                    .map(|(i, l)| format!("250{}{l}", if i == last { ' ' } else { '-' }))
                    .collect();
                reply(&mut stream, &text.join("\r\n")).await?;
            }
            "AUTH" => auth(&mut stream, shared, &mut state, &argument).await?,
            "MAIL" => {
                if state.client_name.is_none() {
                    reply(&mut stream, "503 5.5.1 Error: send HELO/EHLO first").await?;
                    continue;
                }
                if state.mail_from.is_some() {
                    reply(&mut stream, "503 5.5.1 Error: nested MAIL command").await?;
                    continue;
                }
                let (needs_auth, failure) = {
                    let mut switches = shared.switches.lock();
                    (
                        switches.credentials.is_some(),
                        switches.mail_failures.pop_front(),
                    )
                };
                if needs_auth && state.authenticated_as.is_none() {
                    reply(&mut stream, "530 5.7.0 Authentication required").await?;
                    continue;
                }
                if let Some(code) = failure {
                    let text = match code {
                        421 => format!("421 4.3.2 {HOSTNAME} Service shutting down, closing transmission channel"),
                        451 => "451 4.3.0 Error: queue file write error, try again later".to_owned(),
                        452 => "452 4.3.1 Insufficient system storage".to_owned(),
                        _ => format!("{code} 5.7.1 Sender rejected"),
                    };
                    reply(&mut stream, &text).await?;
                    if code == 421 {
                        return Ok(());
                    }
                    continue;
                }
                match path_argument(&argument, "FROM:") {
                    Some(from) => {
                        state.mail_from = Some(from);
                        reply(&mut stream, "250 2.1.0 Ok").await?;
                    }
                    None => reply(&mut stream, "501 5.5.4 Syntax: MAIL FROM:<address>").await?,
                }
            }
            "RCPT" => {
                if state.mail_from.is_none() {
                    reply(&mut stream, "503 5.5.1 Error: need MAIL command").await?;
                    continue;
                }
                let Some(to) = path_argument(&argument, "TO:").filter(|t| !t.is_empty()) else {
                    reply(&mut stream, "501 5.5.4 Syntax: RCPT TO:<address>").await?;
                    continue;
                };
                let rejected = {
                    let switches = shared.switches.lock();
                    switches.reject_all_recipients
                        || switches
                            .rejected_recipients
                            .contains(&to.to_ascii_lowercase())
                };
                if rejected {
                    reply(&mut stream, &format!("550 5.1.1 <{to}>: Recipient address rejected: User unknown in local recipient table")).await?;
                } else {
                    state.rcpt_to.push(to);
                    reply(&mut stream, "250 2.1.5 Ok").await?;
                }
            }
            "DATA" => {
                if state.rcpt_to.is_empty() {
                    reply(&mut stream, "503 5.5.1 Error: need RCPT command").await?;
                    continue;
                }
                reply(&mut stream, "354 End data with <CR><LF>.<CR><LF>").await?;
                let data = match read_data(&mut stream).await? {
                    Some(data) => data,
                    None => {
                        reply(&mut stream, "552 5.3.4 Error: message file too big").await?;
                        state.reset();
                        continue;
                    }
                };
                let (delay, with_id) = {
                    let switches = shared.switches.lock();
                    (switches.delay, switches.queue_ids)
                };
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let queue_id = with_id
                    .then(|| uuid::Uuid::new_v4().simple().to_string()[..12].to_ascii_uppercase());
                shared.messages.lock().push(ReceivedMail {
                    received_at: Instant::now(),
                    received_at_system: SystemTime::now(),
                    client_name: state.client_name.clone().unwrap_or_default(),
                    authenticated_as: state.authenticated_as.clone(),
                    mail_from: state.mail_from.clone().unwrap_or_default(),
                    rcpt_to: state.rcpt_to.clone(),
                    data,
                    queue_id: queue_id.clone(),
                });
                state.reset();
                match queue_id {
                    Some(id) => {
                        reply(&mut stream, &format!("250 2.0.0 Ok: queued as {id}")).await?
                    }
                    None => reply(&mut stream, "250 2.0.0 Ok").await?,
                }
            }
            "RSET" => {
                state.reset();
                reply(&mut stream, "250 2.0.0 Ok").await?;
            }
            "NOOP" => reply(&mut stream, "250 2.0.0 Ok").await?,
            "QUIT" => {
                reply(&mut stream, "221 2.0.0 Bye").await?;
                return Ok(());
            }
            _ => reply(&mut stream, "502 5.5.2 Error: command not recognized").await?,
        }
    }
}

/// The message up to the lone `.`, dot-unstuffed; `None` when over [`MAX_MESSAGE_BYTES`]
/// (the rest is read and dropped).
async fn read_data(stream: &mut Lines) -> std::io::Result<Option<Vec<u8>>> {
    let mut data = Vec::new();
    let mut too_big = false;
    loop {
        let mut line = Vec::new();
        let read = (&mut *stream)
            .take(MAX_MESSAGE_BYTES as u64 + 2)
            .read_until(b'\n', &mut line)
            .await?;
        if read == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed during DATA",
            ));
        }
        let content = line
            .strip_suffix(b"\r\n")
            .or_else(|| line.strip_suffix(b"\n"))
            .unwrap_or(&line);
        if content == b"." {
            return Ok((!too_big).then_some(data));
        }
        let content = content.strip_prefix(b".").unwrap_or(content);
        if data.len() + content.len() + 2 > MAX_MESSAGE_BYTES {
            too_big = true;
            data.clear();
        }
        if !too_big {
            data.extend_from_slice(content);
            data.extend_from_slice(b"\r\n");
        }
    }
}

/// A client's answer to a `334` challenge.
async fn read_text(stream: &mut Lines) -> std::io::Result<String> {
    match read_line(stream).await? {
        Some(line) => Ok(String::from_utf8_lossy(&line).into_owned()),
        None => Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed during AUTH",
        )),
    }
}

async fn auth(
    stream: &mut Lines,
    shared: &Shared,
    state: &mut Session,
    argument: &str,
) -> std::io::Result<()> {
    let (credentials, mechanisms, refuse) = {
        let switches = shared.switches.lock();
        (
            switches.credentials.clone(),
            switches.mechanisms.clone(),
            switches.refuse_auth,
        )
    };
    let Some((expected_user, expected_password)) = credentials else {
        return reply(stream, "503 5.5.1 Error: authentication not enabled").await;
    };
    if state.client_name.is_none() {
        return reply(stream, "503 5.5.1 Error: send EHLO first").await;
    }
    if state.authenticated_as.is_some() {
        return reply(stream, "503 5.5.1 Error: already authenticated").await;
    }
    let (mechanism, initial) = match argument.split_once(' ') {
        Some((mechanism, initial)) => (
            mechanism.to_ascii_uppercase(),
            Some(initial.trim().to_owned()),
        ),
        None => (argument.to_ascii_uppercase(), None),
    };
    if !mechanisms.contains(&mechanism) {
        return reply(stream, "504 5.5.4 Unrecognized authentication type").await;
    }
    let (username, password) = match mechanism.as_str() {
        "PLAIN" => {
            let encoded = match initial {
                Some(initial) => initial,
                None => {
                    reply(stream, "334 ").await?;
                    read_text(stream).await?
                }
            };
            // authzid NUL authcid NUL password
            let decoded = decode(&encoded).unwrap_or_default();
            let mut parts = decoded.split('\0');
            let _authzid = parts.next();
            (
                parts.next().unwrap_or_default().to_owned(),
                parts.next().unwrap_or_default().to_owned(),
            )
        }
        "LOGIN" => {
            let user = match initial {
                Some(initial) => initial,
                None => {
                    reply(stream, "334 VXNlcm5hbWU6").await?;
                    read_text(stream).await?
                }
            };
            reply(stream, "334 UGFzc3dvcmQ6").await?;
            let password = read_text(stream).await?;
            (
                decode(&user).unwrap_or_default(),
                decode(&password).unwrap_or_default(),
            )
        }
        _ => return reply(stream, "504 5.5.4 Unrecognized authentication type").await,
    };
    let succeeded = !refuse && username == expected_user && password == expected_password;
    shared.auth_attempts.lock().push(AuthAttempt {
        mechanism,
        username: username.clone(),
        succeeded,
    });
    if succeeded {
        state.authenticated_as = Some(username);
        reply(stream, "235 2.7.0 Authentication successful").await
    } else {
        reply(
            stream,
            "535 5.7.8 Error: authentication failed: authentication failure",
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_arguments() {
        assert_eq!(
            path_argument("FROM:<a@b.c> SIZE=10", "FROM:").as_deref(),
            Some("a@b.c")
        );
        assert_eq!(
            path_argument("from: <a@b.c>", "FROM:").as_deref(),
            Some("a@b.c")
        );
        assert_eq!(path_argument("FROM:<>", "FROM:").as_deref(), Some(""));
        assert_eq!(path_argument("TO:a@b.c", "TO:"), None);
    }

    #[test]
    fn headers_unfold() {
        let mail = ReceivedMail {
            received_at: Instant::now(),
            received_at_system: SystemTime::now(),
            client_name: "x".into(),
            authenticated_as: None,
            mail_from: String::new(),
            rcpt_to: vec![],
            data: b"Subject: a\r\n b\r\nX-Id: 1\r\n\r\nbody\r\n".to_vec(),
            queue_id: None,
        };
        assert_eq!(mail.header("subject").as_deref(), Some("a b"));
        assert_eq!(mail.header("X-ID").as_deref(), Some("1"));
        assert_eq!(mail.header("missing"), None);
    }
}
