//! `predict-tags` is the runtime: the built binary holds no code of the trainer or the
//! curation pipeline, while `lamoda-tags` (every workflow) does. The crates' names appear in
//! every symbol of their code, so the bytes of the binaries tell what was linked.

use std::path::Path;

/// How many times `needle` occurs in the file at `path`.
fn occurrences(path: &Path, needle: &str) -> usize {
    let bytes = std::fs::read(path).expect("the built binary is readable");
    let needle = needle.as_bytes();
    bytes.windows(needle.len()).filter(|w| *w == needle).count()
}

#[test]
fn predict_tags_links_neither_the_trainer_nor_the_curation_pipeline() {
    let predict_tags = Path::new(env!("CARGO_BIN_EXE_predict-tags"));
    let lamoda_tags = Path::new(env!("CARGO_BIN_EXE_lamoda-tags"));
    for crate_name in ["lamoda_trainer", "lamoda_curation"] {
        // The control: the same search finds them in the binary that does link them.
        assert!(
            occurrences(lamoda_tags, crate_name) > 0,
            "lamoda-tags should link {crate_name}"
        );
        assert_eq!(
            occurrences(predict_tags, crate_name),
            0,
            "predict-tags links {crate_name}: the runtime's binaries must not (ARCHITECTURE.md)"
        );
    }
    // And it does link the runtime.
    assert!(occurrences(predict_tags, "lamoda_inference") > 0);
}
