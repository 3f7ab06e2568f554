use super::*;

fn probe_ok(version: &str, inside: bool) -> EnvState {
    EnvState::Complete(Ok(Probe {
        version: version.into(),
        file: "/env/lib/python3.11/site-packages/torch/__init__.py".into(),
        inside_env: inside,
    }))
}

#[test]
fn marker_and_right_version_is_reused() {
    assert_eq!(decide(&probe_ok("2.13.0", true), "2.13.0"), Action::Reuse);
    assert_eq!(
        decide(&probe_ok("2.13.0+cu130", true), "2.13.0"),
        Action::Reuse
    );
    assert_eq!(
        decide(&probe_ok("2.13.0+cpu", true), "2.13.0"),
        Action::Reuse
    );
}

#[test]
fn folder_without_marker_is_redone() {
    assert!(matches!(
        decide(&EnvState::Incomplete, "2.13.0"),
        Action::Redo(r) if r.contains("interrupted")
    ));
}

#[test]
fn absent_or_empty_is_created() {
    assert_eq!(decide(&EnvState::Absent, "2.13.0"), Action::Create);
    assert_eq!(decide(&EnvState::Empty, "2.13.0"), Action::Create);
}

#[test]
fn wrong_or_broken_torch_is_redone() {
    assert!(
        matches!(decide(&probe_ok("2.12.1", true), "2.13.0"), Action::Redo(r) if r.contains("2.12.1"))
    );
    assert!(matches!(
        decide(&probe_ok("2.13.01", true), "2.13.0"),
        Action::Redo(_)
    ));
    assert!(
        matches!(decide(&probe_ok("2.13.0", false), "2.13.0"), Action::Redo(r) if r.contains("outside"))
    );
    assert!(matches!(
        decide(&EnvState::Complete(Err("No module named 'torch'".into())), "2.13.0"),
        Action::Redo(r) if r.contains("No module named")
    ));
}

#[test]
fn foreign_folders_are_never_deleted() {
    assert!(matches!(
        decide(&EnvState::Foreign, "2.13.0"),
        Action::Refuse(_)
    ));
    assert!(matches!(
        decide(&EnvState::NotADir, "2.13.0"),
        Action::Refuse(_)
    ));
}

#[test]
fn versions() {
    assert!(version_matches("2.13.0", "2.13.0"));
    assert!(version_matches("2.13.0+cu130", "2.13.0"));
    assert!(!version_matches("2.13.1", "2.13.0"));
    assert!(!version_matches("12.13.0", "2.13.0"));
    assert_eq!(parse_python_version("3 11\n"), Some((3, 11)));
    assert_eq!(parse_python_version("3"), None);
    assert!(parse_python_version("3 9").unwrap() < MIN_PYTHON);
    assert!(parse_python_version("3 10").unwrap() >= MIN_PYTHON);
    assert!(parse_python_version("4 0").unwrap() >= MIN_PYTHON);
}

#[test]
fn probe_output() {
    let (v, f) = parse_probe("warning: blah\n2.13.0+cu130 /e/torch/__init__.py\n").unwrap();
    assert_eq!(v, "2.13.0+cu130");
    assert_eq!(f, PathBuf::from("/e/torch/__init__.py"));
    let (_, f) = parse_probe("2.13.0 /with space/torch/__init__.py").unwrap();
    assert_eq!(f, PathBuf::from("/with space/torch/__init__.py"));
    assert!(parse_probe("").is_err());
    assert!(parse_probe("2.13.0").is_err());
}

#[test]
fn location() {
    let p = |s: &str| Some(PathBuf::from(s));
    assert_eq!(
        default_env_dir(p("/x/env"), p("/xdg"), p("/home/u")).unwrap(),
        PathBuf::from("/x/env")
    );
    assert_eq!(
        default_env_dir(None, p("/xdg"), p("/home/u")).unwrap(),
        PathBuf::from("/xdg/nrf/torch-2.13.0")
    );
    assert_eq!(
        default_env_dir(None, None, p("/home/u")).unwrap(),
        PathBuf::from("/home/u/.cache/nrf/torch-2.13.0")
    );
    assert!(default_env_dir(None, None, None).is_err());
}

/// A unique scratch folder under the system temp dir (removed on drop).
struct Scratch(PathBuf);
impl Scratch {
    fn new(tag: &str) -> Scratch {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let p =
            std::env::temp_dir().join(format!("xtask-test-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn observing_folders() {
    let s = Scratch::new("observe");
    let env = s.0.join("env");
    assert_eq!(observe(&env).unwrap(), EnvState::Absent);
    std::fs::create_dir(&env).unwrap();
    assert_eq!(observe(&env).unwrap(), EnvState::Empty);
    std::fs::write(env.join("notes.txt"), "mine").unwrap();
    assert_eq!(observe(&env).unwrap(), EnvState::Foreign);
    std::fs::write(env.join("pyvenv.cfg"), "home = /usr/bin\n").unwrap();
    std::fs::create_dir_all(env.join("bin")).unwrap();
    assert_eq!(observe(&env).unwrap(), EnvState::Incomplete);
    // Marked, but bin/python is missing: the probe fails and the env is redone.
    std::fs::write(env.join(MARKER), "2.13.0\n").unwrap();
    let st = observe(&env).unwrap();
    assert!(matches!(&st, EnvState::Complete(Err(e)) if e.contains("does not exist")));
    assert!(matches!(decide(&st, TORCH_VERSION), Action::Redo(_)));
    let file = s.0.join("file");
    std::fs::write(&file, "x").unwrap();
    assert_eq!(observe(&file).unwrap(), EnvState::NotADir);
}

#[test]
fn exports_are_shell_lines() {
    let env = TorchEnv {
        dir: "/c/nrf/torch-2.13.0".into(),
        python: "/c/nrf/torch-2.13.0/bin/python".into(),
        version: "2.13.0".into(),
        lib: "/c/nrf/torch-2.13.0/lib/python3.11/site-packages/torch/lib".into(),
    };
    let s = shell_exports(&env);
    assert!(s.contains("export LIBTORCH_USE_PYTORCH=1\n"));
    assert!(s.contains("export PATH=/c/nrf/torch-2.13.0/bin:\"$PATH\"\n"));
    assert!(s.contains("unset LIBTORCH LIBTORCH_INCLUDE LIBTORCH_LIB"));
    let vars = child_env(&env);
    assert!(vars.contains(&("LIBTORCH", None)));
    assert!(vars.contains(&("LIBTORCH_USE_PYTORCH", Some("1".into()))));
    let path = vars
        .iter()
        .find(|(k, _)| *k == "PATH")
        .unwrap()
        .1
        .clone()
        .unwrap();
    assert!(path.starts_with("/c/nrf/torch-2.13.0/bin"));
}
