//! `lamoda-tags review export`: the review store's judged products as reviewed labels
//! (`lamoda_reviews::export`), the careful-label protocol with the reviews in each line,
//! which `train --reviewed` and `eval --labels careful --reviewed` read.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::common::emit;

/// Arguments of `lamoda-tags review`.
#[derive(Args, Debug)]
pub struct ReviewArgs {
    #[command(subcommand)]
    command: ReviewCommand,
}

#[derive(Subcommand, Debug)]
enum ReviewCommand {
    /// Write the judged products as reviewed labels (one JSON line per product: its
    /// reviews, the tags most of its reviewers kept, their missing properties).
    Export(ExportArgs),
}

#[derive(Args, Debug)]
struct ExportArgs {
    /// The review store (the server's --reviews-db).
    #[arg(long, value_name = "PATH")]
    db: PathBuf,
    /// The file to write (replaced whole, only once the export is complete).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Runs `lamoda-tags review …`.
pub fn run(args: ReviewArgs) -> anyhow::Result<()> {
    match args.command {
        ReviewCommand::Export(args) => export(&args),
    }
}

fn export(args: &ExportArgs) -> anyhow::Result<()> {
    if !args.db.is_file() {
        anyhow::bail!(
            "review store {} does not exist (the server's --reviews-db)",
            args.db.display()
        );
    }
    let store = lamoda_reviews::ReviewStore::open(&args.db)?;
    let dir = args
        .out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    let report = {
        let mut writer = std::io::BufWriter::new(tmp.as_file_mut());
        let report = lamoda_reviews::export(&store, &mut writer)?;
        writer.flush()?;
        report
    };
    tmp.as_file().sync_all()?;
    tmp.persist(&args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    let products: usize = report.products.values().sum();
    for (category, n) in &report.products {
        emit(&format!("{category}: {n} products"))?;
    }
    eprintln!(
        "wrote {products} products ({} tags, from {} current judgments) to {}",
        report.tags,
        report.judgments,
        args.out.display()
    );
    Ok(())
}
