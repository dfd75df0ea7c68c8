//! `gardien-staging-check`: runs every critical flow of a gardien deployment through its
//! public URL and prints one line per flow (`ok`, `FAIL` with the reason, or `skip` with
//! why), then exits 1 if any failed. `scripts/staging-check.sh` (`make staging-check`) starts
//! the whole stack locally in its staging shape and runs it with the local handles; against a
//! deployed staging, the flows that need local control are skipped (docs/RUNBOOK.md).

mod flows;
mod http;
mod runner;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use flows::{backend, browser, delivery, limits, origin, tokens, Context, User};
use runner::Runner;

/// Validates a gardien deployment end to end.
#[derive(Debug, Parser)]
#[command(name = "gardien-staging-check", version)]
struct Args {
    /// gardien's public URL (`https://staging.example.com`).
    #[arg(long, env = "STAGING_BASE_URL")]
    base_url: String,
    /// The frontend origin the policy allows (`FRONTEND_URL`).
    #[arg(long, env = "STAGING_ORIGIN")]
    origin: String,
    /// An origin the policy must refuse.
    #[arg(
        long,
        env = "STAGING_REFUSED_ORIGIN",
        default_value = "https://evil.example"
    )]
    refused_origin: String,
    /// Local control: gardien-backend's own URL, to prove it refuses callers that bypass
    /// gardien. Without it that flow is skipped.
    #[arg(long, env = "STAGING_BACKEND_URL")]
    backend_url: Option<String>,
    /// Local control: the identity provider's RSA signing key (PEM), to mint an expired
    /// token. Without it that flow is skipped.
    #[arg(long, env = "STAGING_SIGNING_KEY")]
    signing_key: Option<PathBuf>,
    /// An admin's email, for the template flow (skipped without it).
    #[arg(long, env = "STAGING_ADMIN_EMAIL")]
    admin_email: Option<String>,
    /// That admin's password (read from the environment; never printed).
    #[arg(long, env = "STAGING_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    /// Sign the admin up first (local: the demo API makes `DEMO_ADMINS` admins).
    #[arg(long)]
    sign_up_admin: bool,
    /// Local control: the primary email and sms providers fail, so the delivery flow
    /// requires the fallbacks (`smtp`, `twilio-secondary`) to have delivered.
    #[arg(long)]
    expect_fallback: bool,
    /// Local control: drive headless Chromium (Debian's `chromium` and `chromium-driver`)
    /// on `--origin` and `--refused-origin`, which must both serve the test frontend page
    /// (`gardien-test-frontend`). Without it the browser flow is skipped.
    #[arg(long)]
    browser: bool,
    /// The phone number the sms goes to (a test number of the provider's sandbox).
    #[arg(long, env = "STAGING_PHONE", default_value = "+14155550123")]
    phone: String,
    /// Requests of the load run.
    #[arg(long, default_value_t = 100)]
    load_requests: usize,
    /// Requests per second of the load run; keep it under the policy's per-user rate.
    #[arg(long, default_value_t = 20)]
    load_rate: u32,
    /// Share of the load run's requests that may fail (0.01: 1%).
    #[arg(long, default_value_t = 0.01)]
    load_error_budget: f64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let client = match http::client() {
        Ok(client) => client,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let admin = match (args.admin_email, args.admin_password) {
        (Some(email), Some(password)) => Some(User {
            email,
            password,
            ..User::default()
        }),
        _ => None,
    };
    let mut ctx = Context {
        client,
        base: args.base_url.trim_end_matches('/').to_owned(),
        origin: args.origin.trim_end_matches('/').to_owned(),
        refused_origin: args.refused_origin,
        backend_url: args.backend_url,
        signing_key: args.signing_key,
        admin,
        load_requests: args.load_requests,
        load_rate: args.load_rate,
        load_error_budget: args.load_error_budget,
        expect_fallback: args.expect_fallback,
        phone: args.phone,
        browser: args.browser,
        alice: User::default(),
        bob: User::default(),
    };
    let mut runner = Runner::default();
    run_all(&mut runner, &mut ctx, args.sign_up_admin).await;
    if runner.finish() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Every flow, in an order where each one's state is ready: sign-up before the flows that
/// need users, the brute-force limit last (it locks this address out of login for a while).
async fn run_all(runner: &mut Runner, ctx: &mut Context, sign_up_admin: bool) {
    runner
        .run("refused_origin", origin::refused_origin(ctx))
        .await;
    if !runner
        .run("signup_login", origin::sign_up_and_login(ctx))
        .await
    {
        runner.skip("(the rest)", "needs a signed-up user");
        return;
    }
    runner.run("me", tokens::me(ctx)).await;
    runner
        .run("spoofed_identity", tokens::spoofed_identity(ctx))
        .await;
    runner.run("forged_token", tokens::forged_token(ctx)).await;
    if ctx.signing_key.is_some() {
        runner
            .run("expired_token", tokens::expired_token(ctx))
            .await;
    } else {
        runner.skip("expired_token", "needs --signing-key (local control)");
    }
    runner
        .run("preferences_etag", backend::preferences_etag(ctx))
        .await;
    runner.run("reports", backend::reports(ctx)).await;
    match ctx.admin.clone() {
        Some(mut admin) => {
            let signed_up = if sign_up_admin {
                runner
                    .run("admin_signup", async { ctx.sign_up(&mut admin).await })
                    .await
            } else {
                true
            };
            if signed_up {
                runner
                    .run("template_preview", backend::template_preview(ctx))
                    .await;
                runner
                    .run("email_sms_fallback", delivery::email_and_sms(ctx))
                    .await;
            }
        }
        None => {
            for name in ["template_preview", "email_sms_fallback"] {
                runner.skip(name, "needs STAGING_ADMIN_EMAIL and STAGING_ADMIN_PASSWORD");
            }
        }
    }
    if ctx.backend_url.is_some() {
        runner
            .run(
                "backend_bypass_refused",
                backend::backend_bypass_refused(ctx),
            )
            .await;
    } else {
        runner.skip(
            "backend_bypass_refused",
            "needs --backend-url (local control)",
        );
    }
    if ctx.browser {
        runner
            .run("browser_signup_login", browser::sign_up_and_login(ctx))
            .await;
    } else {
        runner.skip(
            "browser_signup_login",
            "needs --browser: both origins serving gardien-test-frontend, and Chromium (local control)",
        );
    }
    runner.run("load", limits::load(ctx)).await;
    runner
        .run("login_brute_force", limits::login_brute_force(ctx))
        .await;
}
