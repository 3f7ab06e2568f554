//! End-to-end: the `restricted-imagenet` preset's own code path through the real `nrf` binary,
//! on a small folder tree that the test writes in ImageNet's layout: `train/` and `val/`, each
//! with 1000 WordNet-id class folders (sorted order = ImageNet class index) holding `.JPEG`
//! files, images only in folders whose index falls in the nine Restricted-ImageNet super-class
//! ranges (and a few in other folders, which must be left out). The JPEGs have different sizes
//! and aspect ratios, and one is grayscale and one CMYK, so the preset's resize + centre crop,
//! its conversion to RGB and its decoders all run.
//!
//! Everything the preset does runs — ResNet-50 (ImageNet variant: 7x7 stem and max-pool, then
//! bottleneck blocks; at a reduced width), crop + flip augmentation, per-channel normalisation
//! inside the model, the step learning-rate schedule, relative-L2 representation matching, every
//! stage and the report — only at toy sizes (`--set` overrides; the image side is 32 instead of
//! 224; no stage is skipped).
//!
//! Needs the `nrf` binary (NRF_BIN, set by `cargo xtask test`, or target/debug/nrf); without it
//! the test says why and passes vacuously.
use std::path::{Path, PathBuf};
use std::process::Command;

use nrf::data::folder::{load_image, RESTRICTED_IMAGENET_RANGES};

mod common;
use common::{check_run, hue, json, nrf_bin, Expect, Rng};

/// Folders with images per super-class (its range's first and last ImageNet class), and
/// images per folder in each split.
const TRAIN_PER_FOLDER: usize = 12;
const VAL_PER_FOLDER: usize = 4;

/// The WordNet id of ImageNet class `i`: nine digits after `n`, increasing with `i`, so that the
/// sorted folder list puts class `i` at position `i` (as ImageNet's real ids do).
fn wnid(i: usize) -> String {
    format!("n{:08}", 1_440_764 + i * 7_919)
}

/// An RGB image of super-class `label`, `w` x `h`: a class colour, a class stripe pattern, noise.
fn rgb_image(label: usize, w: u32, h: u32, rng: &mut Rng) -> image::RgbImage {
    let base = hue(label, 9);
    let period = (w.min(h) / (3 + label as u32 % 4)).max(2);
    image::RgbImage::from_fn(w, h, |x, y| {
        let t = if label.is_multiple_of(2) { x } else { y };
        let stripe = if (t / period).is_multiple_of(2) {
            0.12
        } else {
            -0.12
        };
        let n = 0.2 * (rng.uniform() - 0.5);
        image::Rgb(std::array::from_fn(|c| {
            ((base[c] + stripe + n).clamp(0.0, 1.0) * 255.0).round() as u8
        }))
    })
}

/// Writes `img` as a baseline JPEG.
fn write_jpeg(path: &Path, img: &image::DynamicImage) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut f, 92)
        .encode_image(img)
        .unwrap();
}

/// Writes a CMYK JPEG (Adobe APP14, as Photoshop writes them) of `w` x `h` pixels of one ink mix.
fn write_cmyk_jpeg(path: &Path, w: u16, h: u16, cmyk: [u8; 4]) {
    let data: Vec<u8> = (0..w as usize * h as usize).flat_map(|_| cmyk).collect();
    jpeg_encoder::Encoder::new_file(path, 95)
        .unwrap()
        .encode(&data, w, h, jpeg_encoder::ColorType::Cmyk)
        .unwrap();
}

/// The pure cyan + yellow mix of the CMYK image: green in RGB.
const CMYK_GREEN: [u8; 4] = [255, 0, 255, 0];

/// Writes the ImageNet tree. Returns the paths of the grayscale and the CMYK JPEG.
fn write_imagenet(root: &Path) -> (PathBuf, PathBuf) {
    let mut rng = Rng(0x01a6_e4e7);
    let mut gray = None;
    let mut cmyk = None;
    for (split, per_folder) in [("train", TRAIN_PER_FOLDER), ("val", VAL_PER_FOLDER)] {
        let dir = root.join(split);
        for i in 0..1000 {
            std::fs::create_dir_all(dir.join(wnid(i))).unwrap();
        }
        let mut written = 0;
        // Two folders per super-class (the first and last class of its range), and two folders
        // outside every range (classes 0 and 999), whose images must be left out.
        let mut folders: Vec<(usize, Option<usize>)> = Vec::new();
        for (label, &(lo, hi)) in RESTRICTED_IMAGENET_RANGES.iter().enumerate() {
            folders.push((lo, Some(label)));
            folders.push((hi, Some(label)));
        }
        folders.push((0, None));
        folders.push((999, None));
        for (class, label) in folders {
            let folder = dir.join(wnid(class));
            for k in 0..per_folder {
                written += 1;
                let name = match split {
                    "train" => format!("{}_{}.JPEG", wnid(class), 100 + k),
                    _ => format!("ILSVRC2012_val_{written:08}.JPEG"),
                };
                let path = folder.join(name);
                // Sizes and aspect ratios vary, landscape and portrait, some smaller than others.
                let w = 36 + (rng.next() % 60) as u32;
                let h = 36 + (rng.next() % 60) as u32;
                let img = rgb_image(label.unwrap_or(3), w, h, &mut rng);
                if split == "train" && label == Some(4) && k == 0 {
                    // A grayscale JPEG (ImageNet has a few): one channel in the file.
                    write_jpeg(&path, &image::DynamicImage::ImageRgb8(img).grayscale());
                    gray = Some(path);
                } else if split == "train" && label == Some(2) && k == 1 {
                    // A CMYK JPEG (ImageNet has a few, e.g. n02105855_2933.JPEG).
                    write_cmyk_jpeg(&path, w as u16, h as u16, CMYK_GREEN);
                    cmyk = Some(path);
                } else {
                    write_jpeg(&path, &image::DynamicImage::ImageRgb8(img));
                }
            }
        }
        // Files that are not images are ignored, as in torchvision's ImageFolder.
        std::fs::write(dir.join(wnid(151)).join("notes.txt"), "not an image").unwrap();
    }
    (gray.unwrap(), cmyk.unwrap())
}

/// The toy sizes: every value the preset keeps is its own (ResNet-50 family, step schedule with
/// gamma 0.1, the paper's code's ImageNet transforms (resized crop, flip, jitter 0.1, lighting
/// 0.05), SGD 0.1 / 0.9 / 1e-4, mean/std, relative-L2 matching from other
/// images, the eval grid); images are resized and centre-cropped to 32 instead of 224 pixels.
/// C_std alone trains without augmentation: its accuracy checks that the labels reach the
/// model, and 8 epochs on 216 images are too few to learn the colours through the transforms
/// (it reached 26% with them, against chance's 11%); C_rob and the fresh models train
/// with the preset's transforms. One libtorch thread: on a shared 2-core machine two spinning
/// threads are several times slower than one.
const OVERRIDES: &[&str] = &[
    "threads=1",
    "data.image_size=32",
    "model.arch.width=8",
    "train_std.epochs=8",
    "train_std.milestones=[6]",
    "train_std.batch_size=12",
    "train_std.resized_crop=false",
    "train_std.color_jitter=0",
    "train_std.lighting=0",
    "train_rob.epochs=2",
    "train_rob.milestones=[1]",
    "train_rob.batch_size=18",
    "train_rob.attack.steps=2",
    "fresh.epochs=2",
    "fresh.milestones=[1]",
    "fresh.batch_size=18",
    "eval.robust_n=18",
    "eval.steps=2",
    "eval.batch_size=18",
    "rep_match.n=36",
    "rep_match.steps=5",
    "rep_match.batch_size=18",
    "relabel.n=36",
    "relabel.steps=3",
    "relabel.batch_size=18",
];

#[test]
fn the_loader_decodes_grayscale_and_cmyk_jpegs_to_rgb() {
    let (_guard, dir) = common::test_dir();
    let (gray, cmyk) = write_imagenet(&dir);
    let px = |x: &[f32], c: usize| x[c * 32 * 32 + 16 * 32 + 16];
    let g = load_image(&gray, 32).unwrap();
    assert_eq!(g.len(), 3 * 32 * 32);
    assert!(
        (0..3).all(|c| (px(&g, c) - px(&g, 0)).abs() < 1e-6),
        "grayscale JPEG not turned into three equal channels"
    );
    let c = load_image(&cmyk, 32).unwrap();
    let rgb = [px(&c, 0), px(&c, 1), px(&c, 2)];
    assert!(
        rgb[0] < 0.15 && rgb[1] > 0.85 && rgb[2] < 0.15,
        "CMYK cyan + yellow is not decoded to green: {rgb:?}"
    );
}

#[test]
fn restricted_imagenet_preset_runs_end_to_end_on_format_true_data() {
    let Some(bin) = nrf_bin() else {
        eprintln!("SKIPPED: needs the nrf binary (run through `cargo xtask test`)");
        return;
    };
    let start = std::time::Instant::now();
    let (_guard, dir) = common::test_dir();
    let data = dir.join("imagenet");
    write_imagenet(&data);
    let results = dir.join("restricted-imagenet");
    let mut cmd = Command::new(&bin);
    cmd.args([
        "reproduce",
        "--quiet",
        "--preset",
        "restricted-imagenet",
        "--data-dir",
    ])
    .arg(&data)
    .arg("--results")
    .arg(&results);
    for o in OVERRIDES {
        cmd.args(["--set", o]);
    }
    let out = cmd.output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "nrf reproduce failed:\n{log}");
    eprintln!(
        "restricted-imagenet run: {:.1} s",
        start.elapsed().as_secs_f64()
    );

    let run = json(&results.join("run.json"));
    assert_eq!(run["preset"], "restricted-imagenet");
    assert_eq!(
        run["overrides"].as_array().map(Vec::len),
        Some(OVERRIDES.len()),
        "run.json does not record the overrides: {run}"
    );
    check_run(
        &results,
        &Expect {
            num_classes: 9,
            shape: [3, 32, 32],
            rep_n: 36,
            relabel_n: 36,
            robust_n: 18,
            distance: "L2Relative",
        },
    );
    let spec = json(&results.join("weights/C_std.json"));
    assert_eq!(spec["arch"]["type"], "resnet50_imagenet", "{spec}");
    assert_eq!(spec["mean"][0], 0.4717, "{spec}");
    let config = run["config_toml"].as_str().unwrap();
    for field in [
        "resized_crop = true",
        "color_jitter = 0.1",
        "lighting = 0.05",
    ] {
        // In [train_rob] and [fresh] (the overrides come after the preset's text).
        assert!(config.contains(field), "{field}: {config}");
    }
    let c_std = json(&results.join("models/C_std.json"));
    // Only the super-class folders count: 9 x 2 folders, none of classes 0 and 999.
    assert_eq!(c_std["train_size"], 9 * 2 * TRAIN_PER_FOLDER, "{c_std}");
    assert_eq!(c_std["test_size"], 9 * 2 * VAL_PER_FOLDER, "{c_std}");
    let lrs: Vec<f64> = c_std["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["lr"].as_f64().unwrap())
        .collect();
    assert!(
        lrs.len() == 8
            && lrs[..6].iter().all(|&l| l == 0.1)
            && lrs[6..].iter().all(|&l| (l - 0.01).abs() < 1e-9),
        "not the step schedule (0.1, x0.1 after epoch 6): {lrs:?}"
    );
    // A simple signal: the standard model learns it (chance is 1/9).
    let acc = c_std["std_acc"].as_f64().unwrap();
    assert!(acc > 0.3, "C_std did not learn the class colours: {acc}");
}

/// `nrf reproduce --preset restricted-imagenet` (32-px images) on `data`: its stderr, a failure
/// without a panic.
fn failing_run(bin: &Path, data: &Path, results: &Path) -> String {
    let preset = [
        "--preset",
        "restricted-imagenet",
        "--set",
        "data.image_size=32",
    ];
    common::failing_reproduce(bin, &preset, data, results)
}

#[test]
fn broken_imagenet_trees_are_clear_errors() {
    let Some(bin) = nrf_bin() else {
        eprintln!("SKIPPED: needs the nrf binary (run through `cargo xtask test`)");
        return;
    };
    let (_guard, dir) = common::test_dir();
    let data = dir.join("imagenet");
    let results = dir.join("r");
    write_imagenet(&data);
    let says = |err: &str, path: &Path, what: &str| {
        let path = path.display().to_string();
        assert!(
            err.contains(&path) && err.contains(what),
            "the error does not name {path} and say {what:?}:\n{err}"
        );
    };

    // A file that is not a JPEG, named like one.
    let bad = data
        .join("val")
        .join(wnid(33))
        .join("ILSVRC2012_val_99999999.JPEG");
    std::fs::write(&bad, b"<html>404 Not Found</html>").unwrap();
    let err = failing_run(&bin, &data, &results);
    says(&err, &bad, "unreadable image");
    std::fs::remove_file(&bad).unwrap();

    // The validation images as ILSVRC2012's archive unpacks them: no class folders.
    let val = data.join("val");
    std::fs::rename(&val, data.join("val-sorted")).unwrap();
    std::fs::create_dir_all(&val).unwrap();
    write_jpeg(
        &val.join("ILSVRC2012_val_00000001.JPEG"),
        &image::DynamicImage::ImageRgb8(image::RgbImage::new(40, 30)),
    );
    let err = failing_run(&bin, &data, &results);
    says(&err, &val, "one folder per WordNet id");

    // No train/ at all.
    std::fs::remove_dir_all(data.join("train")).unwrap();
    let err = failing_run(&bin, &data, &results);
    says(&err, &data.join("train"), "cannot list directory");
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
}
