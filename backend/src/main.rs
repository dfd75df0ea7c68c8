//! The `gardien-backend` command: `serve` (the default) or `migrate`. Thin: everything else
//! lives in the library.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use gardien_backend::config::{redact_url, Cli, Command};
use gardien_backend::db::{Db, PoolSettings};
use gardien_backend::delivery::circuit::Circuits;
use gardien_backend::delivery::provider::Channel;
use gardien_backend::delivery::providers::{ProcessEnv, ProvidersConfig};
use gardien_backend::delivery::registry::Providers;
use gardien_backend::delivery::start_workers;
use gardien_backend::metrics::Metrics;
use gardien_backend::{app, AppState};
use gardien_secrets::{Secret, SecretLookup};

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let options = cli.options;
    let problems = options.problems();
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("error: {problem}");
        }
        eprintln!("{} problem(s); nothing was started", problems.len());
        return ExitCode::FAILURE;
    }
    let settings = PoolSettings {
        max_connections: options.max_connections,
        min_connections: options.min_connections,
        acquire_timeout: options.acquire_timeout,
        idle_timeout: options.idle_timeout,
    };
    let database = redact_url(&options.database_url);
    let db = match Db::connect(&options.database_url, settings).await {
        Ok(db) => db,
        Err(e) => {
            eprintln!("error: cannot connect to {database}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = db.migrate().await {
        eprintln!("error: migrations failed on {database}: {e}");
        return ExitCode::FAILURE;
    }
    if matches!(cli.command, Some(Command::Migrate)) {
        println!("migrations applied to {database}");
        return ExitCode::SUCCESS;
    }
    if options.internal_secret.is_none() {
        tracing::warn!("GARDIEN_INTERNAL_SECRET is not set: identity headers are trusted without gardien's signature (development only)");
    }
    let metrics = match Metrics::new() {
        Ok(m) => Arc::new(m),
        Err(e) => {
            eprintln!("error: metrics: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listen = options.listen;
    let environment = std::env::var("GARDIEN_ENVIRONMENT").unwrap_or_else(|_| "production".into());
    let mode = options.delivery.mode_for(|e| e == environment);
    let provider_settings = match ProvidersConfig::from_env(&ProcessEnv) {
        Ok(settings) => settings,
        Err(problems) => {
            for problem in &problems.0 {
                eprintln!("error: {problem}");
            }
            eprintln!("{} problem(s); nothing was started", problems.0.len());
            return ExitCode::FAILURE;
        }
    };
    // TODO(secrets): read through the secret chain once it lands.
    let secrets: Arc<dyn SecretLookup> = Arc::new(
        [
            "SENDGRID_API_KEY",
            "TWILIO_ACCOUNT_SID",
            "TWILIO_AUTH_TOKEN",
            "TWILIO_SECONDARY_ACCOUNT_SID",
            "TWILIO_SECONDARY_AUTH_TOKEN",
            "SMTP_USERNAME",
            "SMTP_PASSWORD",
        ]
        .into_iter()
        .filter_map(|name| {
            std::env::var(name)
                .ok()
                .map(|v| (name.to_owned(), Secret::new(v)))
        })
        .collect::<std::collections::HashMap<_, _>>(),
    );
    let providers = match Providers::build(&options.delivery, mode, &provider_settings, &secrets) {
        Ok(providers) => Arc::new(providers),
        Err(problems) => {
            for problem in &problems {
                eprintln!("error: {problem}");
            }
            eprintln!("{} problem(s); nothing was started", problems.len());
            return ExitCode::FAILURE;
        }
    };
    for channel in Channel::ALL {
        if providers.for_channel(channel).is_empty() {
            tracing::warn!(
                channel = channel.name(),
                "no provider is configured for this channel: its notifications will fail"
            );
        }
    }
    tracing::info!(mode = mode.name(), providers = ?providers.names(), "delivery");
    let circuits = Arc::new(Circuits::new(
        providers.names(),
        options.delivery.circuit_cooldown,
        options.delivery.circuit_failures,
    ));
    for name in providers.names() {
        metrics.circuit(name, "closed");
    }
    let outbox = Arc::new(tokio::sync::Notify::new());
    let workers = start_workers(
        &options.delivery,
        &db,
        Arc::clone(&providers),
        Arc::clone(&circuits),
        Arc::clone(&metrics),
        Arc::clone(&outbox),
    );
    let state = AppState {
        db,
        options: Arc::new(options),
        metrics,
        outbox,
        circuits,
    };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let address = listener.local_addr().map_or(listen, |a| a);
    println!("gardien-backend listening on http://{address}");
    tracing::info!(%address, %database, "gardien-backend started");
    let served = axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown())
        .await;
    // Attempts in flight finish and are recorded; claimed rows not started go back.
    workers.stop().await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown() {
    let terminate = async {
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            signal.recv().await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

/// Logs to stderr; `RUST_LOG` filters (default `info`), `LOG_FORMAT=json` for JSON lines.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if std::env::var("LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
