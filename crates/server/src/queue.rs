//! The inference queue: one thread owns the encoder's work, off the async runtime. Each
//! job is a request's products; the thread takes the first waiting job, then every job
//! already waiting behind it up to `max_batch_products` products, and scores them in one
//! [`Tagger::score`] call (one encoder pass per category). A job whose products fail is
//! answered with its error alone: the others of the batch are scored again without it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;

use lamoda_inference::{Request, Scores, Tagger};
use tokio::sync::{mpsc, oneshot};

/// What a job gets back: the scores of its products, in order, or why not.
pub type JobResult = Result<Vec<Scores>, String>;

/// A request's products waiting for the encoder.
#[derive(Debug)]
pub struct Job {
    /// The products.
    pub requests: Vec<Request>,
    /// Where the answer goes (a client that went away is not an error).
    pub reply: oneshot::Sender<JobResult>,
}

/// Starts the thread that scores the jobs of `jobs` with `tagger`; `on_batch` hears the
/// products of each encoder call. It ends when every sender of `jobs` is gone.
pub fn spawn_worker(
    tagger: Arc<Tagger>,
    mut jobs: mpsc::Receiver<Job>,
    max_batch_products: usize,
    on_batch: impl Fn(usize) + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("lamoda-inference".into())
        .spawn(move || {
            while let Some(first) = jobs.blocking_recv() {
                let mut batch = vec![first];
                let mut products = batch[0].requests.len();
                while products < max_batch_products {
                    match jobs.try_recv() {
                        Ok(job) => {
                            products += job.requests.len();
                            batch.push(job);
                        }
                        Err(_) => break,
                    }
                }
                on_batch(products);
                run_batch(&tagger, batch);
            }
        })
}

/// Scores a batch of jobs together; when that fails, each job alone.
fn run_batch(tagger: &Tagger, batch: Vec<Job>) {
    let all: Vec<Request> = batch
        .iter()
        .flat_map(|j| j.requests.iter().cloned())
        .collect();
    match score(tagger, &all) {
        Ok(mut scores) => {
            for job in batch {
                let rest = scores.split_off(job.requests.len().min(scores.len()));
                let mine = std::mem::replace(&mut scores, rest);
                let _ = job.reply.send(Ok(mine));
            }
        }
        Err(_) if batch.len() > 1 => {
            for job in batch {
                let result = score(tagger, &job.requests);
                let _ = job.reply.send(result);
            }
        }
        Err(e) => {
            for job in batch {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }
}

/// [`Tagger::score`], with a panic turned into an error (the thread lives on).
fn score(tagger: &Tagger, requests: &[Request]) -> JobResult {
    let scored = catch_unwind(AssertUnwindSafe(|| {
        tagger.score(requests).map_err(|e| e.to_string())
    }));
    match scored {
        Ok(Ok(scores)) if scores.len() == requests.len() => Ok(scores),
        Ok(Ok(scores)) => Err(format!(
            "{} answers for {} products",
            scores.len(),
            requests.len()
        )),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("the model failed on these products".into()),
    }
}
