//! Where a training step's time goes (forward + backward, the SGD update, the whole step) and what
//! an attack step (forward + input gradient) costs at batch 128, in the contiguous memory format
//! and channels-last, at 1 and 2 threads. The variants alternate in rounds and each keeps its
//! fastest round, so that a busy machine disturbs the comparison less:
//! `cargo run --release -p nrf-models --example step_parts [reps] [rounds] [arch] [precision]
//! [threads]`, where `arch` is a preset's architecture as JSON (default the Fashion-MNIST CNN,
//! `'{"type":"fmnist_cnn"}'`; e.g. `'{"type":"resnet18","width":8}'`), `precision` `f32`
//! (default), `bf16` or `f32,bf16` (both, their rounds alternating too, so that their ratio is
//! measured in one run), and `threads` `1`, `2` or `1,2` (default).
use nrf_models::runtime::MemoryFormat;
use nrf_models::{train::step_on_device, Arch, Classifier, Model, ModelSpec, Precision, Sgd};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

struct Case {
    model: Model,
    sgd: Sgd,
    x: Tensor,
    y: Tensor,
}

fn case(arch: &Arch, precision: Precision, cl: bool) -> anyhow::Result<Case> {
    let spec = ModelSpec::new(arch.clone(), [1, 28, 28], 10).with_precision(precision);
    let format = if cl {
        MemoryFormat::ChannelsLast
    } else {
        MemoryFormat::Contiguous
    };
    let mut model = Model::new(&spec, Device::Cpu, 0)?;
    model.set_memory_format(format);
    let sgd = Sgd::new(model.vs.trainable_variables(), 0.9, true, 5e-4);
    tch::manual_seed(1);
    let x = format.apply(&Tensor::rand([128, 1, 28, 28], (Kind::Float, Device::Cpu)));
    let y = Tensor::randint(10, [128], (Kind::Int64, Device::Cpu));
    Ok(Case { model, sgd, x, y })
}

fn time(reps: usize, f: &mut dyn FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    t.elapsed().as_secs_f64() / reps as f64 * 1e3
}

fn main() -> anyhow::Result<()> {
    nrf_models::runtime::tune_allocator();
    let reps: usize = std::env::args().nth(1).map_or(20, |s| s.parse().unwrap());
    let rounds: usize = std::env::args().nth(2).map_or(5, |s| s.parse().unwrap());
    let arch: Arch = match std::env::args().nth(3) {
        Some(s) => serde_json::from_str(&s)?,
        None => Arch::FmnistCnn,
    };
    let precisions: Vec<Precision> = match std::env::args().nth(4) {
        Some(s) => (s.split(','))
            .map(|p| serde_json::from_value(serde_json::Value::String(p.into())))
            .collect::<Result<_, _>>()?,
        None => vec![Precision::F32],
    };
    let threads: Vec<i32> = match std::env::args().nth(5) {
        Some(s) => s.split(',').map(str::parse).collect::<Result<_, _>>()?,
        None => vec![1, 2],
    };
    println!("{}, batch 128", arch.label());
    for threads in threads {
        tch::set_num_threads(threads);
        // Every precision in both layouts.
        let mut names = Vec::new();
        let mut cases = Vec::new();
        for &precision in &precisions {
            for (cl, layout) in [(false, "contiguous"), (true, "channels-last")] {
                names.push(format!("{} {layout}", precision.label()));
                cases.push(case(&arch, precision, cl)?);
            }
        }
        // [variant][measure] = fastest round in ms.
        let mut best = vec![[f64::INFINITY; 5]; cases.len()];
        for _ in 0..rounds {
            for (v, c) in cases.iter_mut().enumerate() {
                let Case { model, sgd, x, y } = c;
                let m = [
                    time(reps, &mut || {
                        let _ = step_on_device(model, sgd, x, y, 0.01, None).unwrap();
                    }),
                    time(reps, &mut || {
                        let loss = model.logits(x, true).cross_entropy_for_logits(y);
                        sgd.zero_grad();
                        loss.backward();
                    }),
                    time(reps, &mut || sgd.step(0.01)),
                    time(reps, &mut || {
                        let xa = x.detach().set_requires_grad(true);
                        let loss = model.logits(&xa, false).cross_entropy_for_logits(y);
                        let _ = Tensor::run_backward(&[&loss], &[&xa], false, false);
                    }),
                    // The same with the parameters frozen (requires_grad off), as the twin's
                    // attacks run.
                    {
                        model.vs.freeze();
                        let t = time(reps, &mut || {
                            let xa = x.detach().set_requires_grad(true);
                            let loss = model.logits(&xa, false).cross_entropy_for_logits(y);
                            let _ = Tensor::run_backward(&[&loss], &[&xa], false, false);
                        });
                        model.vs.unfreeze();
                        t
                    },
                ];
                for (b, v) in best[v].iter_mut().zip(m) {
                    *b = b.min(v);
                }
            }
        }
        for (name, [s, fb, o, a, af]) in names.iter().zip(&best) {
            println!(
                "threads {threads} {name:18}: train step {s:6.2} ms  fwd+bwd {fb:6.2}  sgd {o:5.2}  attack step {a:6.2}  frozen {af:6.2}"
            );
        }
    }
    Ok(())
}
