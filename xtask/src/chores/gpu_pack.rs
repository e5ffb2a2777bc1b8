//! `cargo xtask gpu-pack`: everything `gpu-check` needs on a lent GPU machine, in one folder
//! that travels with the working tree.
//!
//! The device tool sends the tracked files and the carried paths, 64 MiB in all, to a machine
//! with no network and no Rust. So the pack holds this very binary (stripped, xz), the paper
//! reference case without its intermediate activations (xz), the wheels of the PyTorch + sru
//! baseline, and `run.sh`, which unpacks them and runs the check from the repository root:
//! `bash gpu-pack/run.sh`, with `carry: ["gpu-pack"]`. The binary reads the speed model from
//! `models/`, which travels anyway, instead of carrying a second copy.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

use crate::chores::test::status;

#[derive(clap::Args)]
pub struct Args {
    /// The folder to write (replaced); keep it git-ignored and name it in `carry`.
    #[arg(long, default_value = "gpu-pack")]
    out: PathBuf,
    /// The paper-configuration reference case.
    #[arg(long, default_value = "../shared/reference/paper_bidir.safetensors")]
    paper_case: PathBuf,
    /// Leave out the PyTorch + sru baseline (its wheels come from PyPI).
    #[arg(long)]
    no_baseline: bool,
}

/// What the device tool carries: the working tree and the carried paths together.
const CARRY_LIMIT: u64 = 64 << 20;

/// The baseline's Python packages beyond the PyTorch the GPU machine has.
const BASELINE_WHEELS: [&str; 3] = ["sru==2.3.5", "ninja", "safetensors==0.8.0"];

const RUN_SH: &str = r#"#!/usr/bin/env bash
# Written by `cargo xtask gpu-pack`. On a lent GPU machine, from the repository root:
#   bash gpu-pack/run.sh          (device tool: carry ["gpu-pack"])
# Unpacks the xtask binary and the paper reference case, installs the baseline's wheels into a
# private folder, and runs `xtask gpu-check` (with this script's arguments: `--device cpu
# --batch 2` checks the pack without a GPU); the report also goes to $OUT/gpu-check.txt.
set -euo pipefail
pack=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python=${PYTHON:-python3}
unxz() {
  if command -v xz >/dev/null; then xz -dc "$1"; else
    "$python" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"
  fi
}
unxz "$pack/xtask.xz" > "$work/xtask"
chmod +x "$work/xtask"
unxz "$pack/paper_bidir.safetensors.xz" > "$work/paper_bidir.safetensors"
baseline=()
if [ -d "$pack/wheels" ]; then
  "$python" -m pip install -q --no-index --no-deps --target "$work/py" "$pack"/wheels/*.whl
  export PYTHONPATH="$work/py${PYTHONPATH:+:$PYTHONPATH}" PATH="$work/py/bin:$PATH"
  baseline=(--baseline "$python")
fi
report=${OUT:-$work}/gpu-check.txt
{
  ldd --version | sed -n 1p
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  fi
} 2>&1 | tee "$report"
"$work/xtask" gpu-check --cases tests/fixtures/reference/small_bidir.safetensors \
  tests/fixtures/reference/small_causal.safetensors "$work/paper_bidir.safetensors" \
  "${baseline[@]}" "$@" 2>&1 | tee -a "$report"
"#;

fn xz(from: &Path, to: &Path) -> Result<()> {
    status(
        Command::new("xz")
            .args(["-9", "-T0", "-c"])
            .arg(from)
            .stdout(File::create(to)?),
    )
    .context("compressing with xz (Debian package xz-utils)")
}

/// The reference case without `act.*`: the intermediate activations only the layer-by-layer
/// tests read, a quarter of the file.
fn trimmed_case(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)?;
    let st = safetensors::SafeTensors::deserialize(&bytes)?;
    let kept = st
        .tensors()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("act."));
    Ok(safetensors::serialize(kept, meta.metadata().clone())?)
}

/// Bytes of every file under `dir`.
fn folder_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            folder_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// Bytes of the working tree as the device tool sends it: tracked and untracked,
/// not-ignored files.
fn tree_size(root: &Path) -> Result<u64> {
    let out = Command::new("git")
        .current_dir(root)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .output()
        .context("cannot run git")?;
    ensure!(out.status.success(), "git ls-files failed");
    Ok(out
        .stdout
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .filter_map(|p| std::fs::metadata(root.join(String::from_utf8_lossy(p).as_ref())).ok())
        .map(|m| m.len())
        .sum())
}

pub fn run(args: Args) -> Result<()> {
    let root = crate::root();
    let out = root.join(&args.out);
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;

    // This binary, without its symbol table.
    let exe = std::env::current_exe()?;
    let stripped = out.join("xtask");
    status(Command::new("strip").arg("-o").arg(&stripped).arg(&exe))
        .context("stripping with strip (Debian package binutils)")?;
    xz(&stripped, &out.join("xtask.xz"))?;
    std::fs::remove_file(&stripped)?;

    let case = out.join("paper_bidir.safetensors");
    std::fs::write(&case, trimmed_case(&root.join(&args.paper_case))?)?;
    xz(&case, &out.join("paper_bidir.safetensors.xz"))?;
    std::fs::remove_file(&case)?;

    if !args.no_baseline {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        status(
            Command::new(python)
                .args(["-m", "pip", "download", "-q", "--no-cache-dir", "--no-deps"])
                .args(["--only-binary=:all:", "-d"])
                .arg(out.join("wheels"))
                .args(BASELINE_WHEELS),
        )
        .with_context(|| format!("downloading {BASELINE_WHEELS:?} from PyPI"))?;
    }
    std::fs::write(out.join("run.sh"), RUN_SH)?;

    let pack = folder_size(&out)?;
    let tree = tree_size(&root)?;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "{}: {:.1} MiB; with the working tree {:.1} MiB of the device tool's {:.0} MiB",
        out.display(),
        mib(pack),
        mib(pack + tree),
        mib(CARRY_LIMIT)
    );
    if pack + tree > CARRY_LIMIT {
        bail!("too large to carry to the GPU machine");
    }
    println!("on the GPU machine: bash {}/run.sh", args.out.display());
    Ok(())
}
