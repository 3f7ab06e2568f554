//! One run per results folder (`nrf_experiments::lock`): a second hold on a folder is refused with
//! a message naming the folder and the holder; a lock file left behind by a dead process, or by a
//! SIGKILLed holder, never blocks; `nrf reproduce` and `nrf report` refuse a held folder before
//! writing anything into it.
use nrf_experiments::lock::{ResultsLock, LOCK_FILE};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

/// Set in the environment of the child process of [`a_sigkilled_holder_does_not_block`]: the
/// folder that [`holder_process`] locks.
const HOLD_ENV: &str = "NRF_LOCK_TEST_HOLD";

/// The tests here run one at a time: a process spawned by one test holds copies of the open files
/// of the others between its fork and its exec, which would keep a dropped lock alive meanwhile.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn err_text(r: anyhow::Result<ResultsLock>) -> String {
    format!("{:#}", r.expect_err("the second hold was not refused"))
}

#[test]
fn a_second_hold_is_refused_naming_the_folder_and_the_holder() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("smoke");
    std::fs::create_dir(&results).unwrap();
    let first = ResultsLock::acquire(&results, "nrf reproduce").unwrap();
    assert!(first.is_locked(), "this filesystem does not support locks");
    assert_eq!(first.path(), results.join(LOCK_FILE));
    let content = std::fs::read_to_string(first.path()).unwrap();
    assert!(
        content.contains(&format!("pid: {}\n", std::process::id())),
        "{content}"
    );

    // A second open file description in the same process: flock-style locks belong to the open
    // file, so it is refused just as another process would be.
    for command in ["nrf reproduce", "nrf report"] {
        let msg = err_text(ResultsLock::acquire(&results, command));
        assert!(
            msg.contains(&results.display().to_string()),
            "the folder is not named: {msg}"
        );
        assert!(
            msg.contains(&format!(
                "nrf reproduce, pid {} on host ",
                std::process::id()
            )),
            "the holder is not named: {msg}"
        );
        assert!(msg.contains("started 2"), "no start time: {msg}");
    }
    // The refused attempts left the holder's record alone.
    assert_eq!(std::fs::read_to_string(first.path()).unwrap(), content);

    drop(first);
    let again = ResultsLock::acquire(&results, "nrf report").unwrap();
    assert!(std::fs::read_to_string(again.path())
        .unwrap()
        .contains("command: nrf report\n"));
}

#[test]
fn a_lock_file_left_by_a_dead_process_does_not_block() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(LOCK_FILE),
        "pid: 999999999\nhost: elsewhere\nstarted: 2001-01-01 00:00:00 UTC\nstarted_unix: 978307200\n\
         command: nrf reproduce\n",
    )
    .unwrap();
    let lock = ResultsLock::acquire(dir.path(), "nrf reproduce")
        .expect("a lock file nobody holds blocked the run");
    let content = std::fs::read_to_string(lock.path()).unwrap();
    assert!(
        content.starts_with(&format!("pid: {}\n", std::process::id()))
            && !content.contains("elsewhere"),
        "the lock file does not name the new holder: {content}"
    );
    drop(lock);
    // A clean release empties the file: it never names a finished holder.
    assert_eq!(
        std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap(),
        ""
    );
}

#[test]
fn a_missing_folder_is_named() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let msg = err_text(ResultsLock::acquire(&missing, "nrf report"));
    assert!(
        msg.contains(&missing.display().to_string()) && msg.contains("does not exist"),
        "{msg}"
    );
    assert!(!missing.exists(), "acquire created the folder");
}

/// The holder of [`a_sigkilled_holder_does_not_block`], run as a child process (this test binary
/// again, filtered to this test); without `NRF_LOCK_TEST_HOLD` it does nothing.
#[test]
fn holder_process() {
    let Some(dir) = std::env::var_os(HOLD_ENV) else {
        return;
    };
    let _lock = ResultsLock::acquire(Path::new(&dir), "lock test holder").unwrap();
    println!("LOCKED {}", std::process::id());
    // Killed by the parent long before this ends.
    std::thread::sleep(std::time::Duration::from_secs(120));
}

#[test]
fn a_sigkilled_holder_does_not_block() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "holder_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HOLD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let locked = stdout
        .lines()
        .map_while(Result::ok)
        // The harness prints "test holder_process ... " on the same line first.
        .find_map(|l| {
            l.split_once("LOCKED ")
                .map(|(_, pid)| pid.trim().to_string())
        });
    let Some(pid) = locked else {
        let status = child.wait().unwrap();
        panic!("the holder process never took the lock ({status})");
    };
    assert_eq!(pid, child.id().to_string());

    // Held by another process: refused, naming it.
    let msg = err_text(ResultsLock::acquire(dir.path(), "nrf reproduce"));
    assert!(
        msg.contains(&format!("lock test holder, pid {} on host ", child.id())),
        "{msg}"
    );

    // SIGKILL (Child::kill on Unix): no destructor runs, the file keeps its content, and the
    // kernel releases the lock with the process.
    child.kill().unwrap();
    child.wait().unwrap();
    let stale = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
    assert!(stale.contains(&format!("pid: {}\n", child.id())), "{stale}");
    let lock = ResultsLock::acquire(dir.path(), "nrf reproduce")
        .expect("the lock of a killed process still blocks");
    assert!(lock.is_locked());
}

/// `nrf reproduce` and `nrf report` on a held folder fail at once with the message, and write
/// nothing into the folder.
#[test]
fn the_nrf_commands_refuse_a_held_folder() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("smoke");
    std::fs::create_dir(&results).unwrap();
    let held = ResultsLock::acquire(&results, "nrf reproduce").unwrap();
    for args in [
        &["reproduce", "--preset", "smoke", "--quiet", "--results"][..],
        &["report", "--results"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_nrf"))
            .args(args)
            .arg(&results)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "nrf {} was not refused", args[0]);
        assert!(
            err.contains(&format!("results folder {} is in use", results.display()))
                && err.contains(&format!("pid {}", std::process::id())),
            "nrf {}: the message does not name the folder and the holder:\n{err}",
            args[0]
        );
    }
    let mut left: Vec<String> = std::fs::read_dir(&results)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, [LOCK_FILE], "a refused command wrote into the folder");
    drop(held);
}
