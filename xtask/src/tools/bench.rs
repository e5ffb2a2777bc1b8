//! `cargo xtask bench`: speed figures for the inference engine, printed, never asserted.
//!
//! Real-time factor (processing time / audio time) of the paper configuration on 10 s of audio,
//! one thread, for the fused engine and for tract's plain Scan, and the recurrence kernel alone
//! per variant. Weights are the reference file's when present (speed does not depend on them),
//! else random ones of the paper's shapes. Last, the whole process as a user runs it (see
//! `bench_process`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use wavecrn_engine::model_file::{to_onnx_bytes, ModelInfo};
use wavecrn_engine::sru::kernel::{Layout, Seq};
use wavecrn_engine::sru::{Kernel, Recurrence};
use wavecrn_engine::{LoadOptions, Model, ModelConfig, RecurrencePath, Tensor, Weights};

#[derive(clap::Args)]
pub struct Args {
    /// Seconds of audio per run.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Timed runs per figure (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Also time tract's plain Scan path (slow: one small graph per time step).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    scan: bool,
    /// Seconds of audio for the whole-process row (`wavecrn denoise` as a user runs it);
    /// 0 leaves the row out.
    #[arg(long, default_value_t = 60.0)]
    process_seconds: f64,
    /// A Python with torch and sru 2.3.5: the whole-process row then times the original
    /// network's forward pass on the same audio (tests/python/sru_baseline.py) and prints the
    /// ratio.
    #[arg(long)]
    python: Option<PathBuf>,
}

/// Deterministic pseudo-random numbers in [-scale, scale).
fn noise(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn paper_weights() -> anyhow::Result<Weights> {
    let reference = PathBuf::from("../shared/reference/paper_bidir.safetensors");
    if reference.exists() {
        return Ok(Weights::read(reference)?);
    }
    let config = ModelConfig::default();
    let tensors: BTreeMap<String, Tensor> = config
        .parameter_shapes()
        .into_iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let n = shape.iter().product();
            let fan_in = shape.first().copied().unwrap_or(1).max(1) as f32;
            (
                name,
                Tensor::new(shape, noise(n, i as u64, 1.0 / fan_in.sqrt())),
            )
        })
        .collect();
    Ok(Weights::new(config, tensors)?)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time(runs: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let weights = paper_weights()?;
    let cfg = weights.config.clone();
    let onnx = to_onnx_bytes(&weights, &ModelInfo::default());
    let samples = (args.seconds * cfg.sample_rate as f64) as usize / cfg.stride * cfg.stride;
    let audio_s = samples as f64 / cfg.sample_rate as f64;
    let input = noise(samples, 7, 0.3);
    println!(
        "paper configuration ({} parameters), {audio_s:.1} s of audio, 1 thread, median of {} runs",
        cfg.parameter_count(),
        args.runs
    );

    let mut paths: Vec<RecurrencePath> = Kernel::available()
        .into_iter()
        .map(RecurrencePath::Fused)
        .collect();
    if args.scan {
        paths.push(RecurrencePath::Scan);
    }
    for recurrence in paths {
        let model = Model::from_bytes(
            &onnx,
            &LoadOptions {
                recurrence,
                ..LoadOptions::default()
            },
        )?;
        let runs = if recurrence == RecurrencePath::Scan {
            args.runs.min(2)
        } else {
            args.runs
        };
        let t = time(runs, || {
            model.run_raw(&input, 1).expect("inference runs");
        });
        println!(
            "engine {:<16} real-time factor {:.4}  ({:.1} ms)",
            format!("{recurrence:?}"),
            t / audio_s,
            t * 1e3
        );
    }

    // What the matrix products cost at best: this core's FMA peak against the model's
    // multiply-adds, a floor no f32 engine on one thread can go below.
    let macs = multiply_adds(&cfg, samples);
    if let Some(peak) = fma_peak() {
        println!(
            "core FMA peak {:.1} GMAC/s; the model needs {:.2} GMAC for this audio: at 100 % of peak, real-time factor {:.4}",
            peak / 1e9,
            macs / 1e9,
            macs / peak / audio_s
        );
    }

    // The recurrence alone: one paper layer (both directions) over the same number of frames.
    let steps = cfg.frames(samples);
    let hidden = cfg.hidden();
    let seq: Vec<Vec<f32>> = (0..4)
        .map(|i| noise(steps * hidden, 100 + i, 2.0))
        .collect();
    let w: Vec<Vec<f32>> = (0..4).map(|i| noise(hidden, 200 + i, 0.5)).collect();
    for kernel in Kernel::available() {
        let mut c = vec![0.0; hidden];
        let mut h = vec![0.0; steps * hidden];
        let layout = Layout::contiguous(1, hidden);
        let at = |i: usize| Seq {
            data: &seq[i],
            layout,
        };
        let t = time(args.runs * 4, || {
            for reverse in [false, true] {
                let r = Recurrence {
                    steps,
                    batch: 1,
                    hidden,
                    reverse,
                    u0: at(0),
                    u1: at(1),
                    u2: at(2),
                    skip: at(3),
                    v_f: &w[0],
                    v_r: &w[1],
                    b_f: &w[2],
                    b_r: &w[3],
                };
                r.run(kernel, &mut c, &mut h, layout);
            }
        });
        let unit_steps = (2 * steps * hidden) as f64;
        println!(
            "kernel {:<8} one layer: {:.3} ms  ({:.2} ns per unit-step; {} layers = real-time factor {:.5})",
            format!("{kernel:?}"),
            t * 1e3,
            t / unit_steps * 1e9,
            cfg.layers,
            t * cfg.layers as f64 / audio_s
        );
    }
    if args.process_seconds > 0.0 {
        let audio = noise((args.process_seconds * 16_000.0) as usize, 11, 0.3);
        crate::tools::bench_process::run(
            &onnx,
            &audio,
            args.process_seconds,
            args.python.as_deref(),
        )?;
    }
    Ok(())
}

/// Multiply-adds of one forward pass over `samples` samples (convolutions and matrix products).
fn multiply_adds(cfg: &ModelConfig, samples: usize) -> f64 {
    let frames = cfg.frames(samples) as f64;
    let per_frame: usize = (0..cfg.layers)
        .map(|i| {
            let l = cfg.layer(i);
            l.input * l.directions * l.hidden * l.k
        })
        .sum::<usize>()
        + cfg.channels * cfg.directions * cfg.hidden()
        + 2 * cfg.channels * cfg.kernel;
    per_frame as f64 * frames
}

/// Multiply-adds per second one core sustains with 8-lane FMA on independent registers.
#[cfg(target_arch = "x86_64")]
fn fma_peak() -> Option<f64> {
    if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
        return None;
    }
    #[target_feature(enable = "avx2,fma")]
    unsafe fn spin(iters: u64) -> f32 {
        use std::arch::x86_64::*;
        // Inputs the compiler cannot see through; ten chains hide the FMA latency.
        let b = _mm256_set1_ps(std::hint::black_box(0.999_999));
        let c = _mm256_set1_ps(std::hint::black_box(1e-7));
        let mut acc = [_mm256_set1_ps(std::hint::black_box(0.1)); 10];
        for _ in 0..iters {
            for a in &mut acc {
                *a = _mm256_fmadd_ps(*a, b, c);
            }
        }
        let acc = acc
            .iter()
            .fold(_mm256_setzero_ps(), |s, a| _mm256_add_ps(s, *a));
        let mut out = [0.0; 8];
        _mm256_storeu_ps(out.as_mut_ptr(), acc);
        out[0]
    }
    let iters = 50_000_000;
    let best = (0..3)
        .map(|_| {
            let t = Instant::now();
            // SAFETY: the CPU features were checked above.
            std::hint::black_box(unsafe { spin(iters) });
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    Some(iters as f64 * 10.0 * 8.0 / best)
}

#[cfg(not(target_arch = "x86_64"))]
fn fma_peak() -> Option<f64> {
    None
}
