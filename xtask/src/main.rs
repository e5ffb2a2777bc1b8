//! Project tasks: `cargo xtask <command>`. Run `cargo xtask --help` for the list.

mod chores;
mod heap;
mod tools;

use clap::{Parser, Subcommand};

use chores::{bundle, gpu_check, gpu_pack, libtorch, test};
use tools::{bench, bench_stream, eval, export, train, upper_band};

#[global_allocator]
static HEAP: heap::Counting = heap::Counting;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "wavecrn project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    // Tools: making and judging models.
    /// Write the ONNX graph for a set of weights (training checkpoint or reference file).
    Export(export::Args),
    /// Score models (or enhanced files) with PESQ, CSIG, CBAK, COVL, SSNR, STOI and more.
    Eval(eval::Args),
    /// Train a model (LibTorch): `cargo xtask train -- --speech DIR --noise DIR --run-dir runs/NAME`.
    Train(train::Args),
    /// Training speed: audio-seconds trained per second, paper configuration, batch 8 x 1 s.
    BenchTrain(train::Args),
    /// Print speed figures: real-time factor of the engine and of the recurrence kernels.
    Bench(bench::Args),
    /// Real-time path figures per mode: latency, worker real-time factor, audio-thread time
    /// per block, and streamed-vs-whole-file SNR on real speech.
    BenchStream(bench_stream::Args),
    /// The band above 8 kHz at 48 kHz on the validation set: per-band levels of the input, the
    /// clean speech, the command line's output and the Quality stream's, in speech and pauses.
    UpperBand(upper_band::Args),

    // Chores: building, packing and testing the project.
    /// Build installable plugin bundles (CLAP and VST3) into target/bundled/:
    /// `cargo xtask bundle wavecrn --release`; with `--features standalone`, the standalone
    /// app beside them.
    Bundle {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up what the tests need (a Python venv with onnx and onnxruntime) and run them all.
    Test(test::Args),
    /// Unpack a slim CPU LibTorch into .libtorch (from the PyPI torch wheel) for training.
    Libtorch(libtorch::Args),
    /// On an NVIDIA GPU: check the CUDA path against the reference outputs and measure its
    /// real-time factor on a batch of 64 ten-second files.
    GpuCheck(gpu_check::Args),
    /// Pack what `gpu-check` needs on a lent GPU machine into gpu-pack/ (the binary, the paper
    /// reference case, the sru wheels, run.sh), within the device tool's 64 MiB.
    GpuPack(gpu_pack::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Export(args) => export::run(args),
        Command::Bench(args) => bench::run(args),
        Command::BenchStream(args) => bench_stream::run(args),
        Command::Test(args) => test::run(args),
        Command::Bundle { args } => bundle::run(args),
        Command::Eval(args) => {
            // Denoises files as the CLI does, with the same heap set-up (not for the stream
            // benchmarks: the plugin lives with its host's heap as it is).
            wavecrn_engine::heap::keep_freed_memory();
            eval::run(args)
        }
        Command::GpuCheck(args) => gpu_check::run(args),
        Command::GpuPack(args) => gpu_pack::run(args),
        Command::Libtorch(args) => libtorch::run(args),
        Command::Train(args) => train::run(args),
        Command::UpperBand(args) => upper_band::run(args),
        Command::BenchTrain(args) => train::bench(args),
    }
}

/// The repository root: where this binary was built, or, for a copy carried to another
/// machine (`gpu-pack`), the current folder.
pub fn root() -> std::path::PathBuf {
    let built = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent");
    if built.join("Cargo.toml").exists() {
        built.to_path_buf()
    } else {
        std::path::PathBuf::from(".")
    }
}

/// The Quality and Low latency models the plugin embeds, read from the tree (xtask carries
/// no models of its own), as streams use them.
pub fn tree_stream_models() -> anyhow::Result<wavecrn_engine::stream::StreamModels> {
    use anyhow::Context;
    let read = |name: &str| {
        let path = root().join("models").join(name);
        std::fs::read(&path).with_context(|| path.display().to_string())
    };
    Ok(wavecrn_engine::stream::StreamModels::from_bytes(
        &read("wavecrn-denoise.onnx")?,
        &read("wavecrn-denoise-causal.onnx")?,
    )?)
}
