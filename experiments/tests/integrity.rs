//! Artefact integrity in the pipeline: a stage whose record, or a file its record lists (the
//! weights it saved), is corrupted or truncated is named in a warning and run again, never used;
//! a sound one is cached. On a toy CIFAR-10 (no real data, seconds on a CPU).
use nrf_experiments::gpu_check::{write_synthetic_cifar10, TOY_SETS};
use nrf_experiments::pipeline::Ctx;
use nrf_experiments::preset::Preset;
use nrf_models::Model;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Collects what `tracing` prints (warnings and above) while a test runs.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    /// What was logged since the last call.
    fn take(&self) -> String {
        String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap()
    }
}

fn flip_last_byte(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let last = b.len() - 1;
    b[last] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

#[test]
fn damaged_stage_records_and_outputs_are_named_and_recomputed() {
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar");
    write_synthetic_cifar10(&data, 100, 100, 3).unwrap();
    let sets: Vec<String> = TOY_SETS.iter().map(|s| s.to_string()).collect();
    let (preset, text) = Preset::load_with_overrides("cifar10", &sets).unwrap();
    let results = dir.path().join("results");
    // Each call is a new run on the folder (a file checked once is trusted for the rest of a run).
    let runs = std::cell::Cell::new(0);
    let stage = || -> u32 {
        let mut ctx = Ctx::new(
            preset.clone(),
            text.clone(),
            results.clone(),
            Some(&data),
            false,
        )
        .unwrap();
        let spec = ctx.model_spec(&ctx.train);
        let (out, _) = ctx
            .stage("train:m", &"config", |ctx, _work| {
                runs.set(runs.get() + 1);
                ctx.save_weights(&Model::new(&spec, ctx.device, 1)?, "m")?;
                Ok(7u32)
            })
            .unwrap();
        ctx.load_weights("m").unwrap();
        out
    };
    assert_eq!(stage(), 7);
    assert_eq!(runs.get(), 1);
    assert_eq!(stage(), 7);
    assert_eq!(runs.get(), 1, "a sound stage is cached");
    assert_eq!(log.take(), "");

    let record = results.join("stages/train_m.json");
    let weights = results.join("weights/m.safetensors");
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(
        text.contains("\"sha256\"") && text.contains("weights/m.safetensors"),
        "{text}"
    );

    // The weights corrupted: the stage runs again.
    flip_last_byte(&weights);
    assert_eq!(stage(), 7);
    assert_eq!(runs.get(), 2);
    let w = log.take();
    assert!(
        w.contains(&weights.display().to_string()) && w.contains("damaged"),
        "{w}"
    );

    // The weights truncated.
    let b = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &b[..b.len() / 2]).unwrap();
    assert_eq!(stage(), 7);
    assert_eq!(runs.get(), 3);
    assert!(log.take().contains(&weights.display().to_string()));

    // The record truncated.
    let text = std::fs::read_to_string(&record).unwrap();
    std::fs::write(&record, &text[..text.len() / 2]).unwrap();
    assert_eq!(stage(), 7);
    assert_eq!(runs.get(), 4);
    let w = log.take();
    assert!(
        w.contains(&record.display().to_string()) && w.contains("invalid JSON"),
        "{w}"
    );

    // The record's output changed (still valid JSON): its checksum says so.
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(text.contains("\"output\": 7"), "{text}");
    std::fs::write(&record, text.replace("\"output\": 7", "\"output\": 8")).unwrap();
    assert_eq!(stage(), 7);
    assert_eq!(runs.get(), 5);
    let w = log.take();
    assert!(
        w.contains(&record.display().to_string()) && w.contains("checksum mismatch"),
        "{w}"
    );

    // Sound again: cached, nothing to say.
    assert_eq!(stage(), 7);
    assert_eq!(runs.get(), 5);
    assert_eq!(log.take(), "");
}
