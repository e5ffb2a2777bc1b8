//! `wavecrn-train`: the trainer behind `cargo xtask train`.

use clap::Parser;

#[derive(Parser)]
#[command(name = "wavecrn-train", about = "Train a WaveCRN denoiser on LibTorch")]
enum Cli {
    /// Train (or resume) a run.
    Train(Box<wavecrn_train::run::RunArgs>),
    /// Training speed of the paper configuration, batch 8 x 1 s, on random audio.
    Bench {
        #[arg(long, default_value_t = 8)]
        steps: u64,
    },
}

/// Process settings that speed training up on a small CPU: OpenMP threads that sleep instead
/// of spinning (the data thread needs a core too), and large tensors kept in the heap instead
/// of fresh, kernel-zeroed pages every step. (Compare a short run with and without
/// `OMP_WAIT_POLICY=ACTIVE` set in the environment.)
fn tune_process() {
    if std::env::var_os("OMP_WAIT_POLICY").is_none() {
        // SAFETY: single-threaded here, before LibTorch (and its OpenMP) start.
        unsafe { std::env::set_var("OMP_WAIT_POLICY", "PASSIVE") };
    }
    // SAFETY: plain allocator tuning calls, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

fn main() {
    tune_process();
    let result = match Cli::parse() {
        Cli::Train(args) => wavecrn_train::run::train(*args),
        Cli::Bench { steps } => wavecrn_train::run::bench(steps),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
