//! `lamoda-tags init DIR`: a new project from the defaults built into the binary.

use std::path::PathBuf;

use clap::Args;

/// Arguments of `lamoda-tags init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// The project directory to write (created if missing; nothing in it is overwritten).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// Runs `lamoda-tags init`: writes the configs, the label prompt and the etalon pools, and
/// prints what to do next.
pub fn run(args: InitArgs) -> anyhow::Result<()> {
    let (project, written) = lamoda_data::init_project(&args.dir)?;
    for path in &written {
        eprintln!("wrote {}", path.display());
    }
    let root = project.root().display();
    println!(
        "project {root}: {} files. Next: lamoda-tags fetch-base --project {root}, then \
         lamoda-tags train --project {root} --data DIR --category bags --out MODEL_DIR",
        written.len()
    );
    Ok(())
}
