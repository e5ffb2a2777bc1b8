//! `cargo xtask libtorch`: a slim CPU LibTorch 2.11.0 in `.libtorch/`, from PyPI wheels only.
//!
//! The `torch==2.11.0` wheel (a CUDA 13 build) carries LibTorch. For the CPU, training needs
//! `libtorch_cpu`, `libc10`, `libgomp`, the headers, and the two CUDA runtime libraries
//! `libtorch_cpu` is linked against (`libcudart`, `libcupti`, from their own small wheels).
//! `libtorch.so` in the wheel is only an umbrella that pulls in `libtorch_cuda`; an empty
//! library stands in for it, so nothing CUDA-sized is needed on a CPU machine. On a GPU
//! machine, point `LIBTORCH` at that machine's full LibTorch instead.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The LibTorch version tch 0.24 is built for.
pub const VERSION: &str = "2.11.0";
const WHEELS: [&str; 3] = [
    "torch==2.11.0",
    "nvidia-cuda-runtime==13.0.96.*",
    "nvidia-cuda-cupti==13.0.85.*",
];
/// What to take out of the wheels: (archive prefix, destination under .libtorch).
const TAKE: [(&str, &str); 6] = [
    ("torch/lib/libtorch_cpu.so", "lib"),
    ("torch/lib/libc10.so", "lib"),
    ("torch/lib/libgomp", "lib"),
    ("torch/include/", "include"),
    ("nvidia/cu13/lib/libcudart.so.13", "lib"),
    ("nvidia/cu13/lib/libcupti.so.13", "lib"),
];

#[derive(clap::Args)]
pub struct Args {
    /// Unpack again even if `.libtorch` looks complete.
    #[arg(long)]
    force: bool,
}

/// The repository's `.libtorch` folder.
pub fn dir(root: &Path) -> PathBuf {
    root.join(".libtorch")
}

/// Makes sure `.libtorch` holds the slim LibTorch; returns its path.
pub fn ensure(root: &Path, force: bool) -> Result<PathBuf> {
    let dir = dir(root);
    let stamp = dir.join("build-version");
    if !force
        && std::fs::read_to_string(&stamp).is_ok_and(|v| v.trim() == VERSION)
        && dir.join("lib/libtorch_cpu.so").exists()
    {
        return Ok(dir);
    }
    let partial = root.join(".libtorch.partial");
    let _ = std::fs::remove_dir_all(&partial);
    let wheels = partial.join("wheels");
    std::fs::create_dir_all(&wheels)?;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    eprintln!("downloading {} from PyPI", WHEELS.join(", "));
    let st = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "-q",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
        ])
        .arg(&wheels)
        .args(WHEELS)
        .status()
        .context("cannot run pip")?;
    if !st.success() {
        bail!("pip could not download the LibTorch wheels");
    }
    // Unzip with Python's zipfile: nothing beyond Python is needed on the machine.
    let script = r#"
import sys, zipfile, os, glob, shutil
wheels, out, take = sys.argv[1], sys.argv[2], [t.split('=', 1) for t in sys.argv[3:]]
for wheel in glob.glob(os.path.join(wheels, '*.whl')):
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            for prefix, dest in take:
                if name.startswith(prefix) and not name.endswith('/'):
                    rel = name[len(prefix):] if prefix.endswith('/') else os.path.basename(name)
                    target = os.path.join(out, dest, rel)
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    with z.open(name) as src, open(target, 'wb') as dst:
                        shutil.copyfileobj(src, dst)
                    os.chmod(target, 0o755)
"#;
    let take: Vec<String> = TAKE.iter().map(|(p, d)| format!("{p}={d}")).collect();
    let st = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(&wheels)
        .arg(&partial)
        .args(&take)
        .status()?;
    if !st.success() {
        bail!("could not unpack the LibTorch wheels");
    }
    std::fs::remove_dir_all(&wheels)?;
    // The empty stand-in for the CUDA umbrella library (see the module docs).
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let empty = partial.join("empty.c");
    std::fs::write(
        &empty,
        "/* stands in for libtorch.so, which only links libtorch_cuda */\n",
    )?;
    let st = Command::new(&cc)
        .args(["-shared", "-o"])
        .arg(partial.join("lib/libtorch.so"))
        .arg(&empty)
        .status()
        .context("cannot run a C compiler")?;
    if !st.success() {
        bail!("could not build the libtorch.so stand-in");
    }
    std::fs::remove_file(empty)?;
    std::fs::write(partial.join("build-version"), VERSION)?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&partial, &dir)?;
    eprintln!("slim LibTorch {VERSION} (CPU) in {}", dir.display());
    Ok(dir)
}

pub fn run(args: Args) -> Result<()> {
    ensure(&crate::root(), args.force).map(|_| ())
}
