//! `lamoda-tags etalon`: regenerate or validate the etalon pools against the
//! training data.

use anyhow::{Context, bail};
use clap::Args;
use lamoda_data::{Category, EtalonPool, UnknownTagPolicy, load_labeled};

use crate::common::DataRootArgs;
use lamoda_data::Project;

/// Arguments of `lamoda-tags etalon`.
#[derive(Args, Debug)]
pub struct EtalonArgs {
    /// One category only (default: all).
    #[arg(long, value_name = "CATEGORY")]
    category: Option<Category>,
    /// Rewrite `etalon_tags/<category>.toml` from the data (tags by
    /// frequency), keeping the curated exclusive groups and notes.
    #[arg(long)]
    write: bool,
    #[command(flatten)]
    data: DataRootArgs,
}

/// Runs `lamoda-tags etalon`.
pub fn run(args: EtalonArgs, project: &Project) -> anyhow::Result<()> {
    let data = args.data.resolve()?;
    let categories = match args.category {
        Some(c) => vec![c],
        None => data.categories()?,
    };
    let mut problems = 0usize;
    for category in categories {
        let labeled = load_labeled(
            &data.labeled_path(category),
            category,
            None,
            UnknownTagPolicy::Error,
        )?;
        let path = EtalonPool::path_in(&project.etalon_dir(), category);
        let current = if path.exists() {
            Some(EtalonPool::load(&project.etalon_dir(), category)?)
        } else {
            None
        };
        if args.write {
            let pool = EtalonPool::generate(&labeled, current.as_ref())?;
            std::fs::create_dir_all(project.etalon_dir())?;
            std::fs::write(&path, pool.to_toml(Some(&labeled)))
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!(
                "{category}: wrote {} ({} tags, {} exclusive groups)",
                path.display(),
                pool.len(),
                pool.exclusive.len()
            );
            continue;
        }
        let Some(pool) = current else {
            bail!(
                "{} does not exist: run `lamoda-tags etalon --write` to generate it",
                path.display()
            );
        };
        let check = pool.check(&labeled);
        println!(
            "{category}: {} tags, {} rows",
            pool.len(),
            labeled.rows.len()
        );
        for (tag, n) in &check.unknown {
            problems += 1;
            println!(
                "  error: {tag:?} occurs {n}× in {} but is not in the pool",
                labeled.path.display()
            );
        }
        for tag in &check.unused {
            println!("  warning: pool tag {tag:?} never occurs in the data");
        }
        let mut by_group: std::collections::BTreeMap<&str, usize> = Default::default();
        for (_, group) in &check.exclusive_violations {
            *by_group.entry(group.as_str()).or_default() += 1;
        }
        for (group, n) in by_group {
            println!(
                "  note: {n} rows carry more than one tag of exclusive group `{group}` (noisy labels)"
            );
        }
    }
    if problems > 0 {
        bail!("{problems} tags in the data are missing from their pools");
    }
    Ok(())
}
