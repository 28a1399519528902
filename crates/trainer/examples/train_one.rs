//! Train one category's adapter on the reference data:
//!
//! ```sh
//! cargo run -p lamoda-trainer --example train_one -- \
//!     --category bags --data-root $LAMODA_DATA [--base models/e5-small] [--out target/adapters] \
//!     [--configs configs] [--resume]
//! ```
//!
//! Prints the dev figures (beside the prior) and writes `<out>/<category>/`.

use std::path::PathBuf;
use std::time::Instant;

use lamoda_data::{Category, EtalonPool, LabeledSet, SplitConfig, UnknownTagPolicy, load_labeled};
use lamoda_trainer::{TrainConfig, train_category};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut category: Option<Category> = None;
    let mut data_root = std::env::var_os("LAMODA_DATA").map(PathBuf::from);
    let mut base_dir = root.join("models/e5-small");
    let mut out = root.join("target/adapters");
    let mut configs = root.join("configs");
    let mut resume = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--category" => category = Some(value()?.parse()?),
            "--data-root" => data_root = Some(value()?.into()),
            "--base" => base_dir = value()?.into(),
            "--out" => out = value()?.into(),
            "--configs" => configs = value()?.into(),
            "--resume" => resume = true,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let category = category.ok_or("--category is required")?;
    let data_root = data_root.ok_or("--data-root or LAMODA_DATA is required")?;
    let pool = EtalonPool::load(&root.join("etalon_tags"), category)?;
    let data = load_labeled(
        &LabeledSet::path_in(&data_root, category),
        category,
        Some(&pool),
        UnknownTagPolicy::Error,
    )?;
    let split: SplitConfig = lamoda_data::read_toml(&root.join("configs/split.toml"))?;
    let config = TrainConfig::load(&configs, category)?;
    let t0 = Instant::now();
    let device = lamoda_model::default_device();
    let base = lamoda_model::load_hf_dir(&base_dir, &device)?;
    eprintln!("base loaded in {:.1} s", t0.elapsed().as_secs_f64());
    let report = train_category(
        &base, &pool, &data.rows, &split, &config, &out, true, resume,
    )?;
    let m = &report.metrics;
    println!(
        "{category}: best epoch {}, dev micro-F1 {:.4} (prior {:.4}), macro-F1 {:.4} (prior {:.4}){}; \
         n_train {} n_dev {} reviews {}; cache {:.1} s, training {:.1} s, total {:.1} s; → {}",
        m.epoch,
        m.dev.micro_f1,
        m.prior.micro_f1,
        m.dev.macro_f1,
        m.prior.macro_f1,
        m.tuned
            .as_ref()
            .map(|t| format!(", tuned thresholds {:.4}", t.micro_f1))
            .unwrap_or_default(),
        m.n_train,
        m.n_dev,
        m.n_reviews,
        m.cache_seconds,
        m.train_seconds,
        t0.elapsed().as_secs_f64(),
        report.dir.display()
    );
    for e in &m.history {
        println!(
            "  epoch {}: loss {:.4}, dev micro-F1 {:.4}, {:.1} s",
            e.epoch, e.train_loss, e.dev_micro_f1, e.seconds
        );
    }
    Ok(())
}
