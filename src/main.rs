//! The `gardien` command: `run` serves a policy, `check` validates one. Thin on purpose:
//! everything else lives in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gardien::policy::{self, PolicyError, Problem, ProcessEnv};

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
    },
    /// Validate a policy and the environment it reads; list every problem.
    Check {
        /// The policy file to check.
        #[arg(long, default_value = DEFAULT_POLICY)]
        policy: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check { policy } => check(&policy),
        Command::Run { policy } => run(&policy),
    }
}

fn check(path: &Path) -> ExitCode {
    match policy::load_file(path, &ProcessEnv) {
        Ok(loaded) => {
            print_warnings(&loaded.warnings);
            println!("ok: {}: {}", path.display(), loaded.policy.summary());
            ExitCode::SUCCESS
        }
        Err(error) => {
            print_refusal(path, &error);
            ExitCode::FAILURE
        }
    }
}

fn run(path: &Path) -> ExitCode {
    init_logging();
    let loaded = match policy::load_file(path, &ProcessEnv) {
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
    match gardien::server::run(loaded.policy, path.to_path_buf()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
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

/// Logs go to stderr; `GARDIEN_LOG` filters them (`info` by default, `gardien::access=debug`
/// for access logs) and `GARDIEN_LOG_FORMAT=json` switches to JSON lines for Cloud Logging.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("GARDIEN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if std::env::var("GARDIEN_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
