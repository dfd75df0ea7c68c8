//! The `gardien-backend` command: `serve` (the default), `migrate [up [--dry-run]|status]`,
//! `check`, `report-test` or `env-docs`. Thin:
//! everything else lives in the library.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use gardien_backend::config::{
    describe_database, redact_url, Cli, Command, EnvDocsFormat, Environment, MigrateAction,
};
use gardien_backend::db::{Db, PoolSettings};
use gardien_backend::delivery::circuit::Circuits;
use gardien_backend::delivery::config::DeliveryOptions;
use gardien_backend::delivery::provider::Channel;
use gardien_backend::delivery::providers::{ProcessEnv, ProvidersConfig};
use gardien_backend::delivery::registry::Providers;
use gardien_backend::delivery::{
    channel_problems, channel_report, channel_state, secret_requirements, start_workers,
    ChannelState,
};
use gardien_backend::metrics::Metrics;
use gardien_backend::migrations;
use gardien_backend::{app, AppState};
use gardien_backend::{logging, ready, secrets};
use gardien_secrets::SecretLookup;

#[tokio::main]
async fn main() -> ExitCode {
    let log_settings = logging::init();
    let cli = Cli::parse();
    if let Some(Command::EnvDocs { format }) = cli.command {
        // Documentation only: no secret, database or environment is looked at.
        print!(
            "{}",
            match format {
                EnvDocsFormat::Table => gardien_backend::env_docs::table(),
                EnvDocsFormat::Markdown => gardien_backend::env_docs::markdown_block(),
            }
        );
        return ExitCode::SUCCESS;
    }
    let mut options = cli.options;
    let environment = options.environment;
    let database_given = options.database_url.is_some();
    let serve = matches!(cli.command, None | Some(Command::Serve));
    let migrating = matches!(cli.command, Some(Command::Migrate { .. }));
    if let (true, Some(path)) = (serve, &options.ready_file) {
        // A waiter must not read the address of a previous run (`check` and `migrate`
        // leave the file of a running service alone).
        if let Err(e) = ready::clear(path) {
            eprintln!(
                "error: cannot remove the old ready file {}: {e}",
                path.display()
            );
            return ExitCode::FAILURE;
        }
    }

    let store = match gardien_secrets::SecretStore::for_process(environment) {
        Ok(store) => store,
        Err(problems) => {
            for problem in &problems {
                eprintln!("error: {problem}");
            }
            eprintln!(
                "{} problem(s) in the secrets configuration; nothing was started",
                problems.len()
            );
            return ExitCode::FAILURE;
        }
    };
    // Delivery: the mode, then the providers it sends through; their credentials are
    // resolved, reported and refreshed with the other secrets.
    let mut problems = Vec::new();
    let mode = options.delivery.mode_for(environment);
    let lookup: Arc<dyn SecretLookup> = store.clone();
    let providers = match ProvidersConfig::from_env(&ProcessEnv) {
        Ok(settings) => match Providers::build(&options.delivery, mode, &settings, &lookup) {
            Ok(providers) => {
                // A migration needs the database only: a release's migration job carries no
                // delivery settings, and a channel without a provider does not stop it.
                if !migrating {
                    problems.extend(channel_problems(&options.delivery, &providers, environment));
                }
                providers
            }
            Err(found) => {
                problems.extend(found);
                Providers::default()
            }
        },
        Err(found) => {
            problems.extend(found.0);
            Providers::default()
        }
    };
    let delivery_secrets = secret_requirements(&providers, mode, environment);
    let report = store
        .require(secrets::requirements(
            environment,
            database_given,
            delivery_secrets,
        ))
        .await;
    if options.database_url.is_none() {
        if let Some(url) = store.get(secrets::DATABASE_URL) {
            match String::from_utf8(url.expose().to_vec()) {
                Ok(url) => options.database_url = Some(url.trim().to_owned()),
                Err(_) => problems.push("DATABASE_URL: the secret is not UTF-8 text".to_owned()),
            }
        }
    }
    problems.extend(options.problems());
    problems.extend(secrets::problems(environment, &*store));
    if options.identity_rotation_window.is_none() {
        options.identity_rotation_window =
            Some(gardien_identity::rotation::default_verifying_window(
                store.refresh_interval(),
                options.identity_window,
            ));
    }
    let database = database_line(&options, database_given);

    if matches!(cli.command, Some(Command::Check)) {
        for line in report.lines() {
            println!("{line}");
        }
        println!("{database}");
        for channel in Channel::ALL {
            println!("{}", channel_report(&options.delivery, &providers, channel));
        }
        for line in report.error_lines() {
            eprintln!("{line}");
        }
        for problem in &problems {
            eprintln!("error: {problem}");
        }
        if let Err(e) = gardien_backend::error_reports::check(&store) {
            problems.push(e.to_string());
            eprintln!("error: {e}");
        }
        if report.is_complete() && problems.is_empty() {
            println!(
                "ok: gardien-backend ({environment}): database {}; notifications: {} mode, {}, {}",
                redact_url(options.database_url()),
                mode.name(),
                names(&options.delivery, &providers, Channel::Email),
                names(&options.delivery, &providers, Channel::Sms),
            );
            return ExitCode::SUCCESS;
        }
        return ExitCode::FAILURE;
    }

    if let Some(Command::ReportTest { panic }) = &cli.command {
        return report_test(&store, environment, *panic);
    }

    for line in report.lines() {
        tracing::info!("{line}");
    }
    tracing::info!("{database}");
    let migrate = match cli.command {
        Some(Command::Migrate { action }) => {
            Some(action.unwrap_or(MigrateAction::Up { dry_run: false }))
        }
        _ => None,
    };
    let serving = migrate.is_none();
    if !serving && environment == Environment::Production && options.database_url.is_none() {
        problems.push(
            "DATABASE_URL: required in production (the secret, or --database-url); nothing to migrate"
                .to_owned(),
        );
    }
    if serving && !report.is_complete() {
        if environment != Environment::Dev {
            for line in report.error_lines() {
                eprintln!("{line}");
            }
            for problem in &problems {
                eprintln!("error: {problem}");
            }
            eprintln!(
                "{} required secret(s) missing in {environment}; nothing was started",
                report.missing().len()
            );
            return ExitCode::FAILURE;
        }
        for line in report.error_lines() {
            tracing::warn!("{line}");
        }
    }
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
    let database = redact_url(options.database_url());
    let db = match Db::connect(options.database_url(), settings).await {
        Ok(db) => db,
        Err(e) => {
            eprintln!("error: cannot connect to {database}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(action) = migrate {
        return migrate_command(&db, action, &database).await;
    }
    match migrations::up(&db).await {
        Ok(before) => {
            for entry in before.newer() {
                tracing::warn!(
                    version = migrations::version(entry.version),
                    description = entry.description.as_str(),
                    "a migration applied by a newer release (unknown to this binary)"
                );
            }
        }
        Err(e) => {
            eprintln!("error: migrations failed on {database}: {e}");
            return ExitCode::FAILURE;
        }
    }
    if store.get(secrets::INTERNAL_SECRET).is_none() {
        tracing::warn!("GARDIEN_INTERNAL_SECRET is not set: identity headers are trusted without gardien's signature (development only)");
    }
    // Before the workers and the listener start, so a panic in any task is reported.
    let _reporting = match gardien_backend::error_reports::start(&store, environment) {
        Ok(Some(guard)) => {
            tracing::info!(
                release = gardien_backend::error_reports::release().as_str(),
                "error reports go to Sentry"
            );
            Some(guard)
        }
        Ok(None) => None,
        Err(e) => {
            eprintln!("error: {e}; nothing was started");
            return ExitCode::FAILURE;
        }
    };
    let metrics = match Metrics::new() {
        Ok(m) => Arc::new(m),
        Err(e) => {
            eprintln!("error: metrics: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Secrets are looked up again every SECRETS_REFRESH_INTERVAL; handlers read the store
    // at each use.
    let refresh = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.keep_fresh().await })
    };
    let listen = options.listen;
    let ready_file = options.ready_file.clone();
    for channel in Channel::ALL {
        let line = channel_report(&options.delivery, &providers, channel);
        if providers.for_channel(channel).is_empty() && !options.delivery.channel_off(channel) {
            // Only in dev: elsewhere the start was refused.
            tracing::warn!("{line}: its notifications will fail (providers_exhausted)");
        } else {
            tracing::info!("{line}");
        }
    }
    tracing::info!(mode = mode.name(), providers = ?providers.names(), "delivery");
    let providers = Arc::new(providers);
    let circuits = Arc::new(Circuits::new(
        providers.names(),
        options.delivery.circuit_cooldown,
        options.delivery.circuit_failures,
    ));
    for name in providers.names() {
        metrics.circuit(name, "closed");
    }
    let outbox_metrics = tokio::spawn(gardien_backend::metrics::keep_outbox_fresh(
        Arc::clone(&metrics),
        db.clone(),
        gardien_backend::metrics::OUTBOX_REFRESH,
    ));
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
        secrets: store,
    };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let address = listener.local_addr().map_or(listen, |a| a);
    // In JSON mode every line is a log entry: the address is in the line below.
    if !log_settings.json {
        println!("gardien-backend listening on http://{address}");
    }
    tracing::info!(%address, %database, %environment, "gardien-backend started");
    if let Some(path) = &ready_file {
        if let Err(e) = ready::write(path, address) {
            eprintln!("error: cannot write the ready file {}: {e}", path.display());
            workers.stop().await;
            refresh.abort();
            return ExitCode::FAILURE;
        }
    }
    let served = axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown())
        .await;
    // Attempts in flight finish and are recorded; claimed rows not started go back.
    workers.stop().await;
    refresh.abort();
    outbox_metrics.abort();
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `migrate [up]`, `migrate up --dry-run`, `migrate status`: 0 when done (or, for status
/// and the dry run, when nothing is wrong), 1 on a checksum mismatch, a failed migration,
/// or a database error.
async fn migrate_command(db: &Db, action: MigrateAction, database: &str) -> ExitCode {
    let status = match migrations::status(db).await {
        Ok(status) => status,
        Err(e) => {
            eprintln!("error: cannot read the migrations applied to {database}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let problems = status.problems();
    let pending = status.pending().count();
    match action {
        MigrateAction::Status => {
            println!(
                "migrations on {database}: {} embedded, {pending} pending",
                migrations::MIGRATOR.iter().count()
            );
            for line in status.lines() {
                println!("{line}");
            }
        }
        MigrateAction::Up { dry_run: true } => {
            if problems.is_empty() {
                if pending == 0 {
                    println!("nothing to apply: {database} is up to date");
                }
                for line in migrations::dry_run_lines(&status) {
                    println!("{line}");
                }
                println!("dry run: {pending} migration(s) would be applied to {database}; nothing was changed");
            }
        }
        MigrateAction::Up { dry_run: false } => {
            if problems.is_empty() {
                return match migrations::up(db).await {
                    Ok(before) => {
                        for entry in before.newer() {
                            println!(
                                "note: {} {} was applied by a newer release (unknown to this binary)",
                                migrations::version(entry.version),
                                entry.description
                            );
                        }
                        println!("migrations applied to {database} ({pending} were pending)");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("error: migrations failed on {database}: {e}");
                        ExitCode::FAILURE
                    }
                };
            }
        }
    }
    for problem in &problems {
        eprintln!("error: {problem}");
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "{} problem(s) in the migrations of {database}; nothing was applied",
            problems.len()
        );
        ExitCode::FAILURE
    }
}

/// A channel's providers, for the `check` ok line: `email via sendgrid, smtp`, `email off
/// (NOTIFY_EMAIL_PROVIDERS=none)`.
fn names(options: &DeliveryOptions, providers: &Providers, channel: Channel) -> String {
    let channel_name = channel.name();
    match channel_state(options, providers, channel) {
        ChannelState::Off => format!(
            "{channel_name} off ({})",
            ChannelState::off_setting(channel)
        ),
        ChannelState::Unconfigured => format!("{channel_name} via nothing (not configured)"),
        ChannelState::Providers(names) => format!("{channel_name} via {}", names.join(", ")),
    }
}

/// `database: <engine and where> (<where the URL came from>)`, never a credential.
fn database_line(options: &gardien_backend::config::Options, flag: bool) -> String {
    match (&options.database_url, flag) {
        (Some(url), true) => format!("database: {} (--database-url)", describe_database(url)),
        (Some(url), false) => format!(
            "database: {} (the DATABASE_URL secret)",
            describe_database(url)
        ),
        (None, _) if options.environment == Environment::Production => {
            "database: none (DATABASE_URL is required in production)".to_owned()
        }
        (None, _) => format!(
            "database: {} (the default: no DATABASE_URL)",
            describe_database(options.database_url())
        ),
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

/// `gardien-backend report-test`: one test event, and with `--panic` a deliberate panic on a
/// thread of its own (as a panic in a handler or a worker would be), sent to the project of
/// `SENTRY_DSN`.
fn report_test(
    store: &Arc<gardien_secrets::SecretStore>,
    environment: Environment,
    panic: bool,
) -> ExitCode {
    let guard = match gardien_backend::error_reports::start(store, environment) {
        Ok(Some(guard)) => guard,
        Ok(None) => {
            eprintln!("error: SENTRY_DSN is not set: nothing to test");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    use gardien_telemetry::error_reporting::{flush, report, Report};
    report("report_test", "", || {
        Report::warning("gardien-backend report-test: error reports reach this project")
    });
    if panic {
        let _ = std::thread::spawn(|| {
            panic!("gardien-backend report-test --panic: a deliberate panic")
        })
        .join();
    }
    flush(std::time::Duration::from_secs(5));
    drop(guard);
    println!(
        "sent: a test event{}",
        if panic { " and a panic" } else { "" }
    );
    ExitCode::SUCCESS
}
