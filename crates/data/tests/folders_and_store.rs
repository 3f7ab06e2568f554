//! Image folders / Restricted ImageNet, and constructed-dataset storage.

use std::path::Path;

use image::{Rgb, RgbImage};
use nrf_data::folder::{self, RESTRICTED_IMAGENET_RANGES};
use nrf_data::store::{self, constructed_paths, sha256_bytes, sha256_file, StoredHeader};
use nrf_data::{
    load_constructed, load_image_folder, load_restricted_imagenet, save_constructed,
    ConstructedDataset, ConstructedMetadata, Dataset, Split,
};

fn assert_names(err: &nrf_data::DataError, path: &Path, needle: &str) {
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "error does not name {}: {msg}",
        path.display()
    );
    assert!(msg.contains(needle), "error does not say {needle:?}: {msg}");
}

/// A solid-colour image, saved as PNG or JPEG according to the extension.
fn solid(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    RgbImage::from_pixel(w, h, Rgb(rgb)).save(path).unwrap();
}

#[test]
fn load_image_resizes_shorter_side_and_centre_crops() {
    let dir = tempfile::tempdir().unwrap();
    // 12x6: left third red, middle third green, right third blue. Shorter side 6 -> 4 gives
    // 8x4; the centre 4x4 crop is columns 2..6 of the 8: mostly green, never pure red/blue.
    let mut img = RgbImage::new(12, 6);
    for (x, _, p) in img.enumerate_pixels_mut() {
        *p = match x / 4 {
            0 => Rgb([255, 0, 0]),
            1 => Rgb([0, 255, 0]),
            _ => Rgb([0, 0, 255]),
        };
    }
    let p = dir.path().join("bands.png");
    img.save(&p).unwrap();
    let out = folder::load_image(&p, 4).unwrap();
    assert_eq!(out.len(), 3 * 16);
    assert!(out.iter().all(|v| (0.0..=1.0).contains(v)));
    let plane = |c: usize| &out[c * 16..(c + 1) * 16];
    let mean = |c: usize| plane(c).iter().sum::<f32>() / 16.0;
    assert!(mean(1) > 0.6, "green {}", mean(1));
    assert!(
        mean(0) < 0.3 && mean(2) < 0.3,
        "red {} blue {}",
        mean(0),
        mean(2)
    );
    // Centre columns (1 and 2) are pure green.
    for y in 0..4 {
        for x in 1..3 {
            assert!((plane(1)[y * 4 + x] - 1.0).abs() < 1e-6);
        }
    }
    // A solid JPEG decodes to (about) its colour, whatever the size.
    let j = dir.path().join("solid.jpg");
    solid(&j, 20, 30, [200, 100, 50]);
    let out = folder::load_image(&j, 8).unwrap();
    for (c, want) in [200.0f32, 100.0, 50.0].iter().enumerate() {
        let m = out[c * 64..(c + 1) * 64].iter().sum::<f32>() / 64.0 * 255.0;
        assert!((m - want).abs() < 6.0, "channel {c}: {m} vs {want}");
    }
}

#[test]
fn unreadable_image_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("cls").join("broken.png");
    std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nthis is not really a png").unwrap();
    assert_names(
        &folder::load_image(&bad, 8).unwrap_err(),
        &bad,
        "unreadable image",
    );
    solid(&dir.path().join("cls").join("a_good.jpg"), 4, 4, [1, 2, 3]);
    let err = load_image_folder(dir.path(), 4, None).unwrap_err();
    assert_names(&err, &bad, "unreadable image");
    // Text with an image extension.
    let txt = dir.path().join("text.jpeg");
    std::fs::write(&txt, "plain text").unwrap();
    assert_names(
        &folder::load_image(&txt, 8).unwrap_err(),
        &txt,
        "unreadable image",
    );
}

#[test]
fn image_folder_labels_follow_sorted_folders() {
    let dir = tempfile::tempdir().unwrap();
    solid(&dir.path().join("b_cls/x.png"), 5, 5, [0, 0, 0]);
    solid(&dir.path().join("a_cls/1.jpg"), 5, 7, [255, 255, 255]);
    solid(&dir.path().join("a_cls/sub/2.PNG"), 9, 5, [255, 255, 255]);
    std::fs::write(dir.path().join("a_cls/notes.txt"), "ignored").unwrap();
    std::fs::create_dir_all(dir.path().join("c_empty")).unwrap();
    let ds = load_image_folder(dir.path(), 3, None).unwrap();
    assert_eq!(ds.class_names, vec!["a_cls", "b_cls", "c_empty"]);
    assert_eq!(ds.labels, vec![0, 0, 1]);
    assert_eq!(ds.shape, [3, 3, 3]);
    assert!(ds.image(0).iter().all(|&v| v > 0.95));
    assert!(ds.image(2).iter().all(|&v| v < 0.05));
    ds.validate("folder").unwrap();
    let capped = load_image_folder(dir.path(), 3, Some(1)).unwrap();
    assert_eq!(capped.labels, vec![0, 1]);
}

/// A deterministic textured image (so that resizing and JPEG coding have work to do).
fn textured(path: &Path, w: u32, h: u32, seed: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    RgbImage::from_fn(w, h, |x, y| {
        let v = x.wrapping_mul(31) ^ y.wrapping_mul(17) ^ seed.wrapping_mul(2_654_435_761);
        Rgb([v as u8, (v >> 8) as u8, (x * 7 + y * 3 + seed) as u8])
    })
    .save(path)
    .unwrap();
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn parallel_decode_equals_sequential_decode() {
    let dir = tempfile::tempdir().unwrap();
    for (c, class) in ["a", "b", "c"].iter().enumerate() {
        for i in 0..12u32 {
            let ext = if i % 3 == 0 { "png" } else { "jpg" };
            let (w, h) = (20 + 7 * i, 33 - i);
            let path = dir.path().join(class).join(format!("{i:02}.{ext}"));
            textured(&path, w, h, 100 * c as u32 + i);
        }
    }
    // The reference: every file decoded on its own, one after another, in dataset order.
    let mut want = Vec::new();
    for class in ["a", "b", "c"] {
        for f in folder::image_files(dir.path().join(class)).unwrap() {
            want.extend(folder::load_image(&f, 9).unwrap());
        }
    }
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for threads in [1, 2, 4] {
        let ds = in_pool(threads, || load_image_folder(dir.path(), 9, None)).unwrap();
        assert_eq!(ds.labels.len(), 36);
        assert_eq!(
            bits(&ds.images),
            bits(&want),
            "{threads} threads: images differ from the sequential decode"
        );
        let labels: Vec<i64> = (0..3).flat_map(|c| [c; 12]).collect();
        assert_eq!(ds.labels, labels);
    }
    // Capped per class: the first files of each class, still in order.
    let capped = in_pool(4, || load_image_folder(dir.path(), 9, Some(2))).unwrap();
    assert_eq!(capped.labels, vec![0, 0, 1, 1, 2, 2]);
    assert_eq!(bits(&capped.images[..2 * 243]), bits(&want[..2 * 243]));
}

#[test]
fn parallel_decode_reports_the_first_bad_file_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = |i: usize| dir.path().join(format!("c/{i:02}.png"));
    for i in 0..32 {
        textured(&file(i), 400, 300, i as u32);
    }
    // Two bad files at a time, at various places: whichever a thread meets first, the error
    // names the earlier in file order. (`find_map_any` instead of `find_map_first` named the
    // later one in about one run in six here.)
    for (early, late) in [(1, 17), (6, 25), (12, 13), (0, 31), (20, 28), (3, 9)] {
        let good: Vec<Vec<u8>> = [early, late]
            .iter()
            .map(|&i| std::fs::read(file(i)).unwrap())
            .collect();
        for i in [early, late] {
            std::fs::write(file(i), b"\x89PNG\r\n\x1a\nnot a png").unwrap();
        }
        for threads in [1, 2, 4] {
            for _ in 0..3 {
                let err = in_pool(threads, || load_image_folder(dir.path(), 16, None)).unwrap_err();
                assert_names(&err, &file(early), "unreadable image");
            }
        }
        for (i, bytes) in [early, late].into_iter().zip(good) {
            std::fs::write(file(i), bytes).unwrap();
        }
    }
    // Without the earlier one, the later one is reported.
    std::fs::write(file(30), b"\x89PNG\r\n\x1a\nnot a png").unwrap();
    let err = in_pool(4, || load_image_folder(dir.path(), 16, None)).unwrap_err();
    assert_names(&err, &file(30), "unreadable image");
}

/// 400 WordNet-like folders; images only in a few, chosen at range boundaries.
/// Folder `filled[j]` holds images of red level `25 * j`, to tell afterwards where an image
/// came from.
fn imagenet_tree(root: &Path) -> Vec<(usize, usize)> {
    let split = root.join("train");
    for i in 0..400 {
        std::fs::create_dir_all(split.join(format!("n{i:08}"))).unwrap();
    }
    // (ImageNet index, number of images)
    let filled = vec![
        (0, 1),   // no super-class
        (29, 1),  // just below frog
        (30, 2),  // frog
        (32, 1),  // frog
        (33, 1),  // turtle
        (151, 3), // dog
        (268, 2), // dog (upper bound)
        (269, 1), // no super-class
        (397, 1), // fish (upper bound)
        (398, 1), // no super-class
    ];
    for (pos, &(idx, k)) in filled.iter().enumerate() {
        for j in 0..k {
            let ext = if j % 2 == 0 { "png" } else { "jpg" };
            let shade = (25 * pos) as u8;
            solid(
                &split.join(format!("n{idx:08}/img{j}.{ext}")),
                6,
                5,
                [shade, 0, 0],
            );
        }
    }
    filled
}

#[test]
fn restricted_imagenet_maps_ranges_and_skips_others() {
    assert_eq!(folder::restricted_imagenet_label(151), Some(0));
    assert_eq!(folder::restricted_imagenet_label(268), Some(0));
    assert_eq!(folder::restricted_imagenet_label(269), None);
    assert_eq!(folder::restricted_imagenet_label(30), Some(2));
    assert_eq!(folder::restricted_imagenet_label(37), Some(3));
    assert_eq!(folder::restricted_imagenet_label(319), Some(8));
    let total: usize = RESTRICTED_IMAGENET_RANGES
        .iter()
        .map(|(a, b)| b - a + 1)
        .sum();
    assert_eq!(total, 203);

    let root = tempfile::tempdir().unwrap();
    let filled = imagenet_tree(root.path());
    let shade_of = |idx: usize| 25 * filled.iter().position(|&(i, _)| i == idx).unwrap() as u8;
    let ds = load_restricted_imagenet(root.path(), Split::Train, 4, None).unwrap();
    assert_eq!(ds.name, "restricted-imagenet/train");
    assert_eq!(ds.num_classes, 9);
    assert_eq!(ds.class_names[0], "dog");
    assert_eq!(ds.shape, [3, 4, 4]);
    // dog: 3 + 2, frog: 2 + 1, turtle: 1, fish: 1; the others have none.
    assert_eq!(ds.class_counts(), vec![5, 0, 3, 1, 0, 0, 1, 0, 0]);
    ds.validate("ri").unwrap();
    // Red channel identifies the source folder: no image from 0, 29, 269 or 398 was used.
    let reds: Vec<u8> = (0..ds.len())
        .map(|i| (ds.image(i)[0] * 255.0).round() as u8)
        .collect();
    for skipped in [0, 29, 269, 398] {
        let s = shade_of(skipped);
        assert!(
            !reds.iter().any(|&r| r.abs_diff(s) <= 8),
            "{reds:?} has {s} (folder {skipped})"
        );
    }
    for used in [30, 32, 33, 151, 268, 397] {
        let s = shade_of(used);
        assert!(
            reds.iter().any(|&r| r.abs_diff(s) <= 8),
            "{reds:?} lacks {s} (folder {used})"
        );
    }
    // A cap of 2 per super-class is taken round-robin over folders: one dog image from each
    // of 151 and 268.
    let capped = load_restricted_imagenet(root.path(), Split::Train, 4, Some(2)).unwrap();
    assert_eq!(capped.class_counts(), vec![2, 0, 2, 1, 0, 0, 1, 0, 0]);
    let dog_reds: Vec<u8> = (0..capped.len())
        .filter(|&i| capped.labels[i] == 0)
        .map(|i| (capped.image(i)[0] * 255.0).round() as u8)
        .collect();
    assert!(
        dog_reds.iter().any(|r| r.abs_diff(shade_of(151)) <= 8),
        "{dog_reds:?}"
    );
    assert!(
        dog_reds.iter().any(|r| r.abs_diff(shade_of(268)) <= 8),
        "{dog_reds:?}"
    );

    // No val split, and too few folders, are clear errors.
    let err = load_restricted_imagenet(root.path(), Split::Test, 4, None).unwrap_err();
    assert_names(&err, &root.path().join("val"), "list directory");
    let small = tempfile::tempdir().unwrap();
    for i in 0..10 {
        std::fs::create_dir_all(small.path().join(format!("train/n{i:08}"))).unwrap();
    }
    let err = load_restricted_imagenet(small.path(), Split::Train, 4, None).unwrap_err();
    assert_names(&err, &small.path().join("train"), "10 class folders");
    // ILSVRC2012's val archive as unpacked (images, no class folders): the error says what to do.
    solid(
        &small.path().join("val/ILSVRC2012_val_00000001.JPEG"),
        5,
        5,
        [1, 2, 3],
    );
    let err = load_restricted_imagenet(small.path(), Split::Test, 4, None).unwrap_err();
    assert_names(
        &err,
        &small.path().join("val"),
        "holds 1 image files directly",
    );
    assert!(
        err.to_string().contains("one folder per WordNet id"),
        "{err}"
    );
    // The folder list without any image in the super-class folders: an error, not an empty set.
    let empty = tempfile::tempdir().unwrap();
    for i in 0..1000 {
        std::fs::create_dir_all(empty.path().join(format!("train/n{i:08}"))).unwrap();
    }
    solid(
        &empty.path().join("train/n00000000/a.JPEG"),
        5,
        5,
        [1, 2, 3],
    );
    let err = load_restricted_imagenet(empty.path(), Split::Train, 4, None).unwrap_err();
    assert_names(&err, &empty.path().join("train"), "no image in the 203");
}

fn constructed(n: usize) -> ConstructedDataset {
    let shape = [2, 3, 2];
    let size = 12;
    let mut extra = std::collections::BTreeMap::new();
    extra.insert("final_rel_error".to_string(), serde_json::json!(0.0123));
    ConstructedDataset {
        dataset: Dataset {
            name: "d_r".into(),
            images: (0..n * size).map(|i| (i % 97) as f32 / 96.0).collect(),
            labels: (0..n as i64).map(|i| i % 3).collect(),
            shape,
            num_classes: 3,
            class_names: vec!["x".into(), "y".into(), "z".into()],
        },
        source_indices: (0..n as i64).map(|i| 1000 - 7 * i).collect(),
        start_indices: Some((0..n as i64).map(|i| (i * 3) % 11 - 1).collect()),
        metadata: ConstructedMetadata {
            method: "d_r".into(),
            epsilon: None,
            steps: Some(300),
            step_size: Some(0.2),
            source_model_sha256: Some("ab".repeat(32)),
            seed: Some(42),
            extra,
        },
    }
}

#[test]
fn constructed_round_trip_and_side_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = constructed(5);
    let stem = dir.path().join("sets").join("d_r.eps0.5");
    let (st, js) = save_constructed(&stem, &data).unwrap();
    assert_eq!(st, dir.path().join("sets/d_r.eps0.5.safetensors"));
    assert_eq!(js, dir.path().join("sets/d_r.eps0.5.json"));
    assert_eq!(load_constructed(&stem).unwrap(), data);
    assert_eq!(load_constructed(&st).unwrap(), data);
    let header: StoredHeader = store::read_json(&js).unwrap();
    assert_eq!(header.len, 5);
    assert_eq!(header.class_counts, vec![2, 2, 1]);
    assert_eq!(header.metadata, data.metadata);
    assert_eq!(
        header.safetensors_sha256.unwrap(),
        sha256_file(&st).unwrap()
    );
    // No temporary files are left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path().join("sets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    // Overwriting replaces the files.
    let smaller = constructed(2);
    save_constructed(&stem, &smaller).unwrap();
    assert_eq!(load_constructed(&stem).unwrap(), smaller);
    // An empty dataset round-trips too.
    let empty = constructed(0);
    save_constructed(dir.path().join("empty"), &empty).unwrap();
    assert_eq!(load_constructed(dir.path().join("empty")).unwrap(), empty);
}

/// A file written before `start_indices` was a field (the list in `metadata.extra`, no tensor)
/// reads with the field set and `extra` without it; a wrong length there names the file.
#[test]
fn constructed_start_indices_of_older_files() {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("old");
    let mut old = constructed(4);
    let starts = old.start_indices.take().unwrap();
    old.metadata
        .extra
        .insert("start_indices".into(), serde_json::json!(starts));
    save_constructed(&stem, &old).unwrap();
    let read = load_constructed(&stem).unwrap();
    assert_eq!(read, constructed(4));
    assert!(!read.metadata.extra.contains_key("start_indices"));

    old.metadata
        .extra
        .insert("start_indices".into(), serde_json::json!([1, 2]));
    save_constructed(&stem, &old).unwrap();
    let (st, _) = constructed_paths(&stem);
    assert_names(
        &load_constructed(&stem).unwrap_err(),
        &st,
        "2 start indices",
    );
    old.metadata
        .extra
        .insert("start_indices".into(), serde_json::json!("x"));
    save_constructed(&stem, &old).unwrap();
    assert_names(
        &load_constructed(&stem).unwrap_err(),
        &st,
        "not a list of integers",
    );
}

#[test]
fn constructed_bad_input_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("bad");
    let (st, _) = constructed_paths(&stem);
    let mut data = constructed(3);
    data.dataset.images[4] = f32::NAN;
    assert_names(
        &save_constructed(&stem, &data).unwrap_err(),
        &st,
        "non-finite",
    );
    assert!(!st.exists(), "nothing written for invalid data");
    let mut data = constructed(3);
    data.source_indices.pop();
    assert_names(
        &save_constructed(&stem, &data).unwrap_err(),
        &st,
        "2 source indices",
    );
    let mut data = constructed(3);
    data.start_indices.as_mut().unwrap().push(0);
    assert_names(
        &save_constructed(&stem, &data).unwrap_err(),
        &st,
        "4 start indices",
    );

    save_constructed(&stem, &constructed(3)).unwrap();
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() - 3]).unwrap();
    assert_names(&load_constructed(&stem).unwrap_err(), &st, "malformed");
    std::fs::write(&st, b"garbage").unwrap();
    assert_names(
        &load_constructed(&stem).unwrap_err(),
        &st,
        "not a safetensors file",
    );
    assert_names(
        &load_constructed(dir.path().join("missing")).unwrap_err(),
        &dir.path().join("missing.safetensors"),
        "cannot read",
    );
}

#[test]
fn atomic_helpers_and_checksums() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("deep/er/file.json");
    store::write_json_atomic(&p, &serde_json::json!({"a": 1})).unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.ends_with("}\n") && text.contains("\"a\": 1"), "{text}");
    store::write_atomic(&p, b"abc").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"abc");
    let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    assert_eq!(sha256_file(&p).unwrap(), abc);
    assert_eq!(sha256_bytes(b"abc"), abc);
    // A failing writer leaves the old file and no temporary file.
    let err = store::write_atomic_with(&p, |tmp| {
        std::fs::write(tmp, b"partial").unwrap();
        Err(std::io::Error::other("simulated failure"))
    });
    assert_names(&err.unwrap_err(), &p, "simulated failure");
    assert_eq!(std::fs::read(&p).unwrap(), b"abc");
    assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    assert_names(
        &sha256_file(dir.path().join("nope")).unwrap_err(),
        &dir.path().join("nope"),
        "cannot open",
    );
    let bad_json = dir.path().join("bad.json");
    std::fs::write(&bad_json, "{").unwrap();
    assert_names(
        &store::read_json::<serde_json::Value>(&bad_json).unwrap_err(),
        &bad_json,
        "bad JSON",
    );
}

const PYTHON: &str = "/root/.cache/nrf/torch-2.13.0/bin/python";

#[test]
fn python_safetensors_reads_constructed_files() {
    let has_st = Path::new(PYTHON).exists()
        && std::process::Command::new(PYTHON)
            .args(["-c", "import safetensors.numpy, numpy"])
            .status()
            .is_ok_and(|s| s.success());
    if !has_st {
        eprintln!("skipped: no python with safetensors and numpy at {PYTHON}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = constructed(4);
    let (st, _) = save_constructed(dir.path().join("py"), &data).unwrap();
    let script = r#"
import json, sys
from safetensors import safe_open
from safetensors.numpy import load_file
t = load_file(sys.argv[1])
with safe_open(sys.argv[1], framework="numpy") as f:
    meta = json.loads(f.metadata()["nrf"])
print(json.dumps({
    "images_shape": list(t["images"].shape), "images_dtype": str(t["images"].dtype),
    "labels": t["labels"].tolist(), "labels_dtype": str(t["labels"].dtype),
    "source_indices": t["source_indices"].tolist(),
    "pixel_sum": float(t["images"].astype("float64").sum()),
    "pixel_last": float(t["images"][3, 1, 2, 1]),
    "method": meta["metadata"]["method"], "seed": meta["metadata"]["seed"],
}))
"#;
    let out = std::process::Command::new(PYTHON)
        .args(["-c", script])
        .arg(&st)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["images_shape"], serde_json::json!([4, 2, 3, 2]));
    assert_eq!(v["images_dtype"], "float32");
    assert_eq!(v["labels_dtype"], "int64");
    assert_eq!(v["labels"], serde_json::json!(data.dataset.labels));
    assert_eq!(v["source_indices"], serde_json::json!(data.source_indices));
    let sum: f64 = data.dataset.images.iter().map(|&x| x as f64).sum();
    assert!((v["pixel_sum"].as_f64().unwrap() - sum).abs() < 1e-6);
    assert_eq!(
        v["pixel_last"].as_f64().unwrap() as f32,
        *data.dataset.images.last().unwrap()
    );
    assert_eq!(v["method"], "d_r");
    assert_eq!(v["seed"], 42);
}

/// Restricted ImageNet's test images are resized to 256/224 of the side before their centre
/// crop (the paper's code's Resize(256), CenterCrop(224)); its training images to the side
/// itself. A 16x16 image with a 1-pixel red frame at side 14: the test split resizes it to 16
/// (no change) and crops the frame away; the training split shrinks it, frame included.
#[test]
fn restricted_imagenet_test_images_are_resized_to_256_over_224_then_centre_cropped() {
    assert_eq!(folder::imagenet_test_resize(224), 256);
    assert_eq!(folder::imagenet_test_resize(14), 16);
    let root = tempfile::tempdir().unwrap();
    let mut framed = RgbImage::from_pixel(16, 16, Rgb([0, 0, 255]));
    for (x, y, p) in framed.enumerate_pixels_mut() {
        if x == 0 || y == 0 || x == 15 || y == 15 {
            *p = Rgb([255, 0, 0]);
        }
    }
    for split in ["train", "val"] {
        for i in 0..398 {
            std::fs::create_dir_all(root.path().join(format!("{split}/n{i:08}"))).unwrap();
        }
        framed
            .save(root.path().join(format!("{split}/n{:08}/a.png", 151)))
            .unwrap();
    }
    let red = |split| {
        let ds = load_restricted_imagenet(root.path(), split, 14, None).unwrap();
        assert_eq!((ds.len(), ds.shape), (1, [3, 14, 14]));
        ds.image(0)[..14 * 14].iter().fold(0f32, |m, &v| m.max(v))
    };
    assert_eq!(red(Split::Test), 0.0);
    assert!(red(Split::Train) > 0.2);
}
