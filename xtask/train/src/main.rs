//! `wavecrn-train`: the trainer behind `cargo xtask train`.

use clap::{CommandFactory, FromArgMatches, Parser};

#[derive(Parser)]
#[command(name = "wavecrn-train", about = "Train a WaveCRN denoiser on LibTorch")]
enum Cli {
    /// Train (or resume) a run.
    Train(Box<wavecrn_train::args::RunArgs>),
    /// Redraw a run's training curve (`RUN_DIR/curve.png`) from its metrics log.
    Plot { run_dir: std::path::PathBuf },
    /// A short run written out in full (weights, batches, losses) for another trainer to
    /// replay (see `tests/python/replay_training.py`).
    Trace(wavecrn_train::trace::TraceArgs),
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
    // SAFETY: plain allocator tuning calls, before any other thread exists. A file-size limit
    // (SIGXFSZ) then fails the write like a full disk, with an error, instead of killing us.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// The command line, with the settings of a `train --config FILE` that it does not give
/// itself appended.
fn parse() -> anyhow::Result<Cli> {
    let mut matches = Cli::command().get_matches();
    if let Some(("train", given)) = matches.subcommand() {
        if let Some(path) = given.get_one::<std::path::PathBuf>("config") {
            let command = Cli::command();
            let train = command
                .find_subcommand("train")
                .expect("the train command exists");
            let extra = wavecrn_train::args::config_arguments(path, train, given)?;
            matches = Cli::command().try_get_matches_from(std::env::args_os().chain(extra))?;
        }
    }
    Ok(Cli::from_arg_matches(&matches)?)
}

fn main() {
    tune_process();
    let cli = match parse() {
        Ok(cli) => cli,
        Err(e) => match e.downcast::<clap::Error>() {
            Ok(clap_error) => clap_error.format(&mut Cli::command()).exit(),
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::exit(2);
            }
        },
    };
    let result = match cli {
        Cli::Train(args) => wavecrn_train::run::train(*args),
        Cli::Plot { run_dir } => wavecrn_train::plot::render(&run_dir),
        Cli::Trace(args) => wavecrn_train::trace::trace(args),
        Cli::Bench { steps } => wavecrn_train::bench::bench(steps),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
