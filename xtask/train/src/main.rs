//! `wavecrn-train`: the trainer behind `cargo xtask train`.

use clap::Parser;

#[derive(Parser)]
#[command(name = "wavecrn-train", about = "Train a WaveCRN denoiser on LibTorch")]
struct Cli {
    #[command(flatten)]
    run: wavecrn_train::run::RunArgs,
}

fn main() {
    if let Err(e) = wavecrn_train::run::train(Cli::parse().run) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
