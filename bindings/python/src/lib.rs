//! `lamoda_tags._native`: the runtime's [`Tagger`] as a Python class, for the `lamoda-tags`
//! Python package (`bindings/python/python/lamoda_tags/`, which wraps it with the
//! documented API: `Tagger.load`, `predict`, `predict_many`, `predict_table`, pickling).
//!
//! Every call that loads or runs the model releases the GIL ([`Python::detach`]) and runs
//! in the tagger's own rayon pool of `num_threads` threads: the encoder's kernels size
//! their work by the pool they run in, so two taggers in one process, or one per Ray actor
//! on a node, each use only their share of the cores. Rust errors become Python
//! exceptions with the one-line message `predict-tags` prints: `ValueError` for a bad
//! option or product, `BundleError` (a `LamodaError`) for a bundle or base that cannot be
//! loaded, `LamodaError` for the rest.

use std::path::PathBuf;

use lamoda_inference::batch::sku_hash;
use lamoda_inference::{
    DecodeOptions, InferenceError, Precision, Prediction, Request, Tagger, error_line,
};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

create_exception!(
    _native,
    LamodaError,
    PyException,
    "A failure of the Lamoda Tags runtime."
);
create_exception!(
    _native,
    BundleError,
    LamodaError,
    "A model bundle or base model that cannot be loaded (missing, of another format, or not the bundle's base)."
);

/// The Python exception for a runtime error, with its one-line message.
fn to_py(err: InferenceError) -> PyErr {
    let message = error_line(&err);
    match err {
        InferenceError::Decode { .. }
        | InferenceError::NoAdapter { .. }
        | InferenceError::NoReviews { .. } => PyValueError::new_err(message),
        InferenceError::NoModelDir { .. }
        | InferenceError::NotABundle { .. }
        | InferenceError::FormatVersion { .. }
        | InferenceError::WrongBase { .. }
        | InferenceError::MissingCategory { .. }
        | InferenceError::UnroutedCategory { .. }
        | InferenceError::NoBase { .. }
        | InferenceError::Model(_)
        | InferenceError::Data(_)
        | InferenceError::Adapter { .. }
        | InferenceError::HeadWidth { .. }
        | InferenceError::TagMismatch { .. }
        | InferenceError::Careful { .. }
        | InferenceError::Thresholds { .. }
        | InferenceError::Config { .. }
        | InferenceError::Format { .. } => BundleError::new_err(message),
        _ => LamodaError::new_err(message),
    }
}

/// A loaded model bundle: the base encoder and every category's adapter, with a rayon pool
/// of its own.
#[pyclass(frozen, module = "lamoda_tags._native", name = "NativeTagger")]
struct NativeTagger {
    tagger: Tagger,
    pool: rayon::ThreadPool,
    model_dir: PathBuf,
    base_dir: Option<PathBuf>,
}

/// What an answer holds of the model: `(bundle, base)` names.
fn model_dict<'py>(py: Python<'py>, tagger: &Tagger) -> PyResult<Bound<'py, PyDict>> {
    let (bundle, base) = tagger.model_names();
    let d = PyDict::new(py);
    d.set_item("bundle", bundle)?;
    d.set_item("base", base)?;
    Ok(d)
}

/// One answer as the API's `/v1/tags` gives it (without `sku`, which the caller adds).
fn prediction_dict<'py>(
    py: Python<'py>,
    p: &Prediction,
    model: &Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyDict>> {
    let tags = PyList::empty(py);
    for t in &p.tags {
        let evidence = PyList::empty(py);
        for e in &t.evidence {
            let d = PyDict::new(py);
            d.set_item("review", e.review)?;
            d.set_item("text", &e.text)?;
            d.set_item("score", e.score)?;
            evidence.append(d)?;
        }
        let d = PyDict::new(py);
        d.set_item("tag", &t.tag)?;
        d.set_item("probability", t.probability)?;
        d.set_item("mentions", t.mentions)?;
        d.set_item("evidence", evidence)?;
        tags.append(d)?;
    }
    let probabilities = PyDict::new(py);
    for t in &p.probabilities {
        probabilities.set_item(&t.tag, t.probability)?;
    }
    let d = PyDict::new(py);
    d.set_item("good_type", &p.good_type)?;
    d.set_item("routed_to", p.category.name())?;
    d.set_item("fallback", p.fallback)?;
    d.set_item("tags", tags)?;
    d.set_item("probabilities", probabilities)?;
    d.set_item("reviews_read", p.reviews_read)?;
    d.set_item("calibrated", p.calibrated)?;
    d.set_item("model", model.copy()?)?;
    Ok(d)
}

#[pymethods]
impl NativeTagger {
    /// Loads the bundle in `model_dir` on the base in `base_dir` (default: the bundle's
    /// recorded one), with a pool of `num_threads` threads (default: one per core), the
    /// encoder at `precision` (`"fp32"` or `"int8"`; default: each adapter's
    /// `runtime.json`).
    #[new]
    #[pyo3(signature = (model_dir, base_dir=None, num_threads=None, precision=None))]
    fn new(
        py: Python<'_>,
        model_dir: PathBuf,
        base_dir: Option<PathBuf>,
        num_threads: Option<usize>,
        precision: Option<String>,
    ) -> PyResult<Self> {
        if num_threads == Some(0) {
            return Err(PyValueError::new_err(
                "num_threads must be at least 1 (or None for one per core)",
            ));
        }
        let precision = precision
            .map(|p| p.parse::<Precision>())
            .transpose()
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(num_threads.unwrap_or(0))
            .thread_name(|i| format!("lamoda-tagger-{i}"))
            .build()
            .map_err(|e| LamodaError::new_err(format!("cannot start the thread pool: {e}")))?;
        let mut tagger = py
            .detach(|| {
                pool.install(|| Tagger::open(&model_dir, base_dir.as_deref()).map_err(Box::new))
            })
            .map_err(|err| match *err {
                err @ InferenceError::NoModelDir { .. } => BundleError::new_err(format!(
                    "{} (give the bundle's directory as model_dir)",
                    error_line(&err)
                )),
                err => to_py(err),
            })?;
        if let Some(p) = precision {
            tagger.set_precision(p);
        }
        Ok(Self {
            tagger,
            pool,
            model_dir,
            base_dir,
        })
    }

    /// The bundle's directory, as given.
    #[getter]
    fn model_dir(&self) -> PathBuf {
        self.model_dir.clone()
    }

    /// The base's directory as given (`None`: the bundle's recorded default).
    #[getter]
    fn base_dir(&self) -> Option<PathBuf> {
        self.base_dir.clone()
    }

    /// Threads in this tagger's pool.
    #[getter]
    fn num_threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// The categories with an adapter, in the runtime's order.
    #[getter]
    fn categories(&self) -> Vec<&'static str> {
        self.tagger.categories().iter().map(|c| c.name()).collect()
    }

    /// The bundle's description: format, directory, base, categories, routing and each
    /// category's pool.
    #[getter]
    fn bundle_info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let bundle = self.tagger.bundle();
        let manifest = bundle.manifest();
        let info = &self.tagger.base().info;
        let base = PyDict::new(py);
        base.set_item("name", &manifest.base.name)?;
        base.set_item("sha256", &info.weights_sha256)?;
        base.set_item("dir", info.dir.display().to_string())?;
        let routing = PyDict::new(py);
        for (good_type, category) in &bundle.routing().good_types {
            routing.set_item(good_type, category.name())?;
        }
        let pools = PyDict::new(py);
        for category in self.tagger.categories() {
            if let Some(pool) = self.tagger.pool(category) {
                pools.set_item(category.name(), pool.tags.clone())?;
            }
        }
        let d = PyDict::new(py);
        d.set_item("format", &manifest.format)?;
        d.set_item("dir", bundle.dir().display().to_string())?;
        d.set_item("base", base)?;
        d.set_item("categories", self.categories())?;
        d.set_item("routing", routing)?;
        d.set_item("fallback", bundle.routing().fallback.name())?;
        d.set_item("pools", pools)?;
        d.set_item("model", model_dict(py, &self.tagger)?)?;
        Ok(d)
    }

    /// Checks `items` (`(good_type, reviews)` pairs) as `predict_many` does before any
    /// encoding, without encoding: each item's error message, or `None`. Bad options
    /// raise `ValueError`.
    #[pyo3(signature = (items, threshold=None, max_tags=None, min_mentions=0))]
    fn check_many(
        &self,
        items: Vec<(String, Vec<String>)>,
        threshold: Option<f32>,
        max_tags: Option<usize>,
        min_mentions: usize,
    ) -> PyResult<Vec<Option<String>>> {
        let options = DecodeOptions {
            threshold,
            max_tags,
            min_mentions,
        };
        options.validate().map_err(to_py)?;
        Ok(items
            .into_iter()
            .enumerate()
            .map(|(index, (good_type, reviews))| {
                let request = Request {
                    good_type: good_type.trim().to_owned(),
                    reviews,
                    options,
                };
                self.tagger
                    .check(index, &request)
                    .err()
                    .map(|err| error_line(&err))
            })
            .collect())
    }

    /// Tags `items` (`(good_type, reviews)` pairs), `batch_size` products per encoder
    /// batch, in order. Every item is checked first (see `check_many`): the first bad one
    /// raises `ValueError` naming its index, before any encoding.
    #[pyo3(signature = (items, threshold=None, max_tags=None, min_mentions=0, batch_size=64))]
    fn predict_many<'py>(
        &self,
        py: Python<'py>,
        items: Vec<(String, Vec<String>)>,
        threshold: Option<f32>,
        max_tags: Option<usize>,
        min_mentions: usize,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        if batch_size == 0 {
            return Err(PyValueError::new_err("batch_size must be at least 1"));
        }
        let options = DecodeOptions {
            threshold,
            max_tags,
            min_mentions,
        };
        options.validate().map_err(to_py)?;
        let requests: Vec<Request> = items
            .into_iter()
            .map(|(good_type, reviews)| Request {
                good_type: good_type.trim().to_owned(),
                reviews,
                options,
            })
            .collect();
        for (index, request) in requests.iter().enumerate() {
            self.tagger.check(index, request).map_err(to_py)?;
        }
        let tagger = &self.tagger;
        let predictions = py.detach(|| {
            self.pool.install(|| {
                let mut out = Vec::with_capacity(requests.len());
                for chunk in requests.chunks(batch_size) {
                    out.extend(tagger.predict(chunk).map_err(Box::new)?);
                }
                Ok::<_, Box<InferenceError>>(out)
            })
        });
        let predictions = predictions.map_err(|err| to_py(*err))?;
        let model = model_dict(py, tagger)?;
        let list = PyList::empty(py);
        for p in &predictions {
            list.append(prediction_dict(py, p, &model)?)?;
        }
        Ok(list)
    }

    fn __repr__(&self) -> String {
        format!(
            "NativeTagger(model_dir={:?}, categories={:?}, num_threads={})",
            self.model_dir.display().to_string(),
            self.categories(),
            self.num_threads()
        )
    }
}

/// The shard (0..n) of `sku` that `predict-tags --shard I/N` gives it: 64-bit FNV-1a of
/// its UTF-8 bytes, modulo `n`.
#[pyfunction]
fn sku_shard(sku: &str, n: u64) -> PyResult<u64> {
    if n == 0 {
        return Err(PyValueError::new_err("n must be at least 1"));
    }
    Ok(sku_hash(sku) % n)
}

/// The shipped bundle of a project checkout: the first `adapters/` holding a `bundle.json`
/// in or above `start` (as `predict-tags` looks from the current directory), or `None`.
#[pyfunction]
fn find_checkout_bundle(start: PathBuf) -> Option<String> {
    lamoda_inference::find_checkout_bundle(&[&start]).map(|dir| dir.display().to_string())
}

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeTagger>()?;
    m.add_function(wrap_pyfunction!(sku_shard, m)?)?;
    m.add_function(wrap_pyfunction!(find_checkout_bundle, m)?)?;
    m.add("LamodaError", m.py().get_type::<LamodaError>())?;
    m.add("BundleError", m.py().get_type::<BundleError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
