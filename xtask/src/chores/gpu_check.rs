//! `cargo xtask gpu-check`: on a machine with an NVIDIA GPU, checks that the CUDA path gives
//! the reference outputs and measures its speed. `--device cpu` runs the same check on the
//! CPU engine, which is how the test suite exercises it without a GPU. `cargo xtask gpu-pack`
//! packs it for a lent GPU machine. With `--baseline PYTHON` (a Python with torch and sru
//! 2.3.5) it also runs the original PyTorch + sru network (`tests/python/sru_baseline.py`) on
//! the same cases and batch, and prints the ratio.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use wavecrn_engine::model_file::{to_onnx_bytes, ModelInfo};
use wavecrn_engine::{Device, DeviceChoice, LoadOptions, Model, TensorFile, Weights};

#[derive(clap::Args)]
pub struct Args {
    /// The device under test: cuda (a GPU must be usable), cpu, or auto.
    #[arg(long, default_value = "cuda")]
    device: DeviceChoice,
    /// Reference cases (safetensors with weights, `input` and `output`).
    #[arg(long, num_args = 1.., default_values = [
        "tests/fixtures/reference/small_bidir.safetensors",
        "tests/fixtures/reference/small_causal.safetensors",
        "../shared/reference/paper_bidir.safetensors",
    ])]
    cases: Vec<PathBuf>,
    /// The model timed on the batch (the shipped paper-configuration model; read from the tree
    /// rather than embedded, so that the binary stays small enough to carry).
    #[arg(long, default_value = "models/wavecrn-denoise.onnx")]
    model: PathBuf,
    /// Files in the speed batch, each `--seconds` long.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Timed runs (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// A Python with torch and sru: also measure the original PyTorch + sru network.
    #[arg(long)]
    baseline: Option<PathBuf>,
}

const TOLERANCE: f32 = 1e-4;

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn on(device: Device) -> LoadOptions {
    LoadOptions {
        device,
        ..LoadOptions::default()
    }
}

pub fn run(args: Args) -> Result<()> {
    let (device, note) = args.device.resolve()?;
    if let Some(note) = note {
        eprintln!("{note}");
    }
    let root = crate::root();
    let mut failed = 0;
    for case in &args.cases {
        let path = root.join(case);
        let file = TensorFile::read(&path).with_context(|| path.display().to_string())?;
        let onnx = to_onnx_bytes(&Weights::read(&path)?, &ModelInfo::default());
        let input = file.get("input").context("no input tensor")?;
        let batch = input.shape[0];
        let tested = Model::from_bytes(&onnx, &on(device))?;
        let cpu = Model::from_bytes(&onnx, &on(Device::Cpu))?;
        let (_, g) = tested.run_raw(&input.data, batch)?.swap_remove(0);
        let (_, c) = cpu.run_raw(&input.data, batch)?.swap_remove(0);
        let reference = &file.get("output").context("no output tensor")?.data;
        let (vs_ref, vs_cpu) = (max_diff(&g, reference), max_diff(&g, &c));
        let ok = vs_ref <= TOLERANCE && vs_cpu <= TOLERANCE;
        failed += usize::from(!ok);
        println!(
            "{}: {device} vs reference {vs_ref:.2e}, vs CPU {vs_cpu:.2e}: {}",
            case.display(),
            if ok { "ok" } else { "FAILED" }
        );
    }

    // Speed: the shipped paper-configuration model on a batch of files.
    let tested = Model::load_with(root.join(&args.model), &on(device))?;
    let rate = tested.config().sample_rate as f64;
    let len = (args.seconds * rate) as usize;
    let mut seed = 1u32;
    let audio: Vec<f32> = (0..len * args.batch)
        .map(|i| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            0.1 * ((seed >> 8) as f32 / (1 << 24) as f32 - 0.5) + 0.2 * (i as f32 * 0.03).sin()
        })
        .collect();
    tested.denoise(&audio, args.batch)?; // warm-up: kernels compile, memory is allocated
    let mut times = vec![];
    for _ in 0..args.runs.max(1) {
        let t = Instant::now();
        tested.denoise(&audio, args.batch)?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let took = times[times.len() / 2];
    let audio_s = args.batch as f64 * args.seconds;
    println!(
        "paper configuration, batch {} x {} s on {device}: {took:.3} s, real-time factor {:.5}, {:.0}x real time",
        args.batch,
        args.seconds,
        took / audio_s,
        audio_s / took
    );
    println!("gpu-rtf: {:.6}", took / audio_s);
    if let Some(python) = &args.baseline {
        let baseline = run_baseline(python, &args, device, &root)?;
        println!(
            "the engine on {device} is {:.2}x the speed of PyTorch + sru on the same device",
            baseline / (took / audio_s)
        );
    }
    if failed > 0 {
        bail!("{failed} reference case(s) differ on {device}");
    }
    Ok(())
}

/// Runs the PyTorch + sru baseline on `device` (reference check, then speed); returns its
/// real-time factor.
fn run_baseline(
    python: &std::path::Path,
    args: &Args,
    device: Device,
    root: &std::path::Path,
) -> Result<f64> {
    let out = std::process::Command::new(python)
        .arg(root.join("tests/python/sru_baseline.py"))
        .args(["--device", &device.to_string()])
        .args(["--batch", &args.batch.to_string()])
        .args(["--seconds", &args.seconds.to_string()])
        .args(["--runs", &args.runs.to_string()])
        .arg("--check")
        .args(args.cases.iter().map(|c| root.join(c)))
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    print!("{text}");
    if !out.status.success() {
        bail!("the PyTorch + sru baseline failed");
    }
    text.lines()
        .find_map(|l| l.strip_prefix("baseline-rtf: "))
        .and_then(|v| v.trim().parse().ok())
        .context("the baseline printed no real-time factor")
}
