//! What users run to make and judge models: export weights as ONNX, score models, train,
//! and the speed, latency and upper-band figures the docs quote.

pub mod bench;
pub mod bench_process;
pub mod bench_stream;
pub mod eval;
pub mod export;
pub mod peers;
pub mod train;
pub mod upper_band;

/// Builds the release `wavecrn` command line and returns its path: the tools that measure
/// what a user runs (`bench`'s whole-process row, `upper-band`'s file path) call it as a user
/// does, so xtask does not link the CLI crate.
pub fn wavecrn_binary() -> anyhow::Result<std::path::PathBuf> {
    let root = crate::root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = std::process::Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--quiet", "--release", "-p", "wavecrn-cli"])
        .status()?;
    anyhow::ensure!(st.success(), "cannot build wavecrn");
    Ok(root.join("target/release/wavecrn"))
}
