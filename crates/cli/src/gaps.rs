//! `lamoda-tags gaps`: the pool-gap report (`lamoda_curation::gaps`) of the careful labels
//! in the data directory and of exported team reviews: what reviewers state that no pool
//! tag captures, per category, for a curator to decide what to add. The pools are read,
//! never changed.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use lamoda_curation::gaps::{
    GapInput, GapSettings, PoolMatch, careful_inputs, pool_gaps, reviewed_inputs, write_csv,
    write_markdown,
};
use lamoda_data::{Category, UnknownTagPolicy};

use crate::common::{DataRootArgs, emit};
use lamoda_data::Project;

/// Arguments of `lamoda-tags gaps`.
#[derive(Args, Debug)]
pub struct GapsArgs {
    #[command(flatten)]
    data: DataRootArgs,
    /// A file of exported team reviews (`lamoda-tags review export`); repeat for several.
    #[arg(long = "reviews", value_name = "FILE")]
    reviews: Vec<PathBuf>,
    /// A review store (the server's --reviews-db), read directly; repeat for several.
    #[arg(long = "db", value_name = "PATH")]
    db: Vec<PathBuf>,
    /// Where `pool-gaps.md` and `pool-gaps.csv` go.
    #[arg(long, value_name = "DIR", default_value = "target/gaps")]
    out: PathBuf,
    /// The Markdown lists the phrases stated by at least this many products (the CSV keeps
    /// every phrase).
    #[arg(long, value_name = "N", default_value_t = 2)]
    min_count: usize,
}

/// Lines printed per category.
const TOP: usize = 3;

/// Runs `lamoda-tags gaps`.
pub fn run(args: GapsArgs, project: &Project) -> anyhow::Result<()> {
    let data = args.data.resolve()?;
    let mut pools = Vec::new();
    for category in Category::ALL {
        pools.push(project.pool(category)?);
    }
    let mut inputs: Vec<GapInput> = Vec::new();
    for pool in &pools {
        let Some(careful) = data.careful(pool.category, pool)? else {
            continue;
        };
        let labeled = data.labeled(pool.category, pool, UnknownTagPolicy::Error)?;
        inputs.extend(careful_inputs(&careful, &labeled)?);
    }
    let careful = inputs.len();
    let pool_of = |c: Category| pools.iter().find(|p| p.category == c);
    for path in &args.reviews {
        inputs.extend(reviewed_inputs(&lamoda_data::load_reviewed(path, pool_of)?));
    }
    for path in &args.db {
        if !path.is_file() {
            anyhow::bail!("review store {} does not exist", path.display());
        }
        let store = lamoda_reviews::ReviewStore::open(path)?;
        for (line, _) in lamoda_reviews::reviewed_lines(&store)? {
            let category: Category = line.category.parse()?;
            inputs.push(GapInput::reviewed(category, &line));
        }
    }
    if inputs.is_empty() {
        anyhow::bail!(
            "nothing to report: no careful labels under {} (careful/<category>.jsonl) and no \
             --reviews file or --db store with a product",
            data.root().display()
        );
    }
    eprintln!(
        "gaps: {careful} careful labels, {} exported team reviews",
        inputs.len() - careful
    );
    let settings = GapSettings {
        min_count: args.min_count,
        ..GapSettings::default()
    };
    let report = pool_gaps(&inputs, &pools, settings);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let md_path = args.out.join("pool-gaps.md");
    std::fs::write(&md_path, write_markdown(&report))
        .with_context(|| format!("cannot write {}", md_path.display()))?;
    let csv_path = args.out.join("pool-gaps.csv");
    write_csv(&report, &csv_path)?;
    for c in &report.categories {
        emit(&format!(
            "{}: {} products read ({} careful, {} from team reviews), {} with a missing property",
            c.category, c.products, c.careful_products, c.review_products, c.with_missing
        ))?;
        for g in c.gaps.iter().take(TOP) {
            let pool = match &g.pool {
                PoolMatch::None => String::new(),
                PoolMatch::Exact(t) => format!(" [already in pool: {t}]"),
                PoolMatch::Near(t) => format!(" [near {t}]"),
            };
            emit(&format!(
                "  {} {} of {} ({:.1}%; careful {}, reviews {}){pool}",
                g.phrase,
                g.products,
                c.products,
                100.0 * c.share(g),
                g.careful,
                g.reviews
            ))?;
        }
    }
    eprintln!("wrote {} and {}", md_path.display(), csv_path.display());
    Ok(())
}
