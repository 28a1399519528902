//! `cargo xtask python`: the Python package's tests, as CI runs them. Installs the pinned
//! tools into a cached virtual environment (`target/python-venv/`), builds the wheel with
//! maturin, installs it there, writes a tiny trained bundle (the test kit's; nothing is
//! downloaded), builds `predict-tags` (the Parquet comparison) and runs pytest over
//! `bindings/python/tests/`: the API, the GIL, pickling, errors, and the Ray Data example
//! with a killed actor and a rerun. `--bench` runs the throughput benchmark instead.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use clap::Args;
use lamoda_data::Category;

use crate::common::{make_venv, project};

/// What the tests run with, pinned (`ray[data]` brings pyarrow).
pub const PACKAGES: [&str; 5] = [
    "maturin==1.16.0",
    "ray[data]==2.60.0",
    "pytest==9.2.0",
    "pandas==3.1.2",
    "polars==2.2.0",
];

/// Arguments of `cargo xtask python`.
#[derive(Args, Debug)]
pub struct PythonArgs {
    /// The virtual environment the tools and the wheel go into.
    #[arg(long, value_name = "DIR")]
    venv: Option<PathBuf>,
    /// Build the wheel in release (what a benchmark needs; the tests use the tiny model).
    #[arg(long)]
    release: bool,
    /// Build and install the wheel, write the fixtures, but run no test (prints the
    /// environment variables the tests read).
    #[arg(long)]
    no_test: bool,
    /// Instead of the tests, the throughput benchmark (bindings/python/bench/throughput.py)
    /// on the product table of LAMODA_DATA with the shipped bundle, from release builds.
    #[arg(long, conflicts_with = "no_test")]
    bench: bool,
    /// Arguments for pytest (after `--`), e.g. `-- -k gil -x`; with --bench, for the
    /// benchmark (e.g. `-- --limit 500 --json`).
    #[arg(last = true)]
    pytest: Vec<String>,
}

/// The venv with [`PACKAGES`] installed (once; a marker file lists them).
pub fn venv(dir: &Path) -> anyhow::Result<PathBuf> {
    let python = dir.join("bin/python");
    let marker = dir.join(".installed");
    let wanted = PACKAGES.join("\n");
    if python.is_file() && std::fs::read_to_string(&marker).ok().as_deref() == Some(&wanted) {
        return Ok(python);
    }
    eprintln!(
        "python: installing {} into {}",
        PACKAGES.join(" "),
        dir.display()
    );
    make_venv(dir, &PACKAGES, "the Python package's tests")?;
    std::fs::write(&marker, wanted)?;
    Ok(python)
}

/// Builds the wheel into `target/wheels/` with the venv's maturin, installs it into the
/// venv, and returns its path.
pub fn install_wheel(root: &Path, venv_dir: &Path, release: bool) -> anyhow::Result<PathBuf> {
    let out = root.join("target/wheels");
    if out.is_dir() {
        std::fs::remove_dir_all(&out).with_context(|| format!("cannot clear {}", out.display()))?;
    }
    let mut build = Command::new(venv_dir.join("bin/maturin"));
    build
        .args(["build", "--quiet", "--manifest-path"])
        .arg(root.join("bindings/python/Cargo.toml"))
        .arg("--out")
        .arg(&out);
    if release {
        build.arg("--release");
    }
    run(&mut build, "maturin build")?;
    let wheel = std::fs::read_dir(&out)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .with_context(|| format!("maturin wrote no wheel into {}", out.display()))?;
    run(
        Command::new(venv_dir.join("bin/pip"))
            .args(["install", "--quiet", "--force-reinstall", "--no-deps"])
            .arg(&wheel),
        "pip install (the wheel)",
    )?;
    let size = std::fs::metadata(&wheel)?.len();
    eprintln!(
        "python: installed {} ({:.1} MB)",
        wheel.file_name().unwrap_or_default().to_string_lossy(),
        size as f64 / 1e6
    );
    Ok(wheel)
}

/// `--bench`: release `predict-tags`, then the benchmark script on the shipped bundle and
/// `$LAMODA_DATA/reviews_sampled.csv`.
fn bench(root: &Path, python: &Path, extra: &[String]) -> anyhow::Result<()> {
    let data = std::env::var_os("LAMODA_DATA")
        .map(PathBuf::from)
        .context("the benchmark tags the product table of LAMODA_DATA: set it")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(
        Command::new(cargo).current_dir(root).args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "lamoda-tags",
            "--bin",
            "predict-tags",
        ]),
        "cargo build --release --bin predict-tags",
    )?;
    run(
        Command::new(python)
            .current_dir(root)
            .arg("bindings/python/bench/throughput.py")
            .arg("--csv")
            .arg(data.join("reviews_sampled.csv"))
            .arg("--model")
            .arg(root.join("adapters"))
            .arg("--base")
            .arg(lamoda_testkit::real_base_dir(root))
            .arg("--predict-tags")
            .arg(root.join("target/release/predict-tags"))
            .args(extra),
        "the throughput benchmark",
    )
}

fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Runs `cargo xtask python`.
pub fn run_tests(args: PythonArgs) -> anyhow::Result<()> {
    let project = project();
    let root = project.root().to_owned();
    let venv_dir = args
        .venv
        .clone()
        .unwrap_or_else(|| root.join("target/python-venv"));
    let python = venv(&venv_dir)?;
    install_wheel(&root, &venv_dir, args.release || args.bench)?;
    if args.bench {
        return bench(&root, &python, &args.pytest);
    }

    // The tiny bundle: bags, shoes and accs (the fallback) on the project's pools.
    let fixtures = root.join("target/python-fixtures");
    if fixtures.is_dir() {
        std::fs::remove_dir_all(&fixtures)?;
    }
    let pools = [Category::Bags, Category::Shoes, Category::Accs]
        .into_iter()
        .map(|c| project.pool(c))
        .collect::<Result<Vec<_>, _>>()?;
    let routing = lamoda_testkit::routing_toml(
        Category::Accs,
        &[
            ("Bags", Category::Bags),
            ("Shoes", Category::Shoes),
            ("Accs", Category::Accs),
        ],
    );
    let (base, model) = lamoda_testkit::write_trained_bundle(&fixtures, &pools, &routing, 7)
        .map_err(|e| anyhow::anyhow!("writing the tiny bundle: {e}"))?;

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(
        Command::new(cargo).current_dir(&root).args([
            "build",
            "--quiet",
            "-p",
            "lamoda-tags",
            "--bin",
            "predict-tags",
        ]),
        "cargo build --bin predict-tags",
    )?;
    let predict_tags = root.join("target/debug/predict-tags");
    let env = [
        ("LAMODA_TEST_MODEL", model.as_os_str()),
        ("LAMODA_TEST_BASE", base.as_os_str()),
        ("LAMODA_PREDICT_TAGS", predict_tags.as_os_str()),
    ];
    if args.no_test {
        for (name, value) in env {
            println!("export {name}={}", value.to_string_lossy());
        }
        return Ok(());
    }
    let mut pytest = Command::new(&python);
    pytest
        .current_dir(&root)
        .args(["-m", "pytest", "bindings/python/tests", "-q"])
        .args(&args.pytest)
        .envs(env)
        // Ray, on this machine only: no sign-in, no usage reports.
        .env("RAY_AUTH_MODE", "disabled")
        .env("RAY_USAGE_STATS_ENABLED", "0");
    run(&mut pytest, "pytest bindings/python/tests")
}
