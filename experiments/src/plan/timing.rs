//! The throughput the plan's times are computed at, measured on this machine.
use super::{SourceCost, Throughput};
use crate::preset::{Preset, SourceModel};
use anyhow::{Context, Result};
use nrf_models::flops::cost;
use nrf_models::Classifier;
use nrf_models::{Model, ModelSpec};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// The f32 matmul rate of libtorch on `device` (GFLOP/s, the best of 3 products of 2048²).
pub fn matmul_gflops(device: Device) -> f64 {
    let n = 2048i64;
    let opts = (Kind::Float, device);
    let a = Tensor::randn([n, n], opts);
    let b = Tensor::randn([n, n], opts);
    let sync = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    let _ = a.matmul(&b);
    sync();
    (0..3)
        .map(|_| {
            let t = Instant::now();
            let c = a.matmul(&b);
            sync();
            let s = t.elapsed().as_secs_f64();
            drop(c);
            2.0 * (n as f64).powi(3) / s / 1e9
        })
        .fold(0.0, f64::max)
}

/// The effective rate of the preset's architecture on `device`: training steps (forward, loss,
/// backward) on random images, timed for about `budget_s` seconds after one warm-up step,
/// counted as [`Cost::forward_flops`] + [`Cost::train_backward_flops`] per image; the fastest
/// step counts (what the device does when nothing else competes for it, as the best of the
/// matmul products; the median is reported too). The batch is
/// the preset's training batch size or smaller, so that a step takes about a quarter of a second
/// at the matmul rate; an architecture too large for that at the preset's image size is timed
/// at 32x32 (the same layers, a smaller image) and the rate carried over.
///
/// [`Cost::forward_flops`]: nrf_models::flops::Cost::forward_flops
/// [`Cost::train_backward_flops`]: nrf_models::flops::Cost::train_backward_flops
pub fn measure(
    p: &Preset,
    shape: [i64; 3],
    classes: i64,
    device: Device,
    budget_s: f64,
) -> Result<Throughput> {
    if p.threads > 0 {
        tch::set_num_threads(p.threads);
    }
    let matmul = matmul_gflops(device);
    let target = matmul * 1e9 * 0.25;
    let per_image = |s: [i64; 3]| {
        let c = cost(&p.model.arch, s, classes);
        c.forward_flops() + c.train_backward_flops()
    };
    let mut s = shape;
    if per_image(s) > target && s[1] > 32 {
        s = [s[0], 32, 32];
    }
    let batch = ((target / per_image(s)).floor() as i64).clamp(1, p.train_std.batch_size as i64);
    let spec = ModelSpec::new(p.model.arch.clone(), s, classes).with_init(p.model.init);
    let model = Model::new(&spec, device, 0)?;
    let x = Tensor::rand([batch, s[0], s[1], s[2]], (Kind::Float, device));
    let y = Tensor::randint(classes, [batch], (Kind::Int64, device));
    let step = || {
        let (logits, _) = nrf_models::Classifier::forward_rep(&model, &x, true);
        let loss = logits.cross_entropy_for_logits(&y);
        loss.backward();
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    step();
    let t = Instant::now();
    let mut times: Vec<f64> = Vec::new();
    while times.len() < 3 || (t.elapsed().as_secs_f64() < budget_s && times.len() < 50) {
        let s0 = Instant::now();
        step();
        times.push(s0.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let (best, median) = (times[0], times[times.len() / 2]);
    let flops = batch as f64 * per_image(s);
    Ok(Throughput {
        gflops: flops / best / 1e9,
        source: "measured".into(),
        device: device_name(device),
        detail: format!(
            "the fastest of {} training steps of {} on {batch} x {}x{}x{} random images, {:.1} ms \
             (median {:.1} ms = {:.1} GFLOP/s), {} thread(s)",
            times.len(),
            p.model.arch.label(),
            s[0],
            s[1],
            s[2],
            best * 1e3,
            median * 1e3,
            flops / median / 1e9,
            tch::get_num_threads()
        ),
        matmul_gflops: Some(matmul),
    })
}

/// What a source model file (`[sources]`: `model` is "C_std" or "C_rob") costs per image
/// against the preset's own architecture: the best time of an attack step (forward and input
/// gradient, as every stage on a source model runs it) on a batch of random images, for the file
/// and for a fresh model of the preset's architecture, alternating for about `budget_s` seconds
/// on `device`. The plan counts the source's passes as that many times the preset
/// architecture's FLOPs (FLOP-equivalents: the file's own FLOPs are not known). A file that is
/// not here is priced as the preset's architecture, and says so; one that is here but does not
/// load is an error naming it (the run would fail on it).
pub fn source_cost(
    p: &Preset,
    model: &str,
    src: &SourceModel,
    shape: [i64; 3],
    classes: i64,
    device: Device,
    budget_s: f64,
) -> Result<SourceCost> {
    let file = src.model.display().to_string();
    let external = crate::construct_cmd::ExternalModel {
        path: src.model.clone(),
        rep: src.rep.clone(),
        mean: src.mean.clone(),
        std: src.std.clone(),
    };
    if !external.files().iter().all(|f| f.is_file()) {
        return Ok(SourceCost {
            model: model.into(),
            file,
            relative_cost: 1.0,
            params: None,
            detail: "the file is not on this machine: priced as the preset's architecture".into(),
        });
    }
    let ts = external
        .load(shape, device)
        .with_context(|| format!("[sources.{}]", model.to_ascii_lowercase()))?;
    let spec = ModelSpec::new(p.model.arch.clone(), shape, classes).with_init(p.model.init);
    let own = Model::new(&spec, device, 0)?;
    let batch = 32;
    let x = Tensor::rand([batch, shape[0], shape[1], shape[2]], (Kind::Float, device));
    let attack_step = |m: &dyn Classifier| -> Result<f64> {
        let t = Instant::now();
        let xg = x.detach().set_requires_grad(true);
        let total = m.logits(&xg, false).sum(Kind::Float);
        Tensor::f_run_backward(&[&total], &[&xg], false, false)?;
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
        Ok(t.elapsed().as_secs_f64())
    };
    attack_step(&ts)?;
    attack_step(&own)?;
    let (mut best_ts, mut best_own, mut rounds) = (f64::INFINITY, f64::INFINITY, 0);
    let t = Instant::now();
    while rounds < 3 || (t.elapsed().as_secs_f64() < budget_s && rounds < 50) {
        best_ts = best_ts.min(attack_step(&ts)?);
        best_own = best_own.min(attack_step(&own)?);
        rounds += 1;
    }
    let relative_cost = best_ts / best_own;
    Ok(SourceCost {
        model: model.into(),
        file,
        relative_cost,
        params: Some(ts.num_params()?),
        detail: format!(
            "{relative_cost:.2}x {}'s time per attack step (forward + input gradient; the best of \
             {rounds} alternating rounds on {batch} random images: {:.1} vs {:.1} ms on {})",
            p.model.arch.label(),
            best_ts * 1e3,
            best_own * 1e3,
            device_name(device)
        ),
    })
}

fn device_name(d: Device) -> String {
    match d {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}
