use super::*;

#[test]
fn workers_take_the_jobs_in_interleaved_orders() {
    let w = |index| Some(Worker { index, count: 2 });
    assert_eq!(order(None, vec![0, 1, 2, 3, 4]), vec![0, 1, 2, 3, 4]);
    assert_eq!(order(w(0), vec![0, 1, 2, 3, 4]), vec![0, 2, 4, 1, 3]);
    assert_eq!(order(w(1), vec![0, 1, 2, 3, 4]), vec![1, 3, 0, 2, 4]);
    assert_eq!(order(w(1), vec![0, 1, 2]), vec![1, 0, 2]);
}

#[test]
fn progress_counts_the_stages_under_way_by_their_chunks_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    std::fs::create_dir_all(r.join("stages")).unwrap();
    let record = |name: &str| r.join(format!("stages/{name}.json"));
    // Done: its record. Under way: 1 of 4 chunks stored. Not started: nothing.
    std::fs::write(record("train_C_std"), b"{}").unwrap();
    let chunks = r.join("work/construct_D_R-0123abcd/chunks");
    std::fs::create_dir_all(&chunks).unwrap();
    std::fs::write(chunks.join("n_chunks"), b"4").unwrap();
    std::fs::write(chunks.join("chunk_00000.safetensors"), b"x").unwrap();
    // Another stage's folder whose name starts alike is not this one's.
    let other = r.join("work/construct_D_R_cos-0123abcd/chunks");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("n_chunks"), b"1").unwrap();
    std::fs::write(other.join("chunk_00000.safetensors"), b"x").unwrap();
    let p = Progress {
        stages: vec![
            (vec![record("train_C_std")], 1.0),
            (vec![record("construct_D_R")], 2.0),
            (vec![record("train_on_D_R"), record("train_on_D_R~s1")], 1.0),
        ],
        total: 4.0,
        work: r.join("work"),
    };
    assert!(
        (p.done() - (1.0 + 2.0 * 0.25) / 4.0).abs() < 1e-12,
        "{}",
        p.done()
    );
}

#[test]
fn worker_arguments_are_checked() {
    assert_eq!(
        "2/3".parse::<Worker>().unwrap(),
        Worker { index: 1, count: 3 }
    );
    for bad in ["0/2", "3/2", "1", "a/b", "1/0"] {
        assert!(bad.parse::<Worker>().is_err(), "{bad}");
    }
}

#[test]
fn a_claim_excludes_other_holders_until_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let a = try_claim(dir.path(), "train:C_std").unwrap();
    assert!(a.is_some());
    // flock is per open file description: a second open in this process is another holder.
    assert!(try_claim(dir.path(), "train:C_std").unwrap().is_none());
    assert!(try_claim(dir.path(), "train:C_rob").unwrap().is_some());
    drop(a);
    assert!(try_claim(dir.path(), "train:C_std").unwrap().is_some());
}

#[test]
fn threads_are_split_between_workers() {
    assert_eq!(threads_per_worker(2, 2), 1);
    assert_eq!(threads_per_worker(4, 2), 2);
    assert_eq!(threads_per_worker(1, 2), 1);
    assert!(threads_per_worker(0, 1) >= 1);
}
