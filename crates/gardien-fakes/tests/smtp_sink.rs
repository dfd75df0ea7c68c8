//! The SMTP sink speaks SMTP: a raw client over TCP walks every command and switch.

use std::time::Duration;

use base64::Engine;
use gardien_fakes::smtp::FakeSmtp;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Client {
    stream: BufReader<TcpStream>,
}

impl Client {
    async fn connect(sink: &FakeSmtp) -> (Client, String) {
        let stream = TcpStream::connect(sink.addr()).await.expect("connect");
        let mut client = Client {
            stream: BufReader::new(stream),
        };
        let greeting = client.reply().await;
        (client, greeting)
    }

    /// A whole reply (every line of a multi-line one), lines joined by `\n`.
    async fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let read =
                tokio::time::timeout(Duration::from_secs(5), self.stream.read_line(&mut line))
                    .await
                    .expect("reply in time")
                    .expect("read");
            assert!(read > 0, "connection closed; got {lines:?}");
            let line = line.trim_end().to_owned();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines.join("\n");
            }
        }
    }

    async fn send(&mut self, line: &str) -> String {
        self.stream
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .expect("write");
        self.reply().await
    }
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test]
async fn a_whole_session_with_dot_unstuffing() {
    let sink = FakeSmtp::start().await;
    let (mut c, greeting) = Client::connect(&sink).await;
    assert!(greeting.starts_with("220 "), "{greeting}");
    assert!(c.send("MAIL FROM:<a@b.example>").await.starts_with("503"));
    let ehlo = c.send("EHLO client.example").await;
    assert!(ehlo.starts_with("250-"), "{ehlo}");
    assert!(
        ehlo.contains("8BITMIME") && !ehlo.contains("AUTH") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    assert!(c.send("NOOP").await.starts_with("250"));
    assert!(
        c.send("RCPT TO:<x@y.example>").await.starts_with("503"),
        "RCPT before MAIL"
    );
    assert!(c.send("DATA").await.starts_with("503"), "DATA before RCPT");
    assert!(c
        .send("MAIL FROM:<a@b.example> BODY=8BITMIME")
        .await
        .starts_with("250"));
    assert!(
        c.send("MAIL FROM:<a@b.example>").await.starts_with("503"),
        "nested MAIL"
    );
    assert!(c.send("RSET").await.starts_with("250"));
    assert!(
        c.send("RCPT TO:<x@y.example>").await.starts_with("503"),
        "RSET forgot MAIL"
    );
    assert!(c.send("MAIL FROM:<>").await.starts_with("250"));
    assert!(c.send("RCPT TO:<x@y.example>").await.starts_with("250"));
    assert!(c.send("RCPT TO:<z@y.example>").await.starts_with("250"));
    assert!(c.send("DATA").await.starts_with("354"));
    c.stream
        .get_mut()
        .write_all(b"Subject: hi\r\n\r\n..leading dot\r\n.\r\n")
        .await
        .expect("write");
    let queued = c.reply().await;
    assert!(queued.starts_with("250 2.0.0 Ok: queued as "), "{queued}");
    assert!(c.send("BOGUS").await.starts_with("502"));
    assert!(c.send("QUIT").await.starts_with("221"));

    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    let mail = &messages[0];
    assert_eq!(mail.client_name, "client.example");
    assert_eq!(mail.mail_from, "");
    assert_eq!(mail.rcpt_to, ["x@y.example", "z@y.example"]);
    assert_eq!(mail.data, b"Subject: hi\r\n\r\n.leading dot\r\n");
    assert_eq!(mail.header("subject").as_deref(), Some("hi"));
    assert_eq!(queued.rsplit(' ').next(), mail.queue_id.as_deref());
    assert_eq!(sink.connections(), 1);
}

#[tokio::test]
async fn auth_plain_and_login_and_refusals() {
    let sink = FakeSmtp::start().await;
    sink.require_auth("user", "pa55word");
    let (mut c, _) = Client::connect(&sink).await;
    let ehlo = c.send("HELO client.example").await;
    assert!(ehlo.starts_with("250 "), "{ehlo}");
    assert!(c.send("MAIL FROM:<a@b.example>").await.starts_with("530"));
    assert!(c
        .send(&format!("AUTH PLAIN {}", b64("\0user\0wrong")))
        .await
        .starts_with("535"));
    assert!(c.send("AUTH CRAM-MD5").await.starts_with("504"));
    assert!(c
        .send(&format!("AUTH PLAIN {}", b64("\0user\0pa55word")))
        .await
        .starts_with("235"));
    assert!(
        c.send("AUTH PLAIN x").await.starts_with("503"),
        "already authenticated"
    );
    assert!(c.send("MAIL FROM:<a@b.example>").await.starts_with("250"));

    let (mut c, _) = Client::connect(&sink).await;
    assert!(c
        .send("EHLO client.example")
        .await
        .contains("AUTH PLAIN LOGIN"));
    assert_eq!(c.send("AUTH LOGIN").await, "334 VXNlcm5hbWU6");
    assert_eq!(c.send(&b64("user")).await, "334 UGFzc3dvcmQ6");
    assert!(c.send(&b64("pa55word")).await.starts_with("235"));

    sink.refuse_auth(true);
    let (mut c, _) = Client::connect(&sink).await;
    c.send("EHLO client.example").await;
    assert!(c
        .send(&format!("AUTH PLAIN {}", b64("\0user\0pa55word")))
        .await
        .starts_with("535"));

    let attempts: Vec<(String, bool)> = sink
        .auth_attempts()
        .into_iter()
        .map(|a| (a.mechanism, a.succeeded))
        .collect();
    assert_eq!(
        attempts,
        [
            ("PLAIN".to_owned(), false),
            ("PLAIN".to_owned(), true),
            ("LOGIN".to_owned(), true),
            ("PLAIN".to_owned(), false),
        ]
    );
}

#[tokio::test]
async fn switches_refuse_recipients_fail_mail_and_go_down() {
    let sink = FakeSmtp::start().await;
    sink.reject_recipient("Gone@Example.com");
    sink.fail_next_mail(1, 451);
    let (mut c, _) = Client::connect(&sink).await;
    c.send("EHLO client.example").await;
    assert!(c.send("MAIL FROM:<a@b.example>").await.starts_with("451"));
    assert!(c.send("MAIL FROM:<a@b.example>").await.starts_with("250"));
    assert!(c
        .send("RCPT TO:<gone@example.com>")
        .await
        .starts_with("550 5.1.1"));
    sink.reject_all_recipients(true);
    assert!(c.send("RCPT TO:<ok@example.com>").await.starts_with("550"));
    sink.reject_all_recipients(false);
    assert!(c.send("RCPT TO:<ok@example.com>").await.starts_with("250"));

    sink.fail_next_mail(1, 421);
    let (mut c, _) = Client::connect(&sink).await;
    c.send("EHLO client.example").await;
    assert!(c.send("MAIL FROM:<a@b.example>").await.starts_with("421"));
    let mut rest = String::new();
    assert_eq!(
        c.stream.read_line(&mut rest).await.expect("read"),
        0,
        "421 closes"
    );

    sink.refuse_next_connections(1);
    let (_, greeting) = Client::connect(&sink).await;
    assert!(greeting.starts_with("421"), "{greeting}");

    let addr = sink.addr();
    sink.go_down().await;
    let refused = TcpStream::connect(addr).await.expect_err("down");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    sink.come_back().await;
    let (_, greeting) = Client::connect(&sink).await;
    assert!(greeting.starts_with("220"));
}
