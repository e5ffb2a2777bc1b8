//! Project tasks: `cargo xtask <command>`. Run `cargo xtask --help` for the list.

mod bench;
mod eval;
mod export;
mod libtorch;
mod test;
mod train;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "wavecrn project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the ONNX graph for a set of weights (training checkpoint or reference file).
    Export(export::Args),
    /// Print speed figures: real-time factor of the engine and of the recurrence kernels.
    Bench(bench::Args),
    /// Score models (or enhanced files) with PESQ, CSIG, CBAK, COVL, SSNR, STOI and more.
    Eval(eval::Args),
    /// Unpack a slim CPU LibTorch into .libtorch (from the PyPI torch wheel) for training.
    Libtorch(libtorch::Args),
    /// Train a model (LibTorch): `cargo xtask train -- --speech DIR --noise DIR --run-dir runs/NAME`.
    Train(train::Args),
    /// Training speed: audio-seconds trained per second, paper configuration, batch 8 x 1 s.
    BenchTrain(train::Args),
    /// Set up what the tests need (a Python venv with onnx and onnxruntime) and run them all.
    Test(test::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Export(args) => export::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Test(args) => test::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Libtorch(args) => libtorch::run(args),
        Command::Train(args) => train::run(args),
        Command::BenchTrain(args) => train::bench(args),
    }
}

/// The repository root.
pub fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent")
        .to_path_buf()
}
