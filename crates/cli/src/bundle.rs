//! `lamoda-tags bundle`: make a directory of trained adapters a model bundle (the
//! runtime's format, `lamoda_inference::format`): the project's routing table and pools
//! copied in, the manifest written, and each adapter's `runtime.json` written from its
//! `train_config.json` where an older run left none.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use lamoda_data::Category;
use lamoda_inference::format::{RUNTIME_FILE, TRAIN_CONFIG_FILE, write_json};
use lamoda_inference::lamoda_model::lora::ADAPTER_CONFIG_FILE;
use lamoda_trainer::TrainConfig;

use crate::common::write_project_bundle;
use lamoda_data::Project;

/// Arguments of `lamoda-tags bundle`.
#[derive(Args, Debug)]
pub struct BundleArgs {
    /// The directory of adapters (`<DIR>/<category>/`). Default: the project's `adapters/`.
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
}

/// Runs `lamoda-tags bundle`.
pub fn run(args: BundleArgs, project: &Project) -> anyhow::Result<()> {
    let dir = args.model.unwrap_or_else(|| project.adapters_dir());
    for category in Category::ALL {
        let cat_dir = dir.join(category.name());
        if !cat_dir.join(ADAPTER_CONFIG_FILE).is_file() || cat_dir.join(RUNTIME_FILE).is_file() {
            continue;
        }
        let config = TrainConfig::read_record(&cat_dir)?;
        let runtime_path = cat_dir.join(RUNTIME_FILE);
        write_json(&runtime_path, &config.runtime())?;
        println!(
            "{}: written from {TRAIN_CONFIG_FILE}",
            runtime_path.display()
        );
    }
    let bundle = write_project_bundle(&dir, project, None).with_context(|| {
        format!(
            "cannot bundle {} (it needs an adapter for every category configs/routing.toml \
             names: train the missing ones with `lamoda-tags train --category C --out {}`)",
            dir.display(),
            dir.display()
        )
    })?;
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
