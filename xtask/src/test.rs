//! `cargo xtask test`: the whole test suite, with its set-up.
//!
//! Installs what the tests need and nothing else does: a Python venv with onnx and
//! onnxruntime (pinned in tests/python/requirements.txt), the slim LibTorch the trainer
//! builds against (`cargo xtask libtorch`), the ALSA and JACK headers the standalone app
//! builds against, and Xvfb with software OpenGL for the editor test. Builds the plugin bundles (the CLAP and VST3 host tests load them) and the
//! standalone app with nice-plug's allocation check on the audio thread, then runs every test of the workspace in release mode (the reference cases
//! are slow unoptimised).

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
/// with software OpenGL and the X libraries the editor loads at run time. Installed when
/// missing.
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
    if !headers || !xvfb {
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
                ])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    Ok(())
}

pub fn run(args: Args) -> Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has a parent")?
        .to_path_buf();
    let python = python_venv(&root)?;
    crate::libtorch::ensure(&root, false)?;
    system_packages()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // One build gives the CLAP and VST3 bundles and the standalone app, in the `checked`
    // profile: release code that aborts on any allocation inside process(), so the host tests
    // prove the audio thread never allocates.
    crate::bundle::run(
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
    status(
        Command::new(cargo)
            .current_dir(&root)
            .args(["test", "--workspace", "--release"])
            .args(&args.cargo_args)
            .env("WAVECRN_PYTHON", &python)
            .env("WAVECRN_REQUIRE_ONNX_CHECK", "1")
            .env("WAVECRN_REQUIRE_BUNDLE", "1"),
    )
}
