//! A run's settings: the command line, a TOML config file with the same keys, or both (the
//! command line wins). Every run writes its resolved settings to `runs/<name>/config.toml`,
//! which `--config` takes back to repeat it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::parser::ValueSource;
use serde::Serialize;
use wavecrn_engine::ModelConfig;

use crate::data::Task;

/// Where training runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    Cpu,
    Cuda,
    /// CUDA when LibTorch sees a GPU, else the CPU.
    Auto,
}

/// Everything a run is made of. Paths are relative to the working directory, in a config
/// file as on the command line.
#[derive(Clone, Debug, clap::Args, Serialize)]
pub struct RunArgs {
    /// A TOML file of settings, keyed like the options (`lr = 3e-4`, `speech = ["dir"]`).
    /// Options given on the command line override it.
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// What the model learns: denoising, or restoring speech from its sign (2-bit
    /// compression; needs only clean speech).
    #[arg(long, value_enum, default_value_t = Task::Denoise)]
    pub task: Task,
    /// Clean speech folders, mixed with `--noise` on the fly.
    #[arg(long, num_args = 1..)]
    pub speech: Vec<PathBuf>,
    /// Noise folders.
    #[arg(long, num_args = 1..)]
    pub noise: Vec<PathBuf>,
    /// Fixed pairs instead of mixtures: NOISY_DIR CLEAN_DIR, files matched by name.
    #[arg(long, num_args = 2, value_names = ["NOISY_DIR", "CLEAN_DIR"], conflicts_with_all = ["speech", "noise"])]
    pub pairs: Vec<PathBuf>,
    /// The run's folder.
    #[arg(long, required = false, required_unless_present = "config")]
    pub run_dir: PathBuf,
    /// Continue from the run's checkpoint.
    #[arg(long)]
    #[serde(skip)]
    pub resume: bool,
    /// Steps in all; the learning-rate schedule ends here.
    #[arg(long, default_value_t = 10_000)]
    pub steps: u64,
    /// Stop early at this step, with a checkpoint, to share the machine; `--resume` goes on.
    #[arg(long)]
    #[serde(skip)]
    pub stop_at: Option<u64>,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Seconds per example.
    #[arg(long, default_value_t = 1.0)]
    pub seconds: f64,
    /// Peak learning rate (Adam).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Learning rate at the last step: the rate falls from `--lr` to this on a half cosine.
    /// Equal to `--lr` for a constant rate.
    #[arg(long, default_value_t = 5e-5)]
    pub lr_end: f64,
    /// Steps of linear warm-up to `--lr` at the start.
    #[arg(long, default_value_t = 200)]
    pub warmup: u64,
    /// Steps over which the target fades from the noisy input itself to the clean speech.
    /// The network first learns to pass its input through (a mask of one), so denoising
    /// starts from the noisy input's scores instead of from silence (0: the paper's recipe,
    /// clean targets from the first step). Denoising only.
    #[arg(long, default_value_t = 0)]
    pub identity_steps: u64,
    /// Weight of a multi-resolution STFT loss term added to the paper's waveform L1
    /// (0: L1 alone, the paper's recipe).
    #[arg(long, default_value_t = 0.0)]
    pub stft_loss: f64,
    /// Weight of a compressed-spectrum loss term (squared error of magnitudes^0.3, 0.7, and
    /// of the complex spectra with those magnitudes, 0.3, at 16, 32 and 64 ms frames) added
    /// to the waveform L1 (0: none).
    #[arg(long, default_value_t = 0.0)]
    pub compressed_loss: f64,
    /// Weight of a negative SI-SDR (dB) loss term added to the waveform L1 (0: none).
    #[arg(long, default_value_t = 0.0)]
    pub si_sdr_loss: f64,
    /// Dropout on each SRU layer's input (the reference recipe's rnn_dropout).
    #[arg(long, default_value_t = 0.1)]
    pub rnn_dropout: f64,
    /// Seed of the initialisation (and of nothing else).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Seed of the run's examples and dropout masks. A new run without it takes a fresh one,
    /// so two runs from the same `--init` never replay each other's batches; it is written to
    /// `config.toml` (to repeat the run) and to the checkpoint (`--resume` goes on with it).
    #[arg(long)]
    pub data_seed: Option<u64>,
    /// Lowest and highest mixing SNR, dB.
    #[arg(long, num_args = 2, allow_negative_numbers = true, default_values_t = [0.0, 15.0])]
    pub snr: Vec<f64>,
    /// Share of training inputs hard-clipped (1-12 dB of their peak cut), as overdriven
    /// recordings are; the targets stay whole.
    #[arg(long, default_value_t = 0.0)]
    pub clip: f64,
    /// Share of denoising examples whose noise is babble: 1-6 other training speakers at once
    /// (`--talkers`), never the target's own speaker. The rest use `--noise` recordings.
    #[arg(long, default_value_t = 0.0)]
    pub babble: f64,
    /// Share of denoising examples with a random equaliser on the speech (target too) and
    /// another on the noise: microphones and channels.
    #[arg(long, default_value_t = 0.0)]
    pub eq: f64,
    /// Share of denoising examples whose speech is in a synthetic room (RT60 0.2-0.8 s); the
    /// target keeps the direct sound and the first 50 ms of reflections.
    #[arg(long, default_value_t = 0.0)]
    pub reverb: f64,
    /// Share of denoising examples with a second noise recording under the first.
    #[arg(long, default_value_t = 0.0)]
    pub second_noise: f64,
    /// Share of the examples whose noise would be a recording that get speech-shaped noise
    /// made from another talker instead (half of it modulated by the talker's envelope).
    #[arg(long, default_value_t = 0.0)]
    pub speech_shaped: f64,
    /// Share of denoising examples whose speech is played 0.9-1.1 times as fast (tempo and
    /// pitch, target too): more voices than the training speakers'.
    #[arg(long, default_value_t = 0.0)]
    pub speed: f64,
    /// Fewest and most talkers in a babble.
    #[arg(long, num_args = 2, default_values_t = [1, 6])]
    pub talkers: Vec<usize>,
    /// Start from these weights instead of the initialisation: a checkpoint or
    /// `best.safetensors` of an earlier run, or an exported model (`models/*.onnx`), of the
    /// same configuration, or of the same one with fewer layers (the added top layers start
    /// as near-identities) or a whole fraction of the channels (each unit copied, Net2Net
    /// widening). The step count, the optimiser and the schedule start afresh.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Stop (with a validation and a checkpoint) once the process has used this many minutes
    /// of CPU time, all threads counted: equal budgets for runs that share a machine.
    #[arg(long)]
    #[serde(skip)]
    pub cpu_minutes: Option<f64>,
    /// LibTorch (and recurrence kernel) threads; 0 keeps LibTorch's default (every core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Validate (and checkpoint) every N steps.
    #[arg(long, default_value_t = 500)]
    pub valid_every: u64,
    /// Validation pairs used: the first N of the fixed validation set (100 pairs, all of
    /// them by default, as `cargo xtask eval` scores).
    #[arg(long, default_value_t = 100)]
    pub valid_files: usize,
    /// Validation speech and noise folders.
    #[arg(long, default_value = "../shared/data/speech/valid")]
    pub valid_speech: PathBuf,
    #[arg(long, default_value = "../shared/data/noise/valid")]
    pub valid_noise: PathBuf,
    /// Conv channels (and hidden units per direction).
    #[arg(long, default_value_t = 256)]
    pub channels: usize,
    #[arg(long, default_value_t = 6)]
    pub layers: usize,
    /// One direction: the low-latency model.
    #[arg(long)]
    pub causal: bool,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
}

impl RunArgs {
    /// The network these settings train.
    pub fn model(&self) -> ModelConfig {
        let base = if self.causal {
            ModelConfig::causal()
        } else {
            ModelConfig::default()
        };
        ModelConfig {
            channels: self.channels,
            layers: self.layers,
            ..base
        }
    }

    /// Settings that clap cannot check on its own.
    pub fn check(&self) -> Result<()> {
        if self.snr.len() != 2 || self.snr[0] > self.snr[1] {
            bail!("--snr takes a low and a high value");
        }
        if self.stft_loss.is_nan() || self.stft_loss < 0.0 {
            bail!("--stft-loss is a weight, 0 or more");
        }
        if self.compressed_loss.is_nan() || self.compressed_loss < 0.0 {
            bail!("--compressed-loss is a weight, 0 or more");
        }
        if self.si_sdr_loss.is_nan() || self.si_sdr_loss < 0.0 {
            bail!("--si-sdr-loss is a weight, 0 or more");
        }
        if !(0.0..=1.0).contains(&self.clip) {
            bail!("--clip is a share, from 0 to 1");
        }
        for (name, share) in [
            ("--babble", self.babble),
            ("--eq", self.eq),
            ("--reverb", self.reverb),
            ("--second-noise", self.second_noise),
            ("--speech-shaped", self.speech_shaped),
            ("--speed", self.speed),
        ] {
            if !(0.0..=1.0).contains(&share) {
                bail!("{name} is a share, from 0 to 1");
            }
        }
        if self.talkers.len() != 2 || self.talkers[0] == 0 || self.talkers[0] > self.talkers[1] {
            bail!("--talkers takes a lowest and a highest count, from 1");
        }
        if self.lr <= 0.0 || self.lr_end <= 0.0 || self.lr_end > self.lr {
            bail!("learning rates must be positive, with --lr-end at most --lr");
        }
        if self.batch == 0 || self.seconds <= 0.0 || self.valid_every == 0 {
            bail!("--batch, --seconds and --valid-every must be positive");
        }
        if self.pairs.is_empty() {
            if self.speech.is_empty() {
                bail!(
                    "no training data: give --speech (and --noise), or --pairs NOISY_DIR CLEAN_DIR"
                );
            }
            if self.noise.is_empty() && self.task == Task::Denoise {
                bail!("denoising mixes speech with noise: give --noise too");
            }
        }
        Ok(())
    }

    /// The resolved settings as a config file.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).expect("settings serialise");
        format!("# Written by wavecrn-train; repeat with `cargo xtask train --config THIS_FILE`.\n{body}")
    }
}

/// Command-line arguments for the `config` file's settings that `given` (the parsed command
/// line of the train command) did not set itself, to append to the command line.
pub fn config_arguments(
    path: &Path,
    command: &clap::Command,
    given: &clap::ArgMatches,
) -> Result<Vec<OsString>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    let known: Vec<String> = command
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .filter(|l| l != "config" && l != "help")
        .collect();
    let mut out = vec![];
    for (key, value) in table {
        let long = key.replace('_', "-");
        if !known.contains(&long) {
            bail!(
                "{}: unknown setting `{key}` (known: {})",
                path.display(),
                known.join(", ")
            );
        }
        let id = long.replace('-', "_");
        if given.value_source(&id) == Some(ValueSource::CommandLine) {
            continue;
        }
        let values: Vec<String> = match &value {
            toml::Value::Array(items) => items.iter().map(scalar).collect::<Result<_>>()?,
            toml::Value::Boolean(false) => continue,
            toml::Value::Boolean(true) => vec![],
            other => vec![scalar(other)?],
        };
        if values.is_empty() && matches!(value, toml::Value::Array(_)) {
            continue;
        }
        out.push(format!("--{long}").into());
        out.extend(values.into_iter().map(OsString::from));
    }
    Ok(out)
}

fn scalar(v: &toml::Value) -> Result<String> {
    Ok(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => bail!("a setting cannot be {other}"),
    })
}

/// Run settings as the command line would give them, for tests: a minimal `train` line plus
/// `extra`.
#[cfg(test)]
pub(crate) fn test_args(extra: &[&str]) -> RunArgs {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }
    let base = ["train", "--speech", "s", "--noise", "n", "--run-dir", "r"];
    <Cli as clap::Parser>::parse_from(base.iter().chain(extra)).run
}
