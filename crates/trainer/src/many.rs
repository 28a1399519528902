//! Several adapters at once: [`train_many`] trains a list of [`TrainJob`]s and
//! [`refit_many`] refits what follows their encoders ([`refit`]), `workers` jobs at a time,
//! each worker with its own copy of the base and its share of the cores. On 2 cores two
//! one-thread workers are the fastest (docs/experiments.md §14).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use lamoda_data::{Category, EtalonPool, ReviewStack, SplitConfig};
use lamoda_inference::format::{RUNTIME_FILE, TRAIN_CONFIG_FILE, write_json};
use lamoda_inference::{Adapter, AdapterMetrics};
use lamoda_model::LoadedBase;

use crate::error::TrainError;
use crate::finish::{Finished, FrozenVectors, finish_adapter};
use crate::train::{Progress, train_category_with};
use crate::train_config::TrainConfig;

/// One adapter to train (or refit): a category into `out/<category>/`.
#[derive(Debug, Clone)]
pub struct TrainJob {
    /// The category.
    pub category: Category,
    /// Its pool.
    pub pool: EtalonPool,
    /// Its training settings.
    pub config: TrainConfig,
    /// The rows the split deals into train and dev.
    pub rows: Vec<ReviewStack>,
    /// Rows added to the training side only (careful or team-reviewed products).
    pub extra: Vec<ReviewStack>,
    /// The directory of adapters it is written into.
    pub out: PathBuf,
}

/// How [`train_many`] and [`refit_many`] run.
#[derive(Debug, Clone, Copy)]
pub struct ManyOptions<'a> {
    /// The base model's HF directory, loaded once per worker.
    pub base_dir: &'a Path,
    /// Jobs at a time (at least 1).
    pub workers: usize,
    /// What each job reports as it goes.
    pub progress: Progress<'a>,
    /// Continue interrupted trainings from their checkpoints.
    pub resume: bool,
}

/// One trained adapter.
#[derive(Debug, Clone)]
pub struct Trained {
    /// The category.
    pub category: Category,
    /// Its directory (`<out>/<category>`).
    pub dir: PathBuf,
    /// What it recorded in `metrics.json`.
    pub metrics: AdapterMetrics,
    /// Wall time of the job.
    pub seconds: f64,
}

/// One refitted adapter.
#[derive(Debug)]
pub struct Refitted {
    /// The category.
    pub category: Category,
    /// Its directory.
    pub dir: PathBuf,
    /// The refit's figures, thresholds and branches.
    pub finished: Finished,
}

/// Trains every job, `options.workers` at a time; `on_start` hears each job as it starts
/// and `on_done` each result as it ends. After a failure the other workers stop once their
/// current job is done, and the error names the job's category.
pub fn train_many(
    jobs: Vec<TrainJob>,
    split: &SplitConfig,
    options: ManyOptions<'_>,
    on_start: impl Fn(&TrainJob) + Sync,
    on_done: impl Fn(&Trained) + Sync,
) -> Result<Vec<Trained>, TrainError> {
    run_jobs(options.base_dir, jobs, options.workers, |base, job| {
        let started = Instant::now();
        on_start(&job);
        let report = train_category_with(
            base,
            &job.pool,
            &job.rows,
            &job.extra,
            split,
            &job.config,
            &job.out,
            options.progress,
            options.resume,
        )
        .map_err(|source| TrainError::Job {
            what: "training",
            category: job.category,
            source: Box::new(source),
        })?;
        let trained = Trained {
            category: job.category,
            dir: report.dir,
            metrics: report.metrics,
            seconds: started.elapsed().as_secs_f64(),
        };
        on_done(&trained);
        Ok(trained)
    })
}

/// Refits every job's adapter in `job.out` ([`refit`]), `options.workers` at a time;
/// `on_done` hears each as it ends.
pub fn refit_many(
    jobs: Vec<TrainJob>,
    split: &SplitConfig,
    options: ManyOptions<'_>,
    on_done: impl Fn(&Refitted) + Sync,
) -> Result<Vec<Refitted>, TrainError> {
    run_jobs(options.base_dir, jobs, options.workers, |base, job| {
        let refitted =
            refit(base, &job, split, options.progress).map_err(|source| TrainError::Job {
                what: "refitting",
                category: job.category,
                source: Box::new(source),
            })?;
        on_done(&refitted);
        Ok(refitted)
    })
}

/// Refits what follows a trained adapter's encoder in `job.out/<category>/` as
/// `job.config` now asks (the lexical branch, the thresholds) on the split of `job.rows`,
/// keeping the encoder as trained; updates `lexical.*`, `thresholds.json`,
/// `train_config.json` and `metrics.json`.
pub fn refit(
    base: &LoadedBase,
    job: &TrainJob,
    split: &SplitConfig,
    progress: Progress<'_>,
) -> Result<Refitted, TrainError> {
    let category = job.category;
    let dir = job.out.join(category.name());
    let mut adapter = Adapter::load_encoder(&dir, base)?;
    // The encoder stays as trained; what follows it comes from the current config.
    let config_path = dir.join(TRAIN_CONFIG_FILE);
    let mut config = TrainConfig::read_record(&dir)?;
    if config.runtime() != adapter.runtime {
        return Err(TrainError::Config {
            path: config_path,
            field: "runtime",
            value: format!("{:?}", config.runtime()),
            reason: format!("the training config reads reviews otherwise than {RUNTIME_FILE} says"),
        });
    }
    config.tune_thresholds = job.config.tune_thresholds;
    config.tune_global_threshold = job.config.tune_global_threshold;
    config.lexical = job.config.lexical.clone();
    adapter.keep_base_for(config.lexical.as_ref(), base);
    let s = lamoda_data::train_dev_split(&job.rows, split);
    let train: Vec<&ReviewStack> = s.train.iter().map(|&i| &job.rows[i]).collect();
    let dev: Vec<&ReviewStack> = s.dev.iter().map(|&i| &job.rows[i]).collect();
    let train_stacks: Vec<&[String]> = train.iter().map(|r| r.reviews.as_slice()).collect();
    let dev_stacks: Vec<&[String]> = dev.iter().map(|r| r.reviews.as_slice()).collect();
    let lines = matches!(progress, Progress::Lines);
    if lines {
        eprintln!("{category}: reading {} dev products", dev.len());
    }
    let dev_outputs = adapter.encoder_outputs(&base.tokenizer, &dev_stacks, progress.steps())?;
    // The frozen view also needs the training products' review vectors: a pass of the
    // whole base over them.
    let train_vectors = if adapter.frozen.is_some() {
        if lines {
            eprintln!("{category}: reading {} training products", train.len());
        }
        adapter.base_vectors(&base.tokenizer, &train_stacks, progress.steps())?
    } else {
        None
    };
    let frozen = match (&train_vectors, &dev_outputs.vectors) {
        (Some(train), Some(dev)) => Some(FrozenVectors { train, dev }),
        _ => None,
    };
    let finished = finish_adapter(
        &dir,
        &job.pool,
        &train,
        &dev,
        &dev_outputs.probabilities,
        frozen,
        &config,
    )?;
    let mut metrics = AdapterMetrics::read(&dir)?;
    finished.record_into(&mut metrics);
    metrics.write(&dir)?;
    write_json(&config_path, &config)?;
    Ok(Refitted {
        category,
        dir,
        finished,
    })
}

/// Runs `work` on every job, `workers` at a time, each worker with its own copy of the
/// base loaded from `base_dir` and a thread pool of its share of the cores. After a failure
/// the jobs not started are dropped, so the other workers stop too.
pub fn run_jobs<J: Send, T: Send>(
    base_dir: &Path,
    jobs: Vec<J>,
    workers: usize,
    work: impl Fn(&LoadedBase, J) -> Result<T, TrainError> + Sync,
) -> Result<Vec<T>, TrainError> {
    let workers = workers.clamp(1, jobs.len().max(1));
    let queue = Mutex::new(jobs.into_iter());
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = (cores / workers).max(1);
    let results: Vec<Result<Vec<T>, TrainError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> Result<Vec<T>, TrainError> {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .map_err(|e| TrainError::Worker(format!("starting a thread pool: {e}")))?;
                    pool.install(|| worker(base_dir, &queue, &work))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(TrainError::Worker("a job panicked".into())))
            })
            .collect()
    });
    let mut done = Vec::new();
    for r in results {
        done.extend(r?);
    }
    Ok(done)
}

/// One worker of [`run_jobs`]: loads the base, then takes jobs until none is left or one
/// fails.
fn worker<J, T>(
    base_dir: &Path,
    queue: &Mutex<std::vec::IntoIter<J>>,
    work: &(impl Fn(&LoadedBase, J) -> Result<T, TrainError> + Sync),
) -> Result<Vec<T>, TrainError> {
    let base = lamoda_model::load_hf_dir(base_dir, &lamoda_model::default_device())?;
    let mut done = Vec::new();
    loop {
        let next = queue
            .lock()
            .map_err(|_| TrainError::Worker("another job failed".into()))?
            .next();
        let Some(job) = next else {
            break;
        };
        match work(&base, job) {
            Ok(result) => done.push(result),
            Err(e) => {
                if let Ok(mut rest) = queue.lock() {
                    rest.by_ref().for_each(drop);
                }
                return Err(e);
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_job_stops_the_queue_and_names_itself() {
        // No base directory: every worker fails to load it, before any job.
        let missing = Path::new("/nonexistent/base");
        let err = run_jobs(missing, vec![1, 2, 3], 2, |_, j: i32| Ok(j))
            .expect_err("no base")
            .to_string();
        assert!(err.contains("/nonexistent/base"), "{err}");
    }
}
