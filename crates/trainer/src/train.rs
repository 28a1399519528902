//! Per-category LoRA adapter training on CPU.
//!
//! A product is represented by its reviews, read as the adapter's
//! [`lamoda_inference::RuntimeSettings`] say: every review runs through the frozen lower
//! layers **once** ([`FeatureCache`]), then, at each step, through the LoRA-adapted top
//! `trainable_layers` layers with gradients, is mean-pooled over its tokens; the head turns
//! those review vectors into a product's tag logits as `pooling` says. The forward pass is
//! the runtime's ([`lamoda_inference::forward`]), on Burn's autodiff device.
//!
//! [`train_category`] trains one category's adapter + head with AdamW (linear warm-up, then
//! linear decay), evaluates on dev after every epoch (micro-F1 at threshold 0.5 with the
//! pool's decoding, beside the frequency prior), keeps the best epoch's adapter in
//! `<out>/<category>/` with `runtime.json` and `metrics.json`, then
//! [`crate::finish_adapter`] fits the lexical branch (when the config has `[lexical]`; its
//! frozen view reads the base's own review vectors from the same cache), averages it with
//! the encoder's probabilities and tunes the thresholds the config asks for on the average.
//! What it writes is the runtime's format ([`lamoda_inference::format`]), loaded by
//! [`lamoda_inference::Adapter::load`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use lamoda_data::{DecodeConfig, EtalonPool, ReviewStack, SplitConfig, train_dev_split};
use lamoda_inference::adapter::adapted_packed;
use lamoda_inference::format::{
    AdapterMetrics, EpochRecord, RUNTIME_FILE, TRAIN_CONFIG_FILE, read_json, write_json,
};
use lamoda_inference::forward::{
    FeatureCache, cached_probabilities, encoder_device, frozen_review_vectors, product_logits,
    to_vec, tokenize_stacks,
};
use lamoda_metrics::{FrequencyPrior, evaluate_prior, evaluate_probabilities};
use lamoda_model::burn::module::{Module, Param};
use lamoda_model::burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use lamoda_model::burn::tensor::{Device, Tensor, TensorData};
use lamoda_model::{HeadSpec, LoadedBase, TagModel};

use crate::error::{TrainError, io_err};
use crate::finish::{FrozenVectors, finish_adapter};
use crate::report::REPORT_K;
use crate::step::{learning_rate, loss, review_statistics};
use crate::train_config::TrainConfig;

/// Per-epoch checkpoint directory (inside the adapter directory) used by `resume`.
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// Progress of a run, inside [`CHECKPOINT_DIR`].
pub const CHECKPOINT_STATE_FILE: &str = "state.json";

/// What [`train_category`] tells the user on stderr while it works.
#[derive(Clone, Copy, Default)]
pub enum Progress<'a> {
    /// Nothing.
    #[default]
    Quiet,
    /// One line when the cache is built and one per epoch (for logs, or several
    /// categories trained at once).
    Lines,
    /// The lines, plus the steps of the cache and of each epoch told to a listener (the
    /// binary's progress bar).
    Steps(&'a dyn lamoda_inference::Progress),
}

impl<'a> Progress<'a> {
    /// Whether the lines are printed.
    pub fn lines(self) -> bool {
        !matches!(self, Progress::Quiet)
    }

    /// The listener of the steps ([`lamoda_inference::Silent`] unless [`Progress::Steps`]).
    pub fn steps(self) -> &'a dyn lamoda_inference::Progress {
        match self {
            Progress::Steps(listener) => listener,
            Progress::Quiet | Progress::Lines => &lamoda_inference::Silent,
        }
    }
}

impl std::fmt::Debug for Progress<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Progress::Quiet => "Quiet",
            Progress::Lines => "Lines",
            Progress::Steps(_) => "Steps",
        })
    }
}

/// The result of [`train_category`].
#[derive(Debug)]
pub struct TrainReport {
    /// The figures written to `metrics.json`.
    pub metrics: AdapterMetrics,
    /// The adapter directory (`<out>/<category>`).
    pub dir: PathBuf,
    /// The best epoch's model, on the plain (non-autodiff) device.
    pub model: TagModel,
    /// Tuned per-tag thresholds, when asked for.
    pub thresholds: Option<Vec<f32>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointState {
    epochs_done: usize,
    best_epoch: usize,
    best_micro_f1: f64,
    history: Vec<EpochRecord>,
}

/// Train `pool.category`'s adapter and head on the training split of `rows` and keep the
/// best epoch (by dev micro-F1) in `out/<category>/`.
///
/// `base` may live on any device; training runs on its autodiff form. With `resume`, a
/// checkpoint left in `out/<category>/checkpoint/` by an interrupted run is continued
/// (adapter weights and progress; AdamW's moments restart).
#[allow(clippy::too_many_arguments)]
pub fn train_category(
    base: &LoadedBase,
    pool: &EtalonPool,
    rows: &[ReviewStack],
    split: &SplitConfig,
    config: &TrainConfig,
    out: &Path,
    progress: Progress,
    resume: bool,
) -> Result<TrainReport, TrainError> {
    train_category_with(base, pool, rows, &[], split, config, out, progress, resume)
}

/// [`train_category`] with `extra` rows added to the training split (never to dev): e.g.
/// carefully labelled products with their careful tags, which the dev split of `rows`
/// must not depend on.
#[allow(clippy::too_many_arguments)]
pub fn train_category_with(
    base: &LoadedBase,
    pool: &EtalonPool,
    rows: &[ReviewStack],
    extra: &[ReviewStack],
    split: &SplitConfig,
    config: &TrainConfig,
    out: &Path,
    progress: Progress,
    resume: bool,
) -> Result<TrainReport, TrainError> {
    let category = pool.category.name().to_string();
    let n_layers = base.encoder.num_layers();
    config.validate(Path::new("<config>"), Some(n_layers))?;
    split.validate().map_err(|reason| TrainError::Config {
        path: PathBuf::from("<split>"),
        field: "split",
        value: format!("{split:?}"),
        reason,
    })?;
    let mut s = train_dev_split(rows, split);
    let combined: Vec<ReviewStack>;
    let rows: &[ReviewStack] = if extra.is_empty() {
        rows
    } else {
        s.train.extend(rows.len()..rows.len() + extra.len());
        combined = rows.iter().chain(extra).cloned().collect();
        &combined
    };
    if s.train.is_empty() || s.dev.is_empty() {
        return Err(TrainError::EmptySplit {
            category,
            n_train: s.train.len(),
            n_dev: s.dev.len(),
        });
    }
    let train_targets: Vec<Vec<f32>> = s
        .train
        .iter()
        .map(|&i| targets_of(pool, &rows[i]))
        .collect::<Result<_, _>>()?;
    let train_rows: Vec<&ReviewStack> = s.train.iter().map(|&i| &rows[i]).collect();
    let dev_rows: Vec<&ReviewStack> = s.dev.iter().map(|&i| &rows[i]).collect();
    let prior = FrequencyPrior::fit(pool, train_rows.iter().copied());
    let prior_metrics = evaluate_prior(&prior, pool, &dev_rows, REPORT_K);

    // Devices: the cache and evaluation on the plain device, training on autodiff.
    let plain = encoder_device(&base.encoder).inner();
    let ad = plain.clone().autodiff();
    let frozen = base.encoder.valid();

    // Cache: products 0..n_train are training rows, then dev rows.
    let lora = config.lora_config(n_layers);
    let stacks: Vec<&[String]> = s
        .train
        .iter()
        .chain(&s.dev)
        .map(|&i| rows[i].reviews.as_slice())
        .collect();
    let ids = tokenize_stacks(&base.tokenizer, &stacks, &config.runtime())?;
    let t0 = Instant::now();
    let cache = FeatureCache::build(&base.packed, &ids, lora.first_layer, progress.steps())?;
    let cache_seconds = t0.elapsed().as_secs_f64();
    if progress.lines() {
        eprintln!(
            "{category}: cached {} reviews of {} products ({:.0} MB) in {cache_seconds:.1} s",
            cache.n_reviews(),
            cache.products.len(),
            cache.bytes() as f64 / 1e6
        );
    }
    let train_idx: Vec<usize> = (0..s.train.len()).collect();
    let dev_idx: Vec<usize> = (s.train.len()..stacks.len()).collect();
    let dir = out.join(&category);
    let ckpt = dir.join(CHECKPOINT_DIR);
    std::fs::create_dir_all(&ckpt).map_err(io_err(&ckpt))?;
    let ckpt_state_path = ckpt.join(CHECKPOINT_STATE_FILE);
    let resuming = resume && ckpt_state_path.is_file();
    // The base's own review vectors (its top layers over the cache, LoRA absent), computed
    // once: a fresh run standardises the head with the training rows', and the lexical
    // branch's frozen view reads every row's.
    let frozen_view = matches!(&config.lexical, Some(lexical) if lexical.frozen_view);
    let base_vectors = if frozen_view {
        let all: Vec<usize> = (0..stacks.len()).collect();
        Some(frozen_review_vectors(&base.packed, &cache, &all)?)
    } else if !resuming {
        Some(frozen_review_vectors(&base.packed, &cache, &train_idx)?)
    } else {
        None
    };

    let n_tags = pool.len();
    let heads = vec![HeadSpec {
        name: category.clone(),
        tags: pool.tags.clone(),
    }];
    let mut state = CheckpointState {
        epochs_done: 0,
        best_epoch: 0,
        best_micro_f1: f64::NEG_INFINITY,
        history: Vec::new(),
    };
    ad.seed(config.seed);
    let mut model = if resuming {
        state = read_json(&ckpt_state_path)?;
        let (model, _) =
            TagModel::load_adapter(&ckpt, base.encoder.clone().to_device(&ad), &base.info, &ad)?;
        check_head(&model, pool, &ckpt)?;
        model
    } else {
        let mut model = TagModel::new(base.encoder.clone().to_device(&ad), lora, heads, &ad)?;
        // Standardise the head's input with the training reviews' statistics under the
        // initial adapter (LoRA starts as the identity, so this is the base's output).
        let train_vectors = base_vectors.as_deref().and_then(|v| v.get(..s.train.len()));
        let (mean, std) = review_statistics(train_vectors.unwrap_or_default(), cache.hidden);
        model.heads[0].set_standardisation(
            Tensor::<1>::from_data(TensorData::new(mean, [cache.hidden]), &ad),
            Tensor::<1>::from_data(TensorData::new(std, [cache.hidden]), &ad),
        );
        if config.prior_bias_init {
            let logits: Vec<f32> = prior
                .frequencies
                .iter()
                .map(|&f| {
                    let f = f.clamp(1e-3, 1.0 - 1e-3);
                    (f / (1.0 - f)).ln()
                })
                .collect();
            model.heads[0].linear.bias = Some(Param::from_tensor(Tensor::<1>::from_data(
                TensorData::new(logits, [n_tags]),
                &ad,
            )));
        }
        model
    };
    // The best epoch's model and its dev probabilities (those computed when it was chosen).
    let mut best_probs: Option<Vec<Vec<f32>>> = None;
    let mut best: Option<TagModel> = if state.best_epoch > 0 {
        let (m, _) = TagModel::load_adapter(&dir, frozen.clone(), &base.info, &plain)?;
        Some(m)
    } else {
        None
    };

    let steps_per_epoch = train_idx.len().div_ceil(config.batch_size);
    let total_steps = steps_per_epoch * config.epochs;
    let mut optims = Optimizers::new(config);
    let decoding = DecodeConfig::default();
    let dev_probabilities = |m: &TagModel| -> Result<Vec<Vec<f32>>, TrainError> {
        Ok(cached_probabilities(
            m,
            &adapted_packed(base, m)?,
            &cache,
            &dev_idx,
            config.pooling,
            config.eval_batch_size,
            &plain,
        )?)
    };
    let t_train = Instant::now();
    let mut stopped_early = false;
    for epoch in state.epochs_done + 1..=config.epochs {
        let t_epoch = Instant::now();
        let mut order = train_idx.clone();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            config.seed.wrapping_add(epoch as u64),
        ));
        let steps = progress.steps();
        steps.start("training", steps_per_epoch as u64);
        let mut loss_sum = 0f64;
        for (b, batch) in order.chunks(config.batch_size).enumerate() {
            let step = (epoch - 1) * steps_per_epoch + b;
            let lr = learning_rate(config, step, total_steps);
            let (next, l) = train_step(
                model,
                &mut optims,
                config,
                &cache,
                batch,
                &train_targets,
                lr,
                &ad,
            )?;
            model = next;
            loss_sum += l;
            steps.advance(1);
        }
        steps.finish();
        let seconds = t_epoch.elapsed().as_secs_f64();
        let eval_model = model.valid();
        let probs = dev_probabilities(&eval_model)?;
        let m = evaluate_probabilities(&probs, pool, &dev_rows, &decoding, REPORT_K);
        let record = EpochRecord {
            epoch,
            train_loss: loss_sum / steps_per_epoch.max(1) as f64,
            dev_micro_f1: m.micro_f1,
            seconds,
        };
        if progress.lines() {
            eprintln!(
                "{category} epoch {epoch}: loss {:.4}, dev micro-F1 {:.4} (prior {:.4}), {seconds:.1} s",
                record.train_loss, m.micro_f1, prior_metrics.micro_f1
            );
        }
        state.history.push(record);
        state.epochs_done = epoch;
        if m.micro_f1 > state.best_micro_f1 {
            state.best_micro_f1 = m.micro_f1;
            state.best_epoch = epoch;
            eval_model.save_adapter(&dir, &base.info)?;
            best = Some(eval_model);
            best_probs = Some(probs);
        }
        model.save_adapter(&ckpt, &base.info)?;
        write_json(&ckpt_state_path, &state)?;
        if config.patience > 0 && epoch - state.best_epoch >= config.patience {
            stopped_early = true;
            break;
        }
    }
    let train_seconds = t_train.elapsed().as_secs_f64();
    let best = match best {
        Some(b) => b,
        None => model.valid(),
    };
    let best_probs = match best_probs {
        Some(probs) => probs,
        None => dev_probabilities(&best)?,
    };
    let frozen_vectors = base_vectors.as_ref().filter(|_| frozen_view).map(|v| {
        let (train, dev) = v.split_at(s.train.len());
        FrozenVectors { train, dev }
    });
    let finished = finish_adapter(
        &dir,
        pool,
        &train_rows,
        &dev_rows,
        &best_probs,
        frozen_vectors,
        config,
    )?;
    if let (true, Some(branches)) = (progress.lines(), &finished.branches) {
        eprintln!(
            "{category}: lexical branch fitted in {:.1} s ({} features)",
            branches.lexical_seconds, branches.vocabulary
        );
    }
    let metrics = AdapterMetrics {
        category: category.clone(),
        epoch: state.best_epoch,
        dev: finished.dev.clone(),
        prior: prior_metrics,
        tuned: finished.tuned.clone(),
        n_train: s.train.len(),
        n_dev: s.dev.len(),
        n_reviews: cache.n_reviews(),
        cache_seconds,
        train_seconds,
        history: state.history,
        stopped_early,
        branches: finished.branches,
        careful: None,
    };
    metrics.write(&dir)?;
    write_json(&dir.join(TRAIN_CONFIG_FILE), config)?;
    write_json(&dir.join(RUNTIME_FILE), &config.runtime())?;
    Ok(TrainReport {
        metrics,
        dir,
        model: best,
        thresholds: finished.thresholds,
    })
}

/// AdamW over the trainable parameters; with `head_lr`, a second one over the head alone.
struct Optimizers {
    encoder: ModuleOptimizer,
    head: ModuleOptimizer,
}

impl Optimizers {
    fn new(config: &TrainConfig) -> Self {
        let adamw = AdamWConfig::new().with_weight_decay(config.weight_decay as f32);
        Optimizers {
            encoder: adamw.init(),
            head: adamw.init(),
        }
    }
}

/// One training step: the adapted layers and head over cached products `batch`, the loss
/// against `targets` (indexed like the cache), backward, AdamW at `lr`. The updated model
/// and the batch's loss.
#[allow(clippy::too_many_arguments)]
fn train_step(
    model: TagModel,
    optims: &mut Optimizers,
    config: &TrainConfig,
    cache: &FeatureCache,
    batch: &[usize],
    targets: &[Vec<f32>],
    lr: f64,
    ad: &Device,
) -> Result<(TagModel, f64), TrainError> {
    let logits = product_logits(&model, 0, cache, batch, config.pooling, ad);
    let n_tags = targets.first().map_or(0, Vec::len);
    let batch_targets: Vec<f32> = batch
        .iter()
        .flat_map(|&i| targets[i].iter().copied())
        .collect();
    let batch_targets =
        Tensor::<2>::from_data(TensorData::new(batch_targets, [batch.len(), n_tags]), ad);
    let l = loss(config.loss, logits, batch_targets);
    let value = f64::from(to_vec(l.clone())?.first().copied().unwrap_or(f32::NAN));
    let mut grads = l.backward();
    let model = match config.head_lr {
        None => {
            let grads = GradientsParams::from_grads(grads, &model);
            optims.encoder.step(lr, model, grads)
        }
        Some(head_lr) => {
            let head = GradientsParams::from_module(&mut grads, &model.heads);
            let encoder = GradientsParams::from_module(&mut grads, &model.encoder);
            let model = optims.encoder.step(lr, model, encoder);
            optims.head.step(lr / config.lr * head_lr, model, head)
        }
    };
    Ok((model, value))
}

/// What [`bench_steps`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct StepBench {
    /// Products in the cache.
    pub products: usize,
    /// Reviews in the cache.
    pub reviews: usize,
    /// Seconds of the cache pass (the frozen lower layers over every review).
    pub cache_seconds: f64,
    /// Products per step (the config's batch size).
    pub batch_size: usize,
    /// Seconds of each timed step, after one untimed warm-up step.
    pub step_seconds: Vec<f64>,
}

/// Time the training loop's parts on `rows` (all of them, no split): the cache pass,
/// then `steps` training steps of `config`'s batch size (after one warm-up step), each the
/// very step [`train_category`] takes. Nothing is written.
pub fn bench_steps(
    base: &LoadedBase,
    pool: &EtalonPool,
    rows: &[ReviewStack],
    config: &TrainConfig,
    steps: usize,
) -> Result<StepBench, TrainError> {
    let n_layers = base.encoder.num_layers();
    config.validate(Path::new("<config>"), Some(n_layers))?;
    let category = pool.category.name().to_string();
    if rows.is_empty() {
        return Err(TrainError::EmptySplit {
            category,
            n_train: 0,
            n_dev: 0,
        });
    }
    let targets: Vec<Vec<f32>> = rows
        .iter()
        .map(|row| targets_of(pool, row))
        .collect::<Result<_, _>>()?;
    let stacks: Vec<&[String]> = rows.iter().map(|r| r.reviews.as_slice()).collect();
    let ids = tokenize_stacks(&base.tokenizer, &stacks, &config.runtime())?;
    let lora = config.lora_config(n_layers);
    let t0 = Instant::now();
    let cache = FeatureCache::build(
        &base.packed,
        &ids,
        lora.first_layer,
        &lamoda_inference::Silent,
    )?;
    let cache_seconds = t0.elapsed().as_secs_f64();
    let plain = encoder_device(&base.encoder).inner();
    let ad = plain.autodiff();
    ad.seed(config.seed);
    let heads = vec![HeadSpec {
        name: category,
        tags: pool.tags.clone(),
    }];
    let mut model = TagModel::new(base.encoder.clone().to_device(&ad), lora, heads, &ad)?;
    let mut optims = Optimizers::new(config);
    let all: Vec<usize> = (0..rows.len()).collect();
    let batches: Vec<&[usize]> = all
        .chunks(config.batch_size)
        .cycle()
        .take(steps + 1)
        .collect();
    let mut step_seconds = Vec::with_capacity(steps);
    for (i, batch) in batches.into_iter().enumerate() {
        let t = Instant::now();
        let (next, _) = train_step(
            model,
            &mut optims,
            config,
            &cache,
            batch,
            &targets,
            config.lr,
            &ad,
        )?;
        model = next;
        if i > 0 {
            step_seconds.push(t.elapsed().as_secs_f64());
        }
    }
    Ok(StepBench {
        products: rows.len(),
        reviews: cache.n_reviews(),
        cache_seconds,
        batch_size: config.batch_size,
        step_seconds,
    })
}

/// `row`'s tags as 0/1 targets in `pool` order; a tag outside the pool is an error naming
/// the row.
fn targets_of(pool: &EtalonPool, row: &ReviewStack) -> Result<Vec<f32>, TrainError> {
    let mut t = vec![0f32; pool.len()];
    for tag in &row.tags {
        let i = pool.index_of(tag).ok_or_else(|| TrainError::UnknownTag {
            row: row.row,
            tag: tag.clone(),
            category: pool.category.name().to_string(),
        })?;
        t[i] = 1.0;
    }
    Ok(t)
}

fn check_head(model: &TagModel, pool: &EtalonPool, dir: &Path) -> Result<(), TrainError> {
    let wrong = |reason: String| TrainError::WrongAdapter {
        path: dir.to_path_buf(),
        category: pool.category.name().to_string(),
        reason,
    };
    let head = model.heads.first().ok_or_else(|| wrong("no head".into()))?;
    if head.tags() != pool.tags.as_slice() {
        return Err(wrong(format!(
            "adapter has {} tags, pool {}",
            head.tags().len(),
            pool.len()
        )));
    }
    Ok(())
}
