//! `perf_study channels-last`: the A/B of the convolutions' memory format (see main.rs).
use anyhow::Result;
use nrf_attacks::cross_entropy;
use nrf_data::{idx::load_fashion_mnist, idx::FASHION_MNIST_DIR, Split};
use nrf_models::images_to_tensor;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// `x` with the same shape and values but NHWC strides (PyTorch's channels-last layout), built
/// by nrf-models: permute-contiguous-permute, used here until session 19, leaves one-channel
/// tensors (the images, the first weight) in NCHW strides, so this A/B timed a mixed layout.
fn to_channels_last(x: &Tensor) -> Tensor {
    nrf_models::runtime::MemoryFormat::ChannelsLast.apply(x)
}

/// The Fashion-MNIST CNN as functional convolutions: [w1, b1, w2, b2, w3, b3, fc1 w, fc1 b,
/// fc2 w, fc2 b], weights uniform in +-1/sqrt(fan_in).
fn cnn_params(channels_last: bool) -> Vec<Tensor> {
    tch::manual_seed(0);
    let shapes: [&[i64]; 10] = [
        &[16, 1, 3, 3],
        &[16],
        &[32, 16, 3, 3],
        &[32],
        &[64, 32, 3, 3],
        &[64],
        &[256, 3136],
        &[256],
        &[10, 256],
        &[10],
    ];
    let mut fan_in = 1;
    shapes
        .iter()
        .map(|s| {
            if s.len() > 1 {
                fan_in = s[1..].iter().product::<i64>();
            }
            let b = 1.0 / (fan_in as f64).sqrt();
            let t = (Tensor::rand(*s, (Kind::Float, Device::Cpu)) * 2.0 - 1.0) * b;
            let t = if channels_last && s.len() == 4 {
                to_channels_last(&t)
            } else {
                t
            };
            t.set_requires_grad(true)
        })
        .collect()
}

fn cnn_forward(p: &[Tensor], x: &Tensor) -> Tensor {
    let conv = |x: &Tensor, w: &Tensor, b: &Tensor, stride: i64| {
        x.conv2d(w, Some(b), [stride, stride], [1, 1], [1, 1], 1)
            .relu()
    };
    let h = conv(
        &conv(&conv(x, &p[0], &p[1], 1), &p[2], &p[3], 2),
        &p[4],
        &p[5],
        2,
    );
    let rep = h.flatten(1, -1).linear(&p[6], Some(&p[7])).relu();
    rep.linear(&p[8], Some(&p[9]))
}

pub fn run(reps: usize, batch: usize) -> Result<()> {
    let data = load_fashion_mnist(FASHION_MNIST_DIR, Split::Train)?;
    let idx: Vec<usize> = (0..batch.min(data.len())).collect();
    let x_nchw = images_to_tensor(&data, &idx, Device::Cpu);
    let x_cl = to_channels_last(&x_nchw);
    let y = Tensor::from_slice(&idx.iter().map(|&i| data.labels[i]).collect::<Vec<_>>());
    let diff = tch::no_grad(|| {
        (cnn_forward(&cnn_params(false), &x_nchw) - cnn_forward(&cnn_params(true), &x_cl))
            .abs()
            .max()
            .double_value(&[])
    });
    println!("same network, both layouts: largest logit difference {diff:.2e}");
    for threads in [1, 2] {
        tch::set_num_threads(threads);
        for what in ["train step", "attack step"] {
            let mut sides: Vec<(Vec<Tensor>, nrf_models::Sgd, &Tensor)> = [false, true]
                .iter()
                .map(|&cl| {
                    let p = cnn_params(cl);
                    let sgd = nrf_models::Sgd::new(
                        p.iter().map(|t| t.shallow_clone()).collect(),
                        0.9,
                        true,
                        5e-4,
                    );
                    (p, sgd, if cl { &x_cl } else { &x_nchw })
                })
                .collect();
            let mut step = |side: usize| -> Result<f64> {
                let (p, sgd, x) = &mut sides[side];
                let t = Instant::now();
                if what == "train step" {
                    let loss = cnn_forward(p, x).cross_entropy_for_logits(&y);
                    sgd.zero_grad();
                    loss.backward();
                    sgd.step(0.01);
                } else {
                    let xg = x.detach().set_requires_grad(true);
                    let loss = cross_entropy(&cnn_forward(p, &xg), &y).sum(Kind::Float);
                    let g = Tensor::run_backward(&[&loss], &[&xg], false, false);
                    drop(g);
                }
                Ok(t.elapsed().as_secs_f64())
            };
            for side in [0, 1, 0, 1] {
                step(side)?;
            }
            let (mut a, mut b, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
            for r in 0..reps {
                let order = if r % 2 == 0 { [0, 1] } else { [1, 0] };
                let mut t = [0.0; 2];
                for side in order {
                    t[side] = step(side)?;
                }
                a.push(t[0]);
                b.push(t[1]);
                ratio.push(t[0] / t[1]);
            }
            let med = |v: &mut Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            println!(
                "{threads} thread(s), batch {batch}, {what}: NCHW {:.2} ms, channels-last {:.2} ms, median paired ratio NCHW/CL {:.3} ({reps} pairs)",
                1e3 * med(&mut a),
                1e3 * med(&mut b),
                med(&mut ratio)
            );
        }
    }
    Ok(())
}
