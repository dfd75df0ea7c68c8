//! `gardien-test-frontend`: serves the test frontend page on two loopback origins, one for
//! the policy to allow and one for it to refuse, each on a port the system picks; writes
//! `origin=http://localhost:P` and `refused_origin=http://localhost:Q` to `--ready-file`
//! (and stdout), then serves until killed. `scripts/staging-check.sh` starts it before
//! gardien, allows the first origin (`FRONTEND_URL`), and the staging check's
//! `browser_signup_login` flow drives Chromium on both.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use gardien_browser::frontend;

/// Serves the test frontend page on an allowed and a refused loopback origin.
#[derive(Debug, Parser)]
#[command(name = "gardien-test-frontend", version)]
struct Args {
    /// Where to write the two origins once both listen.
    #[arg(long)]
    ready_file: Option<PathBuf>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> Result<(), String> {
    let (allowed_port, allowed) = frontend::bind_ephemeral_localhost()?;
    let (refused_port, refused) = frontend::bind_ephemeral_localhost()?;
    frontend::serve(allowed)?;
    frontend::serve(refused)?;
    let ready = format!(
        "origin=http://localhost:{allowed_port}\nrefused_origin=http://localhost:{refused_port}\n"
    );
    if let Some(path) = &args.ready_file {
        // Written whole then renamed, so a reader never sees half of it.
        let partial = path.with_extension("partial");
        std::fs::File::create(&partial)
            .and_then(|mut file| file.write_all(ready.as_bytes()))
            .and_then(|()| std::fs::rename(&partial, path))
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    print!("{ready}");
    let _ = std::io::stdout().flush();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("a SIGTERM handler: {e}"))?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
