//! `cargo xtask train`: sets up LibTorch if needed, then runs the trainer (`wavecrn-train`),
//! which is its own crate so that nothing else in the workspace needs LibTorch.

use std::process::Command;

use anyhow::{bail, Result};

#[derive(clap::Args)]
pub struct Args {
    /// Arguments for the trainer (see `cargo xtask train -- --help`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    trainer(&["train"], &args.args)
}

/// `cargo xtask bench-train`: the trainer's speed benchmark.
pub fn bench(args: Args) -> Result<()> {
    trainer(&["bench"], &args.args)
}

fn trainer(command: &[&str], args: &[String]) -> Result<()> {
    let root = crate::root();
    crate::chores::libtorch::ensure(&root, false)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .current_dir(&root)
        .args(["run", "--quiet", "--release", "-p", "wavecrn-train", "--"])
        .args(command)
        .args(args)
        .status()?;
    if !st.success() {
        bail!("the trainer stopped ({st})");
    }
    Ok(())
}
