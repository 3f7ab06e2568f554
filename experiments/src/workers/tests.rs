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

#[test]
fn map_in_order_visits_in_the_workers_order_and_returns_in_the_items_order() {
    let w = |index| Some(Worker { index, count: 2 });
    for worker in [None, w(0), w(1)] {
        let mut visited = Vec::new();
        let out = map_in_order(worker, vec![10, 11, 12, 13, 14], |x| {
            visited.push(x);
            Ok(x * 2)
        })
        .unwrap();
        assert_eq!(out, vec![20, 22, 24, 26, 28]);
        assert_eq!(visited, order(worker, vec![10, 11, 12, 13, 14]));
    }
    // A stage another worker holds is passed over, the rest done, and then the job deferred...
    let mut visited = Vec::new();
    let err = map_in_order(w(1), vec![0, 1, 2, 3], |x| {
        visited.push(x);
        match x {
            1 | 2 => Err(anyhow::Error::new(Deferred {
                stage: format!("s{x}"),
            })),
            _ => Ok(x),
        }
    })
    .unwrap_err();
    assert_eq!(visited, vec![1, 3, 0, 2]);
    assert_eq!(deferred_stage(&err).as_deref(), Some("s1"));
    // ... and any other error stops it at once.
    let mut visited = Vec::new();
    let err = map_in_order(w(1), vec![0, 1, 2, 3], |x| {
        visited.push(x);
        match x {
            3 => anyhow::bail!("corrupt"),
            _ => Ok(x),
        }
    })
    .unwrap_err();
    assert!(!is_deferred(&err));
    assert_eq!(visited, vec![1, 3]);
}
