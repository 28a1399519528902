//! `lamoda-server`: the tagging API and the product explorer (see the crate doc of
//! `lamoda_server`). `lamoda-server --port 8080 [--model DIR] [--products CSV]`.

use clap::Parser;
use lamoda_server::ServeArgs;

/// Serves the Lamoda Tags API and explorer.
#[derive(Parser, Debug)]
#[command(name = "lamoda-server", version)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match lamoda_server::app_main(&cli.serve) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
