//! The fake SendGrid, SMTP relay and Twilio for `scripts/staging-check.sh`, in one process
//! on ephemeral ports, each primary failing so delivery goes through the fallback:
//! SendGrid answers `503` to its next 1000 sends (email falls back to SMTP), Twilio answers `503` to
//! the first `FAKES_TWILIO_FAILURES` sends (default 1: with one attempt per provider the
//! primary account fails and the secondary sends). Both Twilio accounts have test
//! credentials, as in `NOTIFY_MODE=sandbox`.
//!
//! Reads `SENDGRID_API_KEY`, `TWILIO_ACCOUNT_SID`, `TWILIO_AUTH_TOKEN`,
//! `TWILIO_SECONDARY_ACCOUNT_SID`, `TWILIO_SECONDARY_AUTH_TOKEN` (the values the backend
//! is given) and writes `sendgrid=URL`, `smtp=HOST:PORT`, `twilio=URL` to the file named by
//! `FAKES_READY_FILE` (atomically), then serves until killed. Never printed: the keys.

use std::process::ExitCode;

use gardien_fakes::{sendgrid::FakeSendGrid, smtp::FakeSmtp, twilio::FakeTwilio};

/// 503s the fake SendGrid answers before it would accept again.
const SENDGRID_FAILURES: usize = 1000;

fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

async fn serve() -> Result<(), String> {
    let ready = var("FAKES_READY_FILE")?;
    let twilio_failures: usize = std::env::var("FAKES_TWILIO_FAILURES")
        .unwrap_or_else(|_| "1".to_owned())
        .parse()
        .map_err(|e| format!("FAKES_TWILIO_FAILURES: {e}"))?;
    let sendgrid = FakeSendGrid::start().await;
    sendgrid.accept_key(&var("SENDGRID_API_KEY")?);
    // Every send of a run (a run sends one email; far more than any run sends).
    sendgrid.fail_next(SENDGRID_FAILURES, 503);
    let smtp = FakeSmtp::start().await;
    let twilio = FakeTwilio::start().await;
    twilio.add_test_account(&var("TWILIO_ACCOUNT_SID")?, &var("TWILIO_AUTH_TOKEN")?);
    twilio.add_test_account(
        &var("TWILIO_SECONDARY_ACCOUNT_SID")?,
        &var("TWILIO_SECONDARY_AUTH_TOKEN")?,
    );
    if twilio_failures > 0 {
        twilio.fail_next(twilio_failures, 503);
    }
    let lines = format!(
        "sendgrid={}\nsmtp={}:{}\ntwilio={}\n",
        sendgrid.base_url(),
        smtp.host(),
        smtp.port(),
        twilio.base_url()
    );
    let partial = format!("{ready}.partial");
    std::fs::write(&partial, lines).map_err(|e| format!("{partial}: {e}"))?;
    std::fs::rename(&partial, &ready).map_err(|e| format!("{ready}: {e}"))?;
    // Serves until killed; the fakes live as long as this future.
    std::future::pending::<()>().await;
    drop((sendgrid, smtp, twilio));
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match serve().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
