//! Embeddings for curation, with an on-disk cache.
//!
//! Tags are embedded as `"query: " + normalised tag` (e5's convention for short texts
//! that are compared with each other); review stacks as the mean of their reviews'
//! `"passage: " + review` vectors. Vectors are L2-normalised, so a dot product is a cosine.
//!
//! The cache ([`EmbeddingCache`]) lives in `<root>/<weights sha256>/<name>.json` (the
//! texts, the key and the dimension) beside `<name>.f32` (the vectors, little-endian f32,
//! one row per text). It is keyed by the base's `weights_sha256` (the directory) and by the
//! embedding's own key (the prefix and the token cut, inside the JSON), so a different
//! model or prefix never reads another's vectors. A cache that does not match or cannot be
//! read is ignored and rewritten (its reason is reported by [`EmbeddingCache::stale`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use lamoda_model::LoadedBase;
use serde::{Deserialize, Serialize};

use crate::CurationError;

/// e5's prefix for short texts compared with each other (tags).
pub const QUERY_PREFIX: &str = "query: ";
/// e5's prefix for passages (reviews).
pub const PASSAGE_PREFIX: &str = "passage: ";

/// Something that turns texts into L2-normalised vectors, and says which model it is.
pub trait Embedder {
    /// The identity of the weights (the cache's directory), e.g. their sha256.
    fn model_id(&self) -> &str;
    /// What else decides a vector (prefix, token cut): part of the cache's key.
    fn key(&self) -> String;
    /// Embeds a batch of texts, one vector each.
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, CurationError>;
}

/// The base model as an [`Embedder`]: `prefix + text`, cut to `max_tokens` tokens (with the
/// boundary tokens; `None`: the base's own windows over long texts, as
/// [`lamoda_model::embed_texts`] does), mean-pooled and L2-normalised.
pub struct BaseEmbedder<'a> {
    base: &'a LoadedBase,
    prefix: String,
    max_tokens: Option<usize>,
}

impl<'a> BaseEmbedder<'a> {
    /// Tags: `"query: "`, no cut (tags are short).
    pub fn tags(base: &'a LoadedBase) -> Self {
        Self {
            base,
            prefix: QUERY_PREFIX.to_owned(),
            max_tokens: None,
        }
    }

    /// Reviews: `"passage: "`, cut to `max_tokens` tokens (the runtime reads 64).
    pub fn reviews(base: &'a LoadedBase, max_tokens: usize) -> Self {
        Self {
            base,
            prefix: PASSAGE_PREFIX.to_owned(),
            max_tokens: Some(max_tokens.max(2)),
        }
    }
}

impl Embedder for BaseEmbedder<'_> {
    fn model_id(&self) -> &str {
        &self.base.info.weights_sha256
    }

    fn key(&self) -> String {
        match self.max_tokens {
            Some(n) => format!("prefix={:?};max_tokens={n};mean-pooled;l2", self.prefix),
            None => format!("prefix={:?};windows;mean-pooled;l2", self.prefix),
        }
    }

    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, CurationError> {
        let Some(max) = self.max_tokens else {
            return Ok(lamoda_model::embed_texts(
                &self.base.packed,
                &self.base.tokenizer,
                texts,
                &self.prefix,
            )?);
        };
        let mut rows = Vec::with_capacity(texts.len());
        for text in texts {
            let mut ids = self
                .base
                .tokenizer
                .encode(&format!("{}{text}", self.prefix))?;
            if ids.len() > max {
                let eos = ids[ids.len() - 1];
                ids.truncate(max - 1);
                ids.push(eos);
            }
            rows.push(ids);
        }
        let refs: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
        let hidden = self.base.packed.hidden();
        let pooled = self.base.packed.forward(&refs)?.mean_pooled();
        Ok(pooled
            .chunks(hidden)
            .map(|v| {
                let mut v = v.to_vec();
                normalize(&mut v);
                v
            })
            .collect())
    }
}

/// Scales `v` to unit length (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 1e-12 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// The dot product (the cosine of two unit vectors).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[derive(Serialize, Deserialize)]
struct CacheHeader {
    model: String,
    key: String,
    dim: usize,
    texts: Vec<String>,
}

/// How a cached embedding run went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Distinct texts asked for.
    pub requested: usize,
    /// Of them, found in the cache.
    pub hits: usize,
    /// Of them, embedded now (and added to the cache).
    pub embedded: usize,
}

/// Vectors of texts for one model and key, kept on disk (see the module's notes).
pub struct EmbeddingCache {
    json: PathBuf,
    vectors: PathBuf,
    model: String,
    key: String,
    dim: usize,
    map: HashMap<String, Vec<f32>>,
    order: Vec<String>,
    stale: Option<String>,
    dirty: bool,
}

impl EmbeddingCache {
    /// Opens the cache `name` under `root` for `model` and `key` (empty when there is none
    /// yet, or when the one there does not match or cannot be read).
    pub fn open(root: &Path, model: &str, key: &str, name: &str) -> Self {
        let dir = root.join(model);
        let mut cache = Self {
            json: dir.join(format!("{name}.json")),
            vectors: dir.join(format!("{name}.f32")),
            model: model.to_owned(),
            key: key.to_owned(),
            dim: 0,
            map: HashMap::new(),
            order: Vec::new(),
            stale: None,
            dirty: false,
        };
        if cache.json.is_file()
            && let Err(reason) = cache.load()
        {
            cache.stale = Some(reason);
            cache.map.clear();
            cache.order.clear();
            cache.dim = 0;
        }
        cache
    }

    /// Opens the cache of `embedder` (its model id and key) under `root`.
    pub fn for_embedder(root: &Path, embedder: &dyn Embedder, name: &str) -> Self {
        Self::open(root, embedder.model_id(), &embedder.key(), name)
    }

    fn load(&mut self) -> Result<(), String> {
        let text = std::fs::read_to_string(&self.json).map_err(|e| e.to_string())?;
        let header: CacheHeader = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        if header.model != self.model {
            return Err(format!(
                "made for model {}, not {}",
                header.model, self.model
            ));
        }
        if header.key != self.key {
            return Err(format!("made with {}, not {}", header.key, self.key));
        }
        let bytes = std::fs::read(&self.vectors).map_err(|e| e.to_string())?;
        if bytes.len() != header.texts.len() * header.dim * 4 {
            return Err(format!(
                "{} bytes of vectors for {} texts of dimension {}",
                bytes.len(),
                header.texts.len(),
                header.dim
            ));
        }
        let floats: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        self.dim = header.dim;
        for (text, row) in header
            .texts
            .into_iter()
            .zip(floats.chunks(header.dim.max(1)))
        {
            self.map.insert(text.clone(), row.to_vec());
            self.order.push(text);
        }
        Ok(())
    }

    /// Why the cache on disk was not used, when it was not.
    pub fn stale(&self) -> Option<&str> {
        self.stale.as_deref()
    }

    /// Texts held.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether it holds no text.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The vector of `text`, when held.
    pub fn get(&self, text: &str) -> Option<&[f32]> {
        self.map.get(text).map(Vec::as_slice)
    }

    /// The JSON file of the cache.
    pub fn path(&self) -> &Path {
        &self.json
    }

    /// The vectors of `texts` (in order), embedding those not held in batches of `batch`
    /// with `embedder` (`progress(done, to_do)` after each batch), saving the cache every
    /// two minutes of embedding and at the end when anything was added.
    pub fn embed_all(
        &mut self,
        embedder: &dyn Embedder,
        texts: &[String],
        batch: usize,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<(Vec<Vec<f32>>, CacheStats), CurationError> {
        let mut missing: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for text in texts {
            if seen.insert(text.as_str()) && !self.map.contains_key(text) {
                missing.push(text.clone());
            }
        }
        let stats = CacheStats {
            requested: seen.len(),
            hits: seen.len() - missing.len(),
            embedded: missing.len(),
        };
        // Similar lengths together: less work per batch in the encoder.
        missing.sort_by_key(|t| (t.chars().count(), t.clone()));
        let mut done = 0;
        progress(0, missing.len());
        let mut saved = std::time::Instant::now();
        for chunk in missing.chunks(batch.max(1)) {
            // A long run keeps what it has: saved every two minutes, so a kill loses at most that.
            if self.dirty && saved.elapsed().as_secs() >= 120 {
                self.save()?;
                saved = std::time::Instant::now();
            }
            let vectors = embedder.embed(chunk)?;
            for (text, v) in chunk.iter().zip(vectors) {
                if self.dim == 0 {
                    self.dim = v.len();
                }
                self.map.insert(text.clone(), v);
                self.order.push(text.clone());
            }
            self.dirty = true;
            done += chunk.len();
            progress(done, missing.len());
        }
        if self.dirty {
            self.save()?;
        }
        let out = texts
            .iter()
            .map(|t| self.map.get(t).cloned().unwrap_or_default())
            .collect();
        Ok((out, stats))
    }

    /// Writes the cache (vectors first, then the JSON, each through a temporary file, so
    /// a kill leaves the old cache or the new one).
    pub fn save(&mut self) -> Result<(), CurationError> {
        let io = |path: &Path, source| CurationError::Io {
            path: path.to_owned(),
            action: "cannot write the embedding cache",
            source,
        };
        if let Some(dir) = self.json.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        }
        let mut bytes = Vec::with_capacity(self.order.len() * self.dim * 4);
        for text in &self.order {
            for x in &self.map[text] {
                bytes.extend_from_slice(&x.to_le_bytes());
            }
        }
        let header = CacheHeader {
            model: self.model.clone(),
            key: self.key.clone(),
            dim: self.dim,
            texts: self.order.clone(),
        };
        let json = serde_json::to_string(&header).map_err(|e| io(&self.json, e.into()))?;
        // The JSON is replaced last: until then the old header (if any) still describes the
        // old vectors' length, and a mismatch is caught on load.
        write_atomic(&self.vectors, &bytes).map_err(|e| io(&self.vectors, e))?;
        write_atomic(&self.json, json.as_bytes()).map_err(|e| io(&self.json, e))?;
        self.dirty = false;
        Ok(())
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    struct Fake {
        id: String,
        calls: Cell<usize>,
    }

    impl Embedder for Fake {
        fn model_id(&self) -> &str {
            &self.id
        }
        fn key(&self) -> String {
            "fake".to_owned()
        }
        fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, CurationError> {
            self.calls.set(self.calls.get() + texts.len());
            Ok(texts
                .iter()
                .map(|t| {
                    let mut v = vec![t.chars().count() as f32, 1.0];
                    normalize(&mut v);
                    v
                })
                .collect())
        }
    }

    #[test]
    fn the_cache_is_hit_on_rerun_and_not_read_for_another_model() {
        let dir = tempfile::tempdir().expect("tempdir");
        let texts: Vec<String> = ["а", "бб", "а"].iter().map(|s| s.to_string()).collect();
        let fake = Fake {
            id: "sha-one".to_owned(),
            calls: Cell::new(0),
        };
        let mut cache = EmbeddingCache::for_embedder(dir.path(), &fake, "tags");
        let (first, stats) = cache.embed_all(&fake, &texts, 8, |_, _| {}).expect("embed");
        assert_eq!((stats.requested, stats.hits, stats.embedded), (2, 0, 2));
        assert_eq!(fake.calls.get(), 2);
        let mut again = EmbeddingCache::for_embedder(dir.path(), &fake, "tags");
        assert_eq!(again.len(), 2);
        let (second, stats) = again.embed_all(&fake, &texts, 8, |_, _| {}).expect("embed");
        assert_eq!((stats.hits, stats.embedded), (2, 0));
        assert_eq!(fake.calls.get(), 2, "nothing re-embedded");
        assert_eq!(first, second);
        let other = Fake {
            id: "sha-two".to_owned(),
            calls: Cell::new(0),
        };
        let mut theirs = EmbeddingCache::for_embedder(dir.path(), &other, "tags");
        assert!(theirs.is_empty());
        theirs
            .embed_all(&other, &texts, 8, |_, _| {})
            .expect("embed");
        assert_eq!(other.calls.get(), 2);
    }

    #[test]
    fn a_cache_with_another_key_or_cut_vectors_is_stale() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = Fake {
            id: "m".to_owned(),
            calls: Cell::new(0),
        };
        let texts = vec!["x".to_owned()];
        let mut cache = EmbeddingCache::for_embedder(dir.path(), &fake, "tags");
        cache.embed_all(&fake, &texts, 8, |_, _| {}).expect("embed");
        let other = EmbeddingCache::open(dir.path(), "m", "another key", "tags");
        assert!(other.is_empty());
        assert!(other.stale().is_some_and(|r| r.contains("another key")));
        std::fs::write(dir.path().join("m/tags.f32"), [0u8; 3]).expect("cut");
        let cut = EmbeddingCache::for_embedder(dir.path(), &fake, "tags");
        assert!(cut.is_empty());
        assert!(
            cut.stale().is_some_and(|r| r.contains("bytes")),
            "{:?}",
            cut.stale()
        );
    }
}
