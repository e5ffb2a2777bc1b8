//! `wavecrn`: denoise speech recordings (and restore 2-bit speech) from the command line.

use wavecrn_audio::file as audio;
use wavecrn_cli::pipeline;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use wavecrn_engine::shipped::Task;
use wavecrn_engine::{Device, DeviceChoice, Model};

#[derive(Parser)]
#[command(name = "wavecrn", version, about = "WaveCRN speech denoiser")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Denoise WAV or FLAC files (any sample rate, any channel count, any length).
    Denoise(DenoiseArgs),
    /// Restore speech from its 2-bit version, the sign of each sample at 16 kHz (the paper's
    /// second task); `compress-2bit` makes such a file.
    Restore(RestoreArgs),
    /// Write the 2-bit version of a recording (16 kHz, the sign of each sample): what
    /// `restore` takes.
    #[command(name = "compress-2bit")]
    Compress2Bit(CompressArgs),
    /// List the models built into this binary, with what their cards say of them.
    Models,
}

/// Which files go in, and where the results go.
#[derive(clap::Args)]
struct Files {
    /// Input files.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output file (with one input only).
    #[arg(short, long, conflicts_with = "out_dir")]
    output: Option<PathBuf>,
    /// Folder for the outputs, which keep their input's file names.
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Overwrite outputs that already exist.
    #[arg(long)]
    force: bool,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

/// Where and how widely the model runs.
#[derive(clap::Args)]
struct Compute {
    /// Where the model runs: `auto` takes an NVIDIA GPU when one is usable (and says so when
    /// it falls back to the CPU), `cuda` insists on one.
    #[arg(long, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// Files run together, as one batch (files of similar length are grouped). Default:
    /// 16 on a GPU, 1 on the CPU, where batching brings no speed.
    #[arg(long)]
    batch: Option<usize>,
    /// Pieces of audio (30 s windows) run at once, one thread each. Default: every core on the
    /// CPU, 1 on a GPU. The output is the same whatever the number.
    #[arg(long)]
    jobs: Option<usize>,
}

#[derive(clap::Args)]
struct DenoiseArgs {
    #[command(flatten)]
    files: Files,
    /// A built-in model by name (`quality`, the default, or `low-latency`; `wavecrn models`
    /// lists them), or an ONNX file written by `cargo xtask export`.
    #[arg(long, default_value = "quality")]
    model: String,
    /// How much of the denoised signal replaces the input, in percent (as the plugin's
    /// Reduction): 0 gives the input back.
    #[arg(long, default_value_t = 100.0, value_parser = percent)]
    reduction: f32,
    /// Remove at most this many dB of what the model takes away (an attenuation limit), so a
    /// little of the room stays: 12 or 20 are usual. Default: no limit.
    #[arg(long, value_name = "DB", value_parser = decibels)]
    noise_floor: Option<f32>,
    #[command(flatten)]
    compute: Compute,
}

#[derive(clap::Args)]
struct RestoreArgs {
    /// Inputs: 16 kHz files whose samples carry only their sign (any level: the sign of
    /// each sample is what the model is given).
    #[command(flatten)]
    files: Files,
    /// The built-in restore model (`restore`, the default), or an ONNX file of one.
    #[arg(long, default_value = "restore")]
    model: String,
    #[command(flatten)]
    compute: Compute,
}

#[derive(clap::Args)]
struct CompressArgs {
    #[command(flatten)]
    files: Files,
}

fn main() -> ExitCode {
    wavecrn_engine::heap::keep_freed_memory();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Denoise(args) => {
            let share =
                wavecrn_engine::reduction::effective(args.reduction / 100.0, args.noise_floor);
            let task = pipeline::Task::Denoise { share };
            run_model(&args.files, &args.model, Task::Denoise, task, &args.compute)
        }
        Command::Restore(args) => run_model(
            &args.files,
            &args.model,
            Task::Restore,
            pipeline::Task::Restore,
            &args.compute,
        ),
        Command::Compress2Bit(args) => compress(&args.files),
        Command::Models => {
            list_models();
            Ok(())
        }
    }
}

fn list_models() {
    for m in wavecrn_engine::shipped::MODELS {
        let parameters = wavecrn_engine::model_file::weights_from_onnx(m.bytes)
            .map(|w| w.config.parameter_count().to_string())
            .unwrap_or_else(|e| format!("unreadable ({e})"));
        println!(
            "{} ({}, {} parameters, {:.1} MB)",
            m.name,
            m.file,
            parameters,
            m.bytes.len() as f64 / 1e6
        );
        println!("  {}", m.role);
        println!("  {}", m.headline());
        println!();
    }
    println!("`--model NAME` picks one; `--model FILE.onnx` runs any exported model.");
}

/// The model `--model` names: a built-in one made for `task`, or a file (a path that
/// exists, or anything ending in .onnx).
fn load_model(choice: &str, task: Task, options: &wavecrn_engine::LoadOptions) -> Result<Model> {
    if let Some(m) = wavecrn_engine::shipped::by_name(choice) {
        if m.task != task {
            let command = match m.task {
                Task::Denoise => "denoise",
                Task::Restore => "restore",
            };
            bail!("--model {choice}: that model is for `wavecrn {command}`");
        }
        return Ok(Model::from_bytes(m.bytes, options)?);
    }
    let path = std::path::Path::new(choice);
    if !path.exists() && !choice.ends_with(".onnx") {
        let names: Vec<&str> = wavecrn_engine::shipped::MODELS
            .iter()
            .map(|m| m.name)
            .collect();
        bail!(
            "--model {choice}: no built-in model of that name ({}) and no such file",
            names.join(", ")
        );
    }
    Ok(Model::load_with(path, options)?)
}

/// Every input's output path, refusing clashes before anything is touched: `-o`, a file in
/// `--out-dir`, or the input's name with `suffix` before its extension.
fn plan_outputs(files: &Files, suffix: &str) -> Result<Vec<(PathBuf, PathBuf)>> {
    if files.output.is_some() && files.inputs.len() > 1 {
        bail!(
            "-o names one output file, but {} inputs were given: use --out-dir",
            files.inputs.len()
        );
    }
    if let Some(o) = files.output.as_ref().filter(|o| audio::named_lossy(o)) {
        bail!(
            "{}: outputs are lossless, WAV or FLAC: name it .wav or .flac",
            o.display()
        );
    }
    let mut jobs: Vec<(PathBuf, PathBuf)> = vec![];
    for input in &files.inputs {
        // A lossy input's output is a WAV file (see `audio::output_spec`), and named so.
        let ext = if audio::named_lossy(input) {
            ".wav".to_string()
        } else {
            input
                .extension()
                .map(|e| format!(".{}", e.to_string_lossy()))
                .unwrap_or_default()
        };
        let stem = input
            .file_stem()
            .context("input has no file name")?
            .to_string_lossy();
        let output = match (&files.output, &files.out_dir) {
            (Some(o), _) => o.clone(),
            (None, Some(dir)) => dir.join(format!("{stem}{ext}")),
            (None, None) => input.with_file_name(format!("{stem}.{suffix}{ext}")),
        };
        if let Some((other, _)) = jobs.iter().find(|(_, o)| *o == output) {
            bail!(
                "{} and {} would both be written to {}",
                other.display(),
                input.display(),
                output.display()
            );
        }
        if same_file(input, &output) {
            bail!("{} would overwrite its own input", output.display());
        }
        if output.exists() && !files.force {
            bail!("{} exists: pass --force to overwrite it", output.display());
        }
        jobs.push((input.clone(), output));
    }
    if let Some(dir) = &files.out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(jobs)
}

/// Reports one file's result; returns whether it failed.
fn report(files: &Files, input: &Path, output: &Path, result: Result<String>) -> bool {
    match result {
        Ok(summary) => {
            if !files.quiet {
                eprintln!("{} -> {} ({summary})", input.display(), output.display());
            }
            false
        }
        Err(e) => {
            // Name the file once: most errors name it already.
            let message = format!("{e:#}");
            let name = input.display().to_string();
            if message.contains(&name) {
                eprintln!("error: {message}");
            } else {
                eprintln!("error: {name}: {message}");
            }
            true
        }
    }
}

/// `denoise` and `restore`: every input through the model, in batches of similar length.
fn run_model(
    files: &Files,
    model: &str,
    kind: Task,
    task: pipeline::Task,
    compute: &Compute,
) -> Result<()> {
    let suffix = match kind {
        Task::Denoise => "denoised",
        Task::Restore => "restored",
    };
    let jobs = plan_outputs(files, suffix)?;
    let options = pipeline::load_options(compute.device)?;
    let device = options.device;
    let model = load_model(model, kind, &options)?;
    let batch = compute
        .batch
        .unwrap_or(if device == Device::Cuda { 16 } else { 1 })
        .max(1);
    let workers = compute
        .jobs
        .unwrap_or_else(|| match device {
            Device::Cuda => 1,
            _ => wavecrn_engine::offline::cores(),
        })
        .max(1);
    let mut failed = 0;
    for group in pipeline::group_by_length(&jobs, batch) {
        let results = pipeline::denoise_together(&model, &group, !files.quiet, workers, task);
        for ((input, output), result) in group.iter().zip(results) {
            failed += usize::from(report(files, input, output, result));
        }
    }
    if failed > 0 {
        bail!("{failed} of {} files failed", jobs.len());
    }
    Ok(())
}

/// `compress-2bit`: each input's sign at the restore model's rate.
fn compress(files: &Files) -> Result<()> {
    let jobs = plan_outputs(files, "2bit")?;
    let restore = wavecrn_engine::shipped::by_name("restore").expect("the restore model ships");
    let rate = wavecrn_engine::model_file::weights_from_onnx(restore.bytes)?
        .config
        .sample_rate;
    let mut failed = 0;
    for (input, output) in &jobs {
        let result = pipeline::compress_2bit(input, output, rate);
        failed += usize::from(report(files, input, output, result));
    }
    if failed > 0 {
        bail!("{failed} of {} files failed", jobs.len());
    }
    Ok(())
}

fn percent(s: &str) -> std::result::Result<f32, String> {
    match s.trim_end_matches('%').parse::<f32>() {
        Ok(v) if (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a percentage from 0 to 100")),
    }
}

fn decibels(s: &str) -> std::result::Result<f32, String> {
    match s.trim_end_matches("dB").trim().parse::<f32>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a number of dB, 0 or more")),
    }
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
