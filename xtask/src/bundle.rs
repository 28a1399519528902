//! `cargo xtask bundle`: make a directory of trained adapters a model bundle (the
//! runtime's format, `lamoda_inference::format`): the project's routing table and pools
//! copied in, the manifest written, and each adapter's `runtime.json` written from its
//! `train_config.json` where an older run left none.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use lamoda_data::Category;
use lamoda_inference::format::{RUNTIME_FILE, TRAIN_CONFIG_FILE};
use lamoda_inference::lamoda_model::lora::ADAPTER_CONFIG_FILE;
use lamoda_trainer::TrainConfig;

use crate::common::{missing_routed, project, write_project_bundle};

/// Arguments of `cargo xtask bundle`.
#[derive(Args, Debug)]
pub struct BundleArgs {
    /// The directory of adapters (`<DIR>/<category>/`). Default: the project's `adapters/`.
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
}

/// Runs `cargo xtask bundle`.
pub fn run(args: BundleArgs) -> anyhow::Result<()> {
    let dir = args.model.unwrap_or_else(|| project().adapters_dir());
    for category in Category::ALL {
        let cat_dir = dir.join(category.name());
        if !cat_dir.join(ADAPTER_CONFIG_FILE).is_file() || cat_dir.join(RUNTIME_FILE).is_file() {
            continue;
        }
        let config_path = cat_dir.join(TRAIN_CONFIG_FILE);
        let text = std::fs::read_to_string(&config_path)
            .with_context(|| format!("reading {}", config_path.display()))?;
        let config: TrainConfig = serde_json::from_str(&text)
            .with_context(|| format!("parsing {}", config_path.display()))?;
        let runtime_path = cat_dir.join(RUNTIME_FILE);
        std::fs::write(
            &runtime_path,
            serde_json::to_string_pretty(&config.runtime())?,
        )
        .with_context(|| format!("writing {}", runtime_path.display()))?;
        println!(
            "{}: written from {TRAIN_CONFIG_FILE}",
            runtime_path.display()
        );
    }
    let missing = missing_routed(&dir)?;
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|c| c.name()).collect();
        bail!(
            "{}: configs/routing.toml sends good types to {}, which have no adapter there \
             (train them with `cargo xtask train --category C --out {}`)",
            dir.display(),
            names.join(", "),
            dir.display()
        );
    }
    let bundle = write_project_bundle(&dir)?;
    let categories: Vec<&str> = bundle.categories().iter().map(|c| c.name()).collect();
    println!(
        "bundle {}: {} on base {} ({})",
        bundle.dir().display(),
        categories.join(", "),
        bundle.manifest().base.name,
        bundle.default_base_dir().display()
    );
    Ok(())
}
