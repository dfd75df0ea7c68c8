//! The `gardien` command: `run` serves a policy, `check` validates one, `env-docs` lists
//! the variables it reads. Thin on purpose: everything else lives in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use gardien::policy::{self, Environment, PolicyError, Problem, ProcessEnv};
use gardien::secrets::{self, Report, SecretStore};

const DEFAULT_POLICY: &str = "policies/dev.yaml";

/// mimalloc instead of glibc's allocator: a proxy allocates and frees header maps and
/// buffers for every request, and glibc's malloc showed as ~13% of the gateway's CPU under
/// load (`perf`); see docs/BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "gardien", version, about = "An edge gateway on Pingora")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy and the admin listener.
    Run {
        /// The policy file to serve.
        #[arg(long, default_value = DEFAULT_POLICY)]
        policy: PathBuf,
        /// Once both listeners accept connections, write their addresses here (atomically):
        /// `listen=IP:PORT` and `admin_listen=IP:PORT` lines. With port 0 in the policy,
        /// this is how a supervisor or a test learns the ports.
        #[arg(long, env = gardien::env_docs::GARDIEN_READY_FILE.name)]
        ready_file: Option<PathBuf>,
        /// Take over the listening sockets of the gardien running with the same `listen`
        /// and `admin_listen` (send it SIGQUIT once this one has started): it hands them
        /// over and drains, and no connection is refused (docs/RUNBOOK.md).
        #[arg(long)]
        upgrade: bool,
        /// The unix socket the sockets go through on an upgrade; both processes must use
        /// the same. Default `/tmp/gardien-upgrade-<listen port>.sock`.
        #[arg(long, value_name = "PATH")]
        upgrade_socket: Option<PathBuf>,
    },
    /// Validate a policy and the environment it reads; list every problem.
    Check {
        /// The policy file to check.
        #[arg(long, default_value = DEFAULT_POLICY)]
        policy: PathBuf,
    },
    /// Send a test event (and with `--panic`, a panic) to the Sentry project of `SENTRY_DSN`.
    ReportTest {
        /// The policy whose environment and secrets to use.
        #[arg(long, default_value = DEFAULT_POLICY)]
        policy: PathBuf,
        /// Also panic on purpose, to see a panic reported.
        #[arg(long)]
        panic: bool,
    },
    /// Print every environment variable gardien and its shipped policies read, with its
    /// default per environment and its meaning (docs/ENVIRONMENT.md is made from it).
    EnvDocs {
        /// `table` for a terminal, `markdown` for docs/ENVIRONMENT.md's generated block.
        #[arg(long, value_enum, default_value_t = EnvDocsFormat::Table)]
        format: EnvDocsFormat,
    },
}

/// How `gardien env-docs` prints.
#[derive(Clone, Copy, clap::ValueEnum)]
enum EnvDocsFormat {
    Table,
    Markdown,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check { policy } => check(&policy),
        Command::Run {
            policy,
            ready_file,
            upgrade,
            upgrade_socket,
        } => run(
            &policy,
            ready_file,
            gardien::server::Takeover {
                upgrade,
                socket: upgrade_socket,
            },
        ),
        Command::ReportTest { policy, panic } => report_test(&policy, panic),
        Command::EnvDocs { format } => {
            print!(
                "{}",
                match format {
                    EnvDocsFormat::Table => gardien::env_docs::table(),
                    EnvDocsFormat::Markdown => gardien::env_docs::markdown_block(),
                }
            );
            ExitCode::SUCCESS
        }
    }
}

/// The secrets a policy needs, looked up through the chain (docs/SECRETS.md).
struct Resolved {
    environment: Environment,
    store: Arc<SecretStore>,
    report: Report,
}

/// Resolves what the policy at `path` needs. `Ok(None)`: the file cannot be read as YAML
/// (loading it says why); `Err`: the secrets configuration itself is wrong.
fn resolve_secrets(path: &Path) -> Result<Option<Resolved>, Vec<String>> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(None);
    };
    let Some((environment, requirements)) = secrets::policy_requirements(&text, &ProcessEnv) else {
        return Ok(None);
    };
    let store = gardien_secrets::SecretStore::for_process(environment)?;
    // A runtime of its own for the lookups: Pingora starts its runtimes later.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| vec![format!("cannot start the runtime for secret lookups: {e}")])?;
    let report = runtime.block_on(store.require(requirements));
    Ok(Some(Resolved {
        environment,
        store,
        report,
    }))
}

fn check(path: &Path) -> ExitCode {
    let (resolved, configuration_ok) = match resolve_secrets(path) {
        Ok(resolved) => (resolved, true),
        Err(problems) => {
            for problem in problems {
                eprintln!("error: {problem}");
            }
            (None, false)
        }
    };
    let mut secrets_ok = configuration_ok;
    if let Some(resolved) = &resolved {
        for line in resolved.report.lines() {
            println!("{line}");
        }
        for line in resolved.report.error_lines() {
            eprintln!("{line}");
        }
        secrets_ok &= resolved.report.is_complete();
        if let Err(e) = gardien::error_reports::check(&resolved.store) {
            eprintln!("error: {e}");
            secrets_ok = false;
        }
    }
    let loaded = match &resolved {
        Some(resolved) => policy::load_file_with_secrets(path, &ProcessEnv, &*resolved.store),
        None => policy::load_file(path, &ProcessEnv),
    };
    match loaded {
        Ok(loaded) if secrets_ok => {
            print_warnings(&loaded.warnings);
            println!("ok: {}: {}", path.display(), loaded.policy.summary());
            ExitCode::SUCCESS
        }
        Ok(loaded) => {
            print_warnings(&loaded.warnings);
            eprintln!("{}: refused: see the secrets above", path.display());
            ExitCode::FAILURE
        }
        Err(error) => {
            print_refusal(path, &error);
            ExitCode::FAILURE
        }
    }
}

fn run(path: &Path, ready_file: Option<PathBuf>, takeover: gardien::server::Takeover) -> ExitCode {
    init_logging();
    let resolved = match resolve_secrets(path) {
        Ok(Some(resolved)) => resolved,
        Ok(None) => {
            // Not YAML, or not readable: loading says why.
            if let Err(error) = policy::load_file(path, &ProcessEnv) {
                print_refusal(path, &error);
            } else {
                eprintln!("error: {}: cannot be read", path.display());
            }
            return ExitCode::FAILURE;
        }
        Err(problems) => {
            for problem in &problems {
                eprintln!("error: {problem}");
            }
            eprintln!(
                "{}: {} problem(s) in the secrets configuration; nothing was started",
                path.display(),
                problems.len()
            );
            return ExitCode::FAILURE;
        }
    };
    for line in resolved.report.lines() {
        tracing::info!("{line}");
    }
    if !resolved.report.is_complete() {
        if resolved.environment == Environment::Production {
            for line in resolved.report.error_lines() {
                eprintln!("{line}");
            }
            eprintln!(
                "{}: {} required secret(s) missing in production; nothing was started",
                path.display(),
                resolved.report.missing().len()
            );
            return ExitCode::FAILURE;
        }
        for line in resolved.report.error_lines() {
            tracing::warn!("{line}");
        }
    }
    let loaded = match policy::load_file_with_secrets(path, &ProcessEnv, &*resolved.store) {
        Ok(loaded) => loaded,
        Err(error) => {
            print_refusal(path, &error);
            return ExitCode::FAILURE;
        }
    };
    for warning in &loaded.warnings {
        tracing::warn!(field = warning.path.as_str(), "{}", warning.message);
    }
    tracing::info!(policy = %path.display(), "{}", loaded.policy.summary());
    // Before Pingora starts its threads, so a panic in any of them is reported.
    let _reporting = match start_reporting(&resolved.store, loaded.policy.environment) {
        Ok(guard) => guard,
        Err(()) => {
            eprintln!("{}: nothing was started", path.display());
            return ExitCode::FAILURE;
        }
    };
    match gardien::server::run(
        loaded.policy,
        path.to_path_buf(),
        resolved.store,
        ready_file,
        takeover,
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Error reports to Sentry when `SENTRY_DSN` resolved (docs/OBSERVABILITY.md, "Sentry"). A
/// DSN that does not parse refuses the start: reports would be lost without a word.
fn start_reporting(
    store: &Arc<SecretStore>,
    environment: Environment,
) -> Result<Option<gardien_telemetry::error_reporting::ReportingGuard>, ()> {
    match gardien::error_reports::start(store, environment) {
        Ok(Some(guard)) => {
            tracing::info!(
                release = gardien::error_reports::release().as_str(),
                "error reports go to Sentry"
            );
            Ok(Some(guard))
        }
        Ok(None) => Ok(None),
        Err(e) => {
            eprintln!("error: {e}");
            Err(())
        }
    }
}

/// `gardien report-test`: one test event, and with `--panic` a deliberate panic, sent to the
/// Sentry project the policy's secrets name, so an operator sees the wiring work end to end.
fn report_test(path: &Path, panic: bool) -> ExitCode {
    init_logging();
    let resolved = match resolve_secrets(path) {
        Ok(Some(resolved)) => resolved,
        Ok(None) | Err(_) => {
            eprintln!(
                "error: {}: the secrets cannot be resolved; run `gardien check`",
                path.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let guard = match start_reporting(&resolved.store, resolved.environment) {
        Ok(Some(guard)) => guard,
        Ok(None) => {
            eprintln!("error: SENTRY_DSN is not set: nothing to test");
            return ExitCode::FAILURE;
        }
        Err(()) => return ExitCode::FAILURE,
    };
    gardien_telemetry::error_reporting::report("report_test", "", || {
        gardien_telemetry::error_reporting::Report::warning(
            "gardien report-test: error reports reach this project",
        )
    });
    if panic {
        // On a thread of its own, as a panic in a request task would be: the hook reports it.
        let _ =
            std::thread::spawn(|| panic!("gardien report-test --panic: a deliberate panic")).join();
    }
    gardien_telemetry::error_reporting::flush(std::time::Duration::from_secs(5));
    drop(guard);
    println!(
        "sent: a test event{}",
        if panic { " and a panic" } else { "" }
    );
    ExitCode::SUCCESS
}

fn print_warnings(warnings: &[Problem]) {
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
}

fn print_refusal(path: &Path, error: &PolicyError) {
    print_warnings(&error.warnings);
    eprintln!("{error}");
    eprintln!(
        "{}: {} problem(s); nothing was started",
        path.display(),
        error.problems.len()
    );
}

/// Logs go to stderr; `GARDIEN_LOG` filters them (`info` by default) and
/// `GARDIEN_LOG_FORMAT=json` switches to Cloud Logging's JSON lines, the same as the
/// backend's (`gardien-telemetry`; docs/OBSERVABILITY.md, "Logs").
fn init_logging() {
    use gardien_telemetry::{LOG_FILTER, LOG_FORMAT};
    let filter = std::env::var(LOG_FILTER).unwrap_or_else(|_| "info".to_owned());
    let json = std::env::var(LOG_FORMAT).as_deref() == Ok("json");
    gardien_telemetry::init(&filter, json);
}
