//! `cargo xtask test`: the whole test suite, with its set-up.
//!
//! Installs what the tests need and nothing else does: a Python venv with onnx and
//! onnxruntime (pinned in tests/python/requirements.txt), the slim LibTorch the trainer
//! builds against (`cargo xtask libtorch`), the ALSA and JACK headers the standalone app
//! builds against, Xvfb with software OpenGL for the editor test, and Ardour 7 for the DAW
//! render test. Builds the plugin bundles (the CLAP and VST3 host tests load them) and the
//! standalone app with nice-plug's allocation check on the audio thread, and free-audio's
//! clap-validator from `../shared/tools`, then runs every test of the workspace in release
//! mode (the reference cases are slow unoptimised).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

#[derive(clap::Args)]
pub struct Args {
    /// Extra arguments for `cargo test` (after `--`).
    #[arg(last = true)]
    cargo_args: Vec<String>,
}

/// Runs `cmd` (echoed first); its failure is an error.
pub(crate) fn status(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {cmd:?}");
    let st = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed ({st})");
    }
    Ok(())
}

/// Creates (or updates) `.venv` with the pinned test requirements; returns its Python.
fn python_venv(root: &Path) -> Result<PathBuf> {
    let venv = root.join(".venv");
    let python = venv.join("bin/python");
    let requirements = root.join("tests/python/requirements.txt");
    let stamp = venv.join(".requirements");
    let wanted = std::fs::read_to_string(&requirements)?;
    if python.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&wanted) {
        return Ok(python);
    }
    let system = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    if !python.exists() {
        if Command::new(&system)
            .args(["-m", "venv", "--help"])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            // Debian's python3 keeps venv in a separate package.
            status(Command::new("apt-get").arg("update").arg("-q"))?;
            status(Command::new("apt-get").args(["install", "-y", "-q", "python3-venv"]))?;
        }
        status(Command::new(&system).args(["-m", "venv"]).arg(&venv))?;
    }
    status(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "--no-cache-dir",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements),
    )?;
    std::fs::write(&stamp, wanted)?;
    Ok(python)
}

/// What the build and the tests need from the system (Debian names): the ALSA and JACK
/// headers the standalone app builds against, and for the editor test an X server (Xvfb)
/// with software OpenGL and the X libraries the editor loads at run time, and Ardour for the
/// DAW render test. Installed when missing.
fn system_packages() -> Result<()> {
    let headers = Command::new("pkg-config")
        .args(["--exists", "alsa", "jack"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let xvfb = Command::new("sh")
        .args(["-c", "command -v Xvfb"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    // Ardour 7 (its headless `ardour7-lua`) for the DAW render test; about a minute to install.
    let ardour = Command::new("sh")
        .args(["-c", "command -v ardour7-lua"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !headers || !xvfb || !ardour {
        status(Command::new("apt-get").arg("update").arg("-q"))?;
        status(
            Command::new("apt-get")
                .args(["install", "-y", "-q"])
                .args([
                    "pkg-config",
                    "libasound2-dev",
                    "libjack-jackd2-dev",
                    "xvfb",
                    "libgl1-mesa-dri",
                    "libglx-mesa0",
                    "libx11-xcb1",
                    "libxcursor1",
                    "libxkbcommon-x11-0",
                    "ardour",
                ])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    Ok(())
}

/// Copies the files under `from` into `to`, writing only those whose bytes differ, so an
/// unchanged copy keeps its times and cargo does not rebuild it.
fn mirror(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            mirror(&src, &dst)?;
        } else {
            let bytes = std::fs::read(&src)?;
            if std::fs::read(&dst).ok().as_deref() != Some(&bytes[..]) {
                std::fs::write(&dst, bytes)?;
            }
        }
    }
    Ok(())
}

/// The `(name, version)` of every package a `Cargo.lock` pins.
fn locked_packages(lock: &Path) -> Result<std::collections::BTreeSet<(String, String)>> {
    let text = std::fs::read_to_string(lock).with_context(|| format!("{}", lock.display()))?;
    let mut packages = std::collections::BTreeSet::new();
    let mut name = None;
    for line in text.lines() {
        let value = |key: &str| {
            line.strip_prefix(key)
                .map(|v| v.trim_matches(|c| c == '"' || c == ' ').to_string())
        };
        if line == "[[package]]" {
            name = None;
        } else if let Some(n) = value("name = ") {
            name = Some(n);
        } else if let (Some(v), Some(n)) = (value("version = "), name.take()) {
            packages.insert((n, v));
        }
    }
    Ok(packages)
}

/// Builds free-audio's clap-validator from `../shared/tools/clap-validator` into
/// `target/clap-validator`, `--locked`; `None` (said on stderr) where that source is missing.
///
/// The shared folder is read-only, and its `Cargo.lock` still lists the validator's own test
/// plugins (git dependencies cut from its workspace), so cargo wants to rewrite it and
/// `--locked` refuses. So a copy is built: `cargo fetch` prunes the copy's lock of those
/// entries, the pruned lock is checked to pin nothing the shared one does not, and the build
/// then runs `--locked` against it.
fn clap_validator(root: &Path, cargo: &str) -> Result<Option<PathBuf>> {
    let source = root.join("../shared/tools/clap-validator");
    if !source.join("Cargo.toml").exists() {
        eprintln!(
            "{} is missing: the clap-validator test will skip",
            source.display()
        );
        return Ok(None);
    }
    let target = root.join("target/clap-validator");
    let copy = target.join("source");
    mirror(&source, &copy)?;
    let manifest = copy.join("Cargo.toml");
    let pruned = Command::new(cargo)
        .args(["fetch", "--manifest-path"])
        .arg(&manifest)
        .stdout(std::process::Stdio::null())
        .status()?;
    if !pruned.success() {
        bail!("cargo fetch on {} failed", manifest.display());
    }
    let shared = locked_packages(&source.join("Cargo.lock"))?;
    let added: Vec<_> = locked_packages(&copy.join("Cargo.lock"))?
        .difference(&shared)
        .cloned()
        .collect();
    if !added.is_empty() {
        bail!("clap-validator's lock would change, not only shrink: {added:?}");
    }
    status(
        Command::new(cargo)
            .args(["build", "--release", "--locked", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target),
    )?;
    Ok(Some(target.join("release/clap-validator")))
}

pub fn run(args: Args) -> Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has a parent")?
        .to_path_buf();
    let python = python_venv(&root)?;
    crate::chores::libtorch::ensure(&root, false)?;
    system_packages()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // One build gives the CLAP and VST3 bundles and the standalone app, in the `checked`
    // profile: release code that aborts on any allocation inside process(), so the host tests
    // prove the audio thread never allocates.
    crate::chores::bundle::run(
        [
            "wavecrn",
            "--profile",
            "checked",
            "--features",
            "standalone,assert_process_allocs",
        ]
        .map(String::from)
        .to_vec(),
    )?;
    let validator = clap_validator(&root, &cargo)?;
    let mut test = Command::new(&cargo);
    if let Some(v) = &validator {
        test.env("WAVECRN_CLAP_VALIDATOR", v);
    }
    status(
        test.current_dir(&root)
            .args(["test", "--workspace", "--release"])
            .args(&args.cargo_args)
            .env("WAVECRN_PYTHON", &python)
            .env("WAVECRN_REQUIRE_ONNX_CHECK", "1")
            .env("WAVECRN_REQUIRE_BUNDLE", "1"),
    )
}
