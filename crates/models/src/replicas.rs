//! Independent work on several CPU cores at once: each worker is an OS thread with its own
//! replica of the model ([`Classifier::replica`]) and one libtorch thread.
//!
//! On a small network libtorch's intra-op threads scale poorly (two threads on one attack step of
//! the Fashion-MNIST CNN at batch 128 do ~1.1x the work of one), while independent jobs on
//! separate cores scale almost linearly (1.83x with two 1-thread workers: docs/performance.md,
//! "Two workers of 1 thread"). The blocks of rows of an attack are such jobs: a row's result does
//! not depend on the other rows. [`map_on_replicas`] runs them that way when the stage was given
//! more than one thread; every job's result is the one it has on one thread, whichever worker
//! computes it, so the output does not depend on the number of workers.
//!
//! ```
//! use nrf_models::{replicas::map_on_replicas, Arch, Classifier, Model, ModelSpec};
//! # fn main() -> anyhow::Result<()> {
//! let model = Model::new(&ModelSpec::new(Arch::FmnistCnn, [1, 28, 28], 10), tch::Device::Cpu, 0)?;
//! let blocks: Vec<tch::Tensor> = (0..4).map(|_| tch::Tensor::rand([8, 1, 28, 28], tch::kind::FLOAT_CPU)).collect();
//! // The predicted classes of four blocks, on two workers.
//! let preds = map_on_replicas(&model, blocks, 2, |m: &dyn Classifier, x: tch::Tensor| {
//!     Ok(tch::no_grad(|| m.logits(&x, false).argmax(-1, false)))
//! })?;
//! assert_eq!(preds.len(), 4);
//! # Ok(()) }
//! ```
use crate::Classifier;
use anyhow::{bail, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The environment variable that sets the number of replica workers ([`replica_workers`]);
/// `1` turns them off.
pub const WORKERS_ENV: &str = "NRF_REPLICA_WORKERS";

/// How many workers [`map_on_replicas`] should use for a stage: libtorch's intra-op threads
/// (the stage's `threads`), or [`WORKERS_ENV`] when set; a bad value is an error naming it.
pub fn replica_workers() -> Result<usize> {
    match std::env::var(WORKERS_ENV) {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => bail!("{WORKERS_ENV}: expected a whole number >= 1, got {v:?}"),
        },
        Err(_) => Ok(tch::get_num_threads().max(1) as usize),
    }
}

/// [`replica_workers`] for work on tensors on `device`: 1 off the CPU, where a model has no
/// replica ([`Classifier::replica`] is CPU-only) and an accelerator wants one large batch, not
/// blocks of rows run one after another on the same model.
pub fn replica_workers_on(device: tch::Device) -> Result<usize> {
    if device == tch::Device::Cpu {
        replica_workers()
    } else {
        Ok(1)
    }
}

/// Restores libtorch's intra-op threads when dropped.
struct RestoreThreads(i32);

impl Drop for RestoreThreads {
    fn drop(&mut self) {
        tch::set_num_threads(self.0);
    }
}

/// `f(model, job)` for every job, in order, on up to `workers` workers: the calling thread with
/// `model`, and OS threads each with a replica of it, every worker at one libtorch thread (the
/// setting is restored after). Jobs are handed out one at a time to whichever worker is free.
/// With one worker, one job, or a model that has no replica, the jobs run here one after another
/// (at the threads set). The first error (in job order) is returned once the running jobs end;
/// no new job starts after an error.
///
/// `f` runs with autograd enabled in the new threads (libtorch's grad mode is per thread), as it
/// is by default here.
pub fn map_on_replicas<J: Send, T: Send>(
    model: &dyn Classifier,
    jobs: Vec<J>,
    workers: usize,
    f: impl Fn(&dyn Classifier, J) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let workers = workers.min(jobs.len());
    let replicas: Vec<Box<dyn Classifier + Send>> = if workers > 1 {
        (1..workers).map_while(|_| model.replica()).collect()
    } else {
        Vec::new()
    };
    if replicas.is_empty() {
        return jobs.into_iter().map(|j| f(model, j)).collect();
    }
    let n = jobs.len();
    let _restore = RestoreThreads(tch::get_num_threads());
    tch::set_num_threads(1);
    let queue = Mutex::new(jobs.into_iter().enumerate());
    let failed = AtomicBool::new(false);
    let work = |m: &dyn Classifier| {
        let mut done = Vec::new();
        while !failed.load(Ordering::Relaxed) {
            let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
            let Some((i, job)) = next else { break };
            let r = f(m, job);
            if r.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            done.push((i, r));
        }
        done
    };
    let mut results: Vec<Option<Result<T>>> = (0..n).map(|_| None).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = replicas
            .into_iter()
            .map(|r| {
                let work = &work;
                s.spawn(move || {
                    // A new thread's OpenMP setting is the process default, not this one's.
                    tch::set_num_threads(1);
                    work(&*r)
                })
            })
            .collect();
        let mut all = work(model);
        for h in handles {
            match h.join() {
                Ok(done) => all.extend(done),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        for (i, r) in all {
            results[i] = Some(r);
        }
    });
    let mut out = Vec::with_capacity(n);
    for r in results {
        match r {
            Some(r) => out.push(r?),
            // Only jobs after an error are never run, and the error was returned above.
            None => bail!("replica workers: a job was not run"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Arch, Model, ModelSpec};
    use tch::{Device, Kind, Tensor};

    fn model() -> Model {
        Model::new(
            &ModelSpec::new(Arch::FmnistCnn, [1, 28, 28], 10),
            Device::Cpu,
            3,
        )
        .unwrap()
    }

    /// Input gradients of a cross-entropy per block, the shape of an attack's work.
    fn grads(m: &dyn Classifier, (x, y): (Tensor, Tensor)) -> Result<Tensor> {
        let xg = x.set_requires_grad(true);
        let loss = m.logits(&xg, false).cross_entropy_for_logits(&y);
        Ok(Tensor::f_run_backward(&[&loss], &[&xg], false, false)?.remove(0))
    }

    fn blocks(n: usize) -> Vec<(Tensor, Tensor)> {
        (0..n)
            .map(|_| {
                (
                    Tensor::rand([5, 1, 28, 28], (Kind::Float, Device::Cpu)),
                    Tensor::randint(10, [5], (Kind::Int64, Device::Cpu)),
                )
            })
            .collect()
    }

    fn copy(b: &[(Tensor, Tensor)]) -> Vec<(Tensor, Tensor)> {
        b.iter().map(|(x, y)| (x.copy(), y.copy())).collect()
    }

    /// Three workers give every job the result one worker gives, bit for bit, in job order; the
    /// replicas draw nothing from the global generator; libtorch's threads are restored.
    #[test]
    fn workers_give_the_one_worker_results_in_order() {
        let _lock = crate::rng_lock();
        let m = model();
        let b = blocks(7);
        let prev = tch::get_num_threads();
        tch::set_num_threads(1);
        let one = map_on_replicas(&m, copy(&b), 1, grads).unwrap();
        tch::manual_seed(11);
        let expected_next = Tensor::rand([4], (Kind::Float, Device::Cpu));
        tch::manual_seed(11);
        let three = map_on_replicas(&m, copy(&b), 3, grads).unwrap();
        let next = Tensor::rand([4], (Kind::Float, Device::Cpu));
        assert_eq!(tch::get_num_threads(), 1);
        tch::set_num_threads(prev);
        assert_eq!(one.len(), 7);
        for (a, c) in one.iter().zip(&three) {
            assert!(a.abs().sum(Kind::Double).double_value(&[]) > 0.0);
            assert!(a.equal(c), "a job's result depends on its worker");
        }
        assert!(
            next.equal(&expected_next),
            "making replicas drew random numbers"
        );
    }

    /// A replica computes what the model computes, and owns its weights.
    #[test]
    fn a_replica_is_an_independent_copy() {
        let _lock = crate::rng_lock();
        let m = model();
        let r = m.try_clone().unwrap();
        assert_eq!(r.memory_format(), m.memory_format());
        let x = Tensor::rand([3, 1, 28, 28], (Kind::Float, Device::Cpu));
        assert!(m.logits(&x, false).equal(&r.logits(&x, false)));
        tch::no_grad(|| {
            for (_, mut v) in r.vs.variables() {
                let _ = v.fill_(0.0);
            }
        });
        assert!(!m.logits(&x, false).equal(&r.logits(&x, false)));
    }

    /// An error stops the work and is the one returned; a bad worker count is an error naming
    /// the variable.
    #[test]
    fn the_first_error_is_returned() {
        let _lock = crate::rng_lock();
        let m = model();
        let r = map_on_replicas(&m, (0..6).collect(), 2, |_, j: usize| {
            if j >= 3 {
                bail!("job {j} failed")
            }
            Ok(j)
        });
        assert_eq!(r.unwrap_err().to_string(), "job 3 failed");
        std::env::set_var(WORKERS_ENV, "zero");
        let e = replica_workers().unwrap_err().to_string();
        // Off the CPU there are no replicas: one worker, whatever is asked.
        let on_gpu = replica_workers_on(tch::Device::Cuda(0));
        std::env::set_var(WORKERS_ENV, "3");
        let (cpu, gpu) = (
            replica_workers_on(tch::Device::Cpu),
            replica_workers_on(tch::Device::Cuda(0)),
        );
        std::env::remove_var(WORKERS_ENV);
        assert!(e.contains(WORKERS_ENV), "{e}");
        assert_eq!(on_gpu.unwrap(), 1);
        assert_eq!((cpu.unwrap(), gpu.unwrap()), (3, 1));
    }
}
