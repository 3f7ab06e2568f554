//! The torch environment: a Python virtual environment holding exactly the PyTorch that tch
//! needs, from which torch-sys takes libtorch (`LIBTORCH_USE_PYTORCH=1`).

use crate::proc::{find_on_path, say, shell_quote, write_atomic, Cmd};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The PyTorch version tch 0.26 is built against.
pub const TORCH_VERSION: &str = "2.13.0";
/// What `pip install` gets.
pub const PIP_PACKAGES: &[&str] = &["torch==2.13.0", "numpy", "safetensors"];
/// Reference implementations the tests compare nrf with, installed with `pip install --no-deps`
/// so that pip can never replace the environment's torch (torchattacks would pull torchvision,
/// scipy and requests; the tests load only the attack modules they need, which import torch and
/// numpy alone).
pub const NO_DEPS_PACKAGES: &[(&str, &str)] = &[("torchattacks", "3.5.1")];
/// Written (with the torch version) only after a complete, verified install.
pub const MARKER: &str = ".nrf-complete";
/// The oldest Python we accept.
pub const MIN_PYTHON: (u32, u32) = (3, 10);

const PROBE_SCRIPT: &str = "import torch; print(torch.__version__, torch.__file__)";

/// A ready torch environment.
#[derive(Debug, Clone)]
pub struct TorchEnv {
    /// The virtual environment's folder.
    pub dir: PathBuf,
    /// `<dir>/bin/python`.
    pub python: PathBuf,
    /// `torch.__version__`, e.g. `2.13.0+cu130`.
    pub version: String,
    /// The folder holding libtorch's shared libraries (`<site-packages>/torch/lib`).
    pub lib: PathBuf,
}

/// What `python -c 'import torch; ...'` reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// `torch.__version__`.
    pub version: String,
    /// `torch.__file__`.
    pub file: PathBuf,
    /// Whether `file` lies inside the environment (and not in some other torch on the system).
    pub inside_env: bool,
}

/// What is found at the environment's location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvState {
    /// Nothing there.
    Absent,
    /// Something that is not a folder.
    NotADir,
    /// An empty folder.
    Empty,
    /// A non-empty folder that is not a virtual environment and has no marker: not ours.
    Foreign,
    /// A virtual environment without the marker: an install that was interrupted.
    Incomplete,
    /// A marked environment, with the result of importing torch from it.
    Complete(std::result::Result<Probe, String>),
}

/// What to do about the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Use it as it is.
    Reuse,
    /// Create it (nothing to delete first).
    Create,
    /// Delete it and install again, for the reason given.
    Redo(String),
    /// Stop with this error: the folder is not ours to delete.
    Refuse(String),
}

/// Whether `version` (e.g. `2.13.0+cu130`) is the PyTorch release `wanted` (e.g. `2.13.0`).
pub fn version_matches(version: &str, wanted: &str) -> bool {
    version.split('+').next() == Some(wanted)
}

/// The decision, as a pure function of what was found.
pub fn decide(state: &EnvState, wanted: &str) -> Action {
    match state {
        EnvState::Absent | EnvState::Empty => Action::Create,
        EnvState::NotADir => Action::Refuse("it exists but is not a folder".into()),
        EnvState::Foreign => Action::Refuse(
            "it is a non-empty folder that is neither a Python virtual environment nor marked as \
             made by xtask, so xtask will not delete it"
                .into(),
        ),
        EnvState::Incomplete => Action::Redo(format!(
            "it has no {MARKER} marker (an earlier install was interrupted)"
        )),
        EnvState::Complete(Err(e)) => Action::Redo(format!("importing torch from it failed: {e}")),
        EnvState::Complete(Ok(p)) if !p.inside_env => Action::Redo(format!(
            "its python imports torch from {}, outside the environment",
            p.file.display()
        )),
        EnvState::Complete(Ok(p)) if !version_matches(&p.version, wanted) => Action::Redo(format!(
            "it holds torch {}, but tch needs {wanted}",
            p.version
        )),
        EnvState::Complete(Ok(_)) => Action::Reuse,
    }
}

/// The environment's location: `$NRF_TORCH_ENV`, else
/// `${XDG_CACHE_HOME:-$HOME/.cache}/nrf/torch-<version>`; always absolute.
pub fn env_dir() -> Result<PathBuf> {
    let get = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let dir = default_env_dir(get("NRF_TORCH_ENV"), get("XDG_CACHE_HOME"), get("HOME"))?;
    absolute(&dir)
}

/// [`env_dir`] from explicit values (for tests).
pub fn default_env_dir(
    nrf_torch_env: Option<PathBuf>,
    xdg_cache_home: Option<PathBuf>,
    home: Option<PathBuf>,
) -> Result<PathBuf> {
    if let Some(p) = nrf_torch_env {
        return Ok(p);
    }
    let cache = match (xdg_cache_home, home) {
        (Some(x), _) => x,
        (None, Some(h)) => h.join(".cache"),
        (None, None) => bail!(
            "neither NRF_TORCH_ENV, XDG_CACHE_HOME nor HOME is set: cannot choose where to put the \
             torch environment (set NRF_TORCH_ENV=/some/folder)"
        ),
    };
    Ok(cache.join("nrf").join(format!("torch-{TORCH_VERSION}")))
}

/// `p` made absolute against the current directory (without resolving links).
pub fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()
            .context("could not read the current directory")?
            .join(p))
    }
}

fn python_of(dir: &Path) -> PathBuf {
    dir.join("bin").join("python")
}

/// Parses the probe's output (`<version> <path of torch/__init__.py>`, last line).
pub fn parse_probe(out: &str) -> Result<(String, PathBuf)> {
    let line = out
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .context("printed nothing")?;
    let (version, file) = line
        .trim()
        .split_once(' ')
        .with_context(|| format!("printed {line:?}, expected `<version> <path>`"))?;
    Ok((version.to_string(), PathBuf::from(file)))
}

/// Imports torch with the environment's python (by absolute path, with PYTHONPATH/PYTHONHOME
/// removed, so no other torch can be picked up).
fn probe(dir: &Path) -> std::result::Result<Probe, String> {
    let python = python_of(dir);
    if !python.exists() {
        return Err(format!("{} does not exist", python.display()));
    }
    let mut cmd = Cmd::new(&python).args(["-c", PROBE_SCRIPT]);
    cmd.env_remove_hidden("PYTHONPATH");
    cmd.env_remove_hidden("PYTHONHOME");
    let out = cmd.output().map_err(|e| format!("{e:#}"))?;
    let (version, file) = parse_probe(&out).map_err(|e| format!("the probe {e:#}"))?;
    let inside_env = match (file.canonicalize(), dir.canonicalize()) {
        (Ok(f), Ok(d)) => f.starts_with(d),
        _ => file.starts_with(dir),
    };
    Ok(Probe {
        version,
        file,
        inside_env,
    })
}

/// Looks at the environment's location; imports torch only when the marker is there.
pub fn observe(dir: &Path) -> Result<EnvState> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(EnvState::Absent),
        Err(e) => return Err(e).with_context(|| format!("could not inspect {}", dir.display())),
    };
    if !meta.is_dir() {
        return Ok(EnvState::NotADir);
    }
    if dir.join(MARKER).is_file() {
        return Ok(EnvState::Complete(probe(dir)));
    }
    let mut entries =
        std::fs::read_dir(dir).with_context(|| format!("could not list {}", dir.display()))?;
    if entries.next().is_none() {
        return Ok(EnvState::Empty);
    }
    if dir.join("pyvenv.cfg").is_file() {
        Ok(EnvState::Incomplete)
    } else {
        Ok(EnvState::Foreign)
    }
}

/// Makes sure the environment exists and holds the right torch; installs it when needed.
pub fn ensure() -> Result<TorchEnv> {
    let dir = env_dir()?;
    let state = observe(&dir)?;
    let p = match decide(&state, TORCH_VERSION) {
        Action::Reuse => {
            say(format!("reusing the torch environment {}", dir.display()));
            match state {
                EnvState::Complete(Ok(p)) => p,
                _ => bail!("internal error: decide() chose reuse for {state:?}"),
            }
        }
        Action::Create => {
            say(format!(
                "creating the torch environment {} (torch {TORCH_VERSION}, about 5 GB; this takes \
                 a few minutes once)",
                dir.display()
            ));
            install(&dir)?
        }
        Action::Redo(reason) => {
            say(format!(
                "the torch environment {} is not usable: {reason}; deleting it and redoing the \
                 install",
                dir.display()
            ));
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("could not delete {}", dir.display()))?;
            install(&dir)?
        }
        Action::Refuse(reason) => bail!(
            "cannot use {} as the torch environment: {reason}. Delete it yourself, or set \
             NRF_TORCH_ENV to another folder",
            dir.display()
        ),
    };
    let lib = p
        .file
        .parent()
        .context("torch.__file__ has no parent folder")?
        .join("lib");
    Ok(TorchEnv {
        python: python_of(&dir),
        dir,
        version: p.version,
        lib,
    })
}

/// Finds `python3` on PATH (never inside `dir`) and checks its version.
fn base_python(dir: &Path) -> Result<PathBuf> {
    let python = find_on_path("python3", Some(dir)).with_context(|| {
        format!(
            "python3 was not found on PATH. Install Python >= {}.{} (with its venv module; on \
             Debian/Ubuntu: `apt-get install python3 python3-venv`) and run this again",
            MIN_PYTHON.0, MIN_PYTHON.1
        )
    })?;
    let out = Cmd::new(&python)
        .args([
            "-c",
            "import sys; print(sys.version_info[0], sys.version_info[1])",
        ])
        .output()
        .with_context(|| format!("could not ask {} for its version", python.display()))?;
    let ver = parse_python_version(&out)
        .with_context(|| format!("{} printed {out:?} as its version", python.display()))?;
    if ver < MIN_PYTHON {
        bail!(
            "{} is Python {}.{}; torch {TORCH_VERSION} needs Python >= {}.{}. Put a newer python3 \
             first on PATH",
            python.display(),
            ver.0,
            ver.1,
            MIN_PYTHON.0,
            MIN_PYTHON.1
        );
    }
    Ok(python)
}

/// Parses `"3 11"` into `(3, 11)`.
pub fn parse_python_version(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split_whitespace();
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

fn install(dir: &Path) -> Result<Probe> {
    let python3 = base_python(dir)?;
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("could not create {}", parent.display()))?;
    }
    let mut venv = Cmd::new(&python3).args(["-m", "venv"]).arg(dir);
    venv.env_remove_hidden("PYTHONPATH");
    venv.env_remove_hidden("PYTHONHOME");
    venv.run().with_context(|| {
        format!(
            "could not create a virtual environment with {} (on Debian/Ubuntu the venv module is \
             in the package python3-venv)",
            python3.display()
        )
    })?;
    let mut pip = Cmd::new(python_of(dir))
        .args(["-m", "pip", "install"])
        .args(PIP_PACKAGES);
    pip.env_remove_hidden("PYTHONPATH");
    pip.env_remove_hidden("PYTHONHOME");
    pip.env_hidden("PIP_DISABLE_PIP_VERSION_CHECK", "1");
    pip.run().with_context(|| {
        format!(
            "installing torch into {} failed (it needs network access and about 5 GB of disk); \
             run `cargo xtask setup` again to retry",
            dir.display()
        )
    })?;
    let p = probe(dir).map_err(anyhow::Error::msg).with_context(|| {
        format!(
            "torch was installed into {} but does not import",
            dir.display()
        )
    })?;
    if !version_matches(&p.version, TORCH_VERSION) || !p.inside_env {
        bail!(
            "after installing, {} imports torch {} from {}; expected {TORCH_VERSION} inside the \
             environment",
            dir.display(),
            p.version,
            p.file.display()
        );
    }
    write_atomic(&dir.join(MARKER), &format!("{}\n", p.version))?;
    say(format!(
        "torch {} installed in {}",
        p.version,
        dir.display()
    ));
    Ok(p)
}

/// The variables child cargo processes get: `(name, Some(value))` to set, `(name, None)` to
/// remove.
pub fn child_env(env: &TorchEnv) -> Vec<(&'static str, Option<String>)> {
    let bin = env.dir.join("bin");
    let path = match std::env::var_os("PATH") {
        Some(old) => {
            let mut parts = vec![bin];
            parts.extend(std::env::split_paths(&old));
            std::env::join_paths(parts)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| env.dir.join("bin").to_string_lossy().into_owned())
        }
        None => bin.to_string_lossy().into_owned(),
    };
    let ld = match std::env::var("LD_LIBRARY_PATH") {
        Ok(old) if !old.is_empty() => format!("{}:{old}", env.lib.display()),
        _ => env.lib.display().to_string(),
    };
    vec![
        ("LIBTORCH_USE_PYTORCH", Some("1".into())),
        ("VIRTUAL_ENV", Some(env.dir.display().to_string())),
        ("PATH", Some(path)),
        // The test binaries of crates other than experiments/ carry no rpath to libtorch.
        ("LD_LIBRARY_PATH", Some(ld)),
        ("LIBTORCH", None),
        ("LIBTORCH_INCLUDE", None),
        ("LIBTORCH_LIB", None),
        ("PYTHONPATH", None),
        ("PYTHONHOME", None),
    ]
}

/// Applies [`child_env`] to a command.
pub fn apply(cmd: Cmd, env: &TorchEnv) -> Cmd {
    let mut cmd = cmd.note(format!("(torch env {})", env.dir.display()));
    for (k, v) in child_env(env) {
        match v {
            Some(v) => cmd.env_hidden(k, v),
            None => cmd.env_remove_hidden(k),
        }
    }
    cmd
}

/// Shell lines that set up the same environment by hand (`eval "$(cargo xtask env)"`).
pub fn shell_exports(env: &TorchEnv) -> String {
    let dir = shell_quote(&env.dir.display().to_string());
    let bin = shell_quote(&env.dir.join("bin").display().to_string());
    let lib = shell_quote(&env.lib.display().to_string());
    format!(
        "export LIBTORCH_USE_PYTORCH=1\n\
         export VIRTUAL_ENV={dir}\n\
         export PATH={bin}:\"$PATH\"\n\
         export LD_LIBRARY_PATH={lib}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}\n\
         unset LIBTORCH LIBTORCH_INCLUDE LIBTORCH_LIB PYTHONPATH PYTHONHOME\n"
    )
}

/// Installs every [`NO_DEPS_PACKAGES`] entry that is missing (or at another version) into the
/// environment with `pip install --no-deps`, then checks that torch is still the one tch needs.
/// Cheap when everything is there: one Python start.
pub fn ensure_no_deps_packages(env: &TorchEnv) -> Result<()> {
    let query = NO_DEPS_PACKAGES
        .iter()
        .map(|(name, _)| format!("'{name}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let script = format!(
        "import importlib.metadata as m\nfor n in [{query}]:\n    try: print(n, m.version(n))\n    \
         except m.PackageNotFoundError: print(n, '-')"
    );
    let out = Cmd::new(&env.python)
        .args(["-c", &script])
        .output()
        .with_context(|| format!("could not ask {} for its packages", env.python.display()))?;
    let missing: Vec<String> = NO_DEPS_PACKAGES
        .iter()
        .filter(|(name, version)| {
            !out.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == [*name, *version])
        })
        .map(|(name, version)| format!("{name}=={version}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    say(format!(
        "installing {} into {} (--no-deps: torch stays {})",
        missing.join(" "),
        env.dir.display(),
        env.version
    ));
    let mut pip = Cmd::new(&env.python)
        .args(["-m", "pip", "install", "--no-deps"])
        .args(&missing);
    pip.env_remove_hidden("PYTHONPATH");
    pip.env_remove_hidden("PYTHONHOME");
    pip.env_hidden("PIP_DISABLE_PIP_VERSION_CHECK", "1");
    pip.run().with_context(|| {
        format!(
            "installing {} failed (it needs network access)",
            missing.join(" ")
        )
    })?;
    let p = probe(&env.dir).map_err(anyhow::Error::msg)?;
    if p.version != env.version {
        bail!(
            "after installing {}, {} imports torch {} instead of {}",
            missing.join(" "),
            env.dir.display(),
            p.version,
            env.version
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
