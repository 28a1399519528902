//! `cargo xtask openapi`: write (or `--check`) the committed OpenAPI document.

use anyhow::{Context, bail};
use clap::Args;

use crate::common::project;

/// Arguments of `cargo xtask openapi`.
#[derive(Args, Debug)]
pub struct OpenApiArgs {
    /// Fail when the committed file differs instead of writing it.
    #[arg(long)]
    check: bool,
}

/// Runs `cargo xtask openapi`.
pub fn openapi(args: OpenApiArgs) -> anyhow::Result<()> {
    let path = project().root().join("crates/server/openapi.json");
    let text = lamoda_server::openapi::document_text();
    if args.check {
        let committed = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if committed != text {
            bail!("{} is stale: run `cargo xtask openapi`", path.display());
        }
        eprintln!("{} is up to date", path.display());
        return Ok(());
    }
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
