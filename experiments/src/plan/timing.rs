//! The throughput the plan's times are computed at, measured on this machine.
use super::Throughput;
use crate::preset::Preset;
use anyhow::Result;
use nrf_models::flops::cost;
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

fn device_name(d: Device) -> String {
    match d {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}
