//! A training run: `runs/<name>/` with its checkpoint (weights, Adam state, step), the best
//! weights by validation SI-SDR, and a JSON-lines metrics log. Kill it any time: `--resume`
//! continues from the last checkpoint with the same data it would have seen.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};
use wavecrn_engine::io::write_atomically;
use wavecrn_engine::{ModelConfig, TensorFile, Weights};

use crate::adam::Adam;
use crate::data::{self, Mixing};
use crate::model::Net;

/// Everything a run is made of.
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// Clean speech folders.
    #[arg(long, num_args = 1.., required = true)]
    pub speech: Vec<PathBuf>,
    /// Noise folders.
    #[arg(long, num_args = 1.., required = true)]
    pub noise: Vec<PathBuf>,
    /// The run's folder.
    #[arg(long)]
    pub run_dir: PathBuf,
    /// Continue from the run's checkpoint.
    #[arg(long)]
    pub resume: bool,
    #[arg(long, default_value_t = 10_000)]
    pub steps: u64,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Seconds per example.
    #[arg(long, default_value_t = 1.0)]
    pub seconds: f64,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Dropout on each SRU layer's input (the reference recipe's rnn_dropout).
    #[arg(long, default_value_t = 0.1)]
    pub rnn_dropout: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Lowest and highest mixing SNR, dB.
    #[arg(long, num_args = 2, default_values_t = [0.0, 15.0])]
    pub snr: Vec<f64>,
    /// Validate (and checkpoint) every N steps.
    #[arg(long, default_value_t = 500)]
    pub valid_every: u64,
    /// Validation pairs used (from the fixed validation set).
    #[arg(long, default_value_t = 16)]
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
}

fn config(a: &RunArgs) -> ModelConfig {
    let base = if a.causal {
        ModelConfig::causal()
    } else {
        ModelConfig::default()
    };
    ModelConfig {
        channels: a.channels,
        layers: a.layers,
        ..base
    }
}

/// Writes `named` tensors (plus the network's metadata) as safetensors, atomically.
fn save(
    path: &Path,
    cfg: &ModelConfig,
    named: &[(String, Tensor)],
    extra: &[(&str, String)],
) -> Result<()> {
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = named
        .iter()
        .map(|(n, t)| {
            let t = t.detach().to_kind(Kind::Float).contiguous();
            let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
            let v = Vec::<f32>::try_from(&t.view([-1])).expect("float tensor");
            (
                n.clone(),
                shape,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .expect("valid view"),
            )
        })
        .collect();
    let mut meta: std::collections::HashMap<String, String> = [
        ("bidirectional", (cfg.directions == 2).to_string()),
        ("sample_rate", cfg.sample_rate.to_string()),
        ("config", cfg.to_json()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    meta.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let bytes = safetensors::serialize(views, Some(meta))?;
    write_atomically(path, &bytes)
        .with_context(|| format!("cannot write {} (is the disk full?)", path.display()))
}

fn weights_only(net: &Net) -> Vec<(String, Tensor)> {
    net.params()
        .iter()
        .map(|(k, t)| (k.clone(), t.shallow_clone()))
        .collect()
}

/// Deterministic initial weights: PyTorch-like uniform fan-in scaling, unit layer norms.
fn initialise(net: &Net, seed: u64) {
    let mut rng = data::Rng(seed.wrapping_mul(31) + 7);
    tch::no_grad(|| {
        for (name, p) in net.params() {
            let shape = p.size();
            let n: i64 = shape.iter().product();
            let value: Vec<f32> =
                if name.ends_with("layer_norm.weight") || name.ends_with("scale_x") {
                    vec![1.0; n as usize]
                } else if name.ends_with("bias") {
                    vec![0.0; n as usize]
                } else if name.ends_with("weight_c") {
                    // Recurrent weights start at zero: each gate begins as a plain sigmoid of U.
                    vec![0.0; n as usize]
                } else {
                    let fan_in = match shape.len() {
                        3 => shape[2],                              // conv / deconv: the kernel taps
                        _ if name.starts_with("outfc") => shape[1], // Linear stores (out, in)
                        _ => shape[0],                              // SRU weight: (in, out)
                    };
                    let bound = (3.0 / fan_in.max(1) as f64).sqrt();
                    (0..n).map(|_| rng.uniform(-bound, bound) as f32).collect()
                };
            p.shallow_clone()
                .copy_(&Tensor::from_slice(&value).view(shape.as_slice()));
        }
    });
}

fn pad_to(x: &[f32], stride: usize) -> Vec<f32> {
    let mut v = x.to_vec();
    v.resize(x.len().div_ceil(stride) * stride, 0.0);
    v
}

/// Mean SI-SDR, segmental SNR and PESQ on the validation pairs.
fn validate(net: &Net, pairs: &[wavecrn_metrics::validation::Pair]) -> Result<(f64, f64, f64)> {
    let (mut sdr, mut ssnr, mut pesq) = (0.0, 0.0, 0.0);
    for p in pairs {
        let x = pad_to(&p.noisy, net.config.stride);
        let y = net.forward(&Tensor::from_slice(&x).view([1, 1, -1]));
        let y = Vec::<f32>::try_from(&y.view([-1])).expect("float output");
        let y = &y[..p.clean.len()];
        sdr += wavecrn_metrics::si_sdr(&p.clean, y)?;
        ssnr += wavecrn_metrics::segmental_snr(&p.clean, y)?;
        pesq += wavecrn_metrics::pesq_wb(&p.clean, y).unwrap_or(f64::NAN);
    }
    let n = pairs.len().max(1) as f64;
    Ok((sdr / n, ssnr / n, pesq / n))
}

pub fn train(a: RunArgs) -> Result<()> {
    if a.snr.len() != 2 || a.snr[0] > a.snr[1] {
        bail!("--snr takes a low and a high value");
    }
    let cfg = config(&a);
    cfg.validate()?;
    std::fs::create_dir_all(&a.run_dir)
        .with_context(|| format!("cannot create {}", a.run_dir.display()))?;
    let checkpoint = a.run_dir.join("checkpoint.safetensors");
    if checkpoint.exists() && !a.resume {
        bail!(
            "{} already holds a run: pass --resume to continue it, or choose another --run-dir",
            a.run_dir.display()
        );
    }

    let rate = cfg.sample_rate;
    let speech = Arc::new(data::load_folders(&a.speech, rate)?);
    let noise = Arc::new(data::load_folders(&a.noise, rate)?);
    let valid_pairs = {
        let s = data::load_folders(std::slice::from_ref(&a.valid_speech), rate)?;
        let n = data::load_folders(std::slice::from_ref(&a.valid_noise), rate)?;
        let mut p = wavecrn_metrics::validation::mix(&s, &n, wavecrn_metrics::validation::SEED);
        p.truncate(a.valid_files);
        p
    };

    let net = Net::zeros(cfg.clone(), Device::Cpu);
    let mut adam = Adam::new(a.lr);
    let mut best = f64::NEG_INFINITY;
    if a.resume && checkpoint.exists() {
        let file = TensorFile::read(&checkpoint)?;
        let weights = Weights::new(cfg.clone(), file.tensors.clone())
            .with_context(|| format!("{} does not fit this configuration", checkpoint.display()))?;
        let mut net_mut = net;
        net_mut.load(&weights)?;
        let step: u64 = file
            .metadata
            .get("step")
            .and_then(|s| s.parse().ok())
            .context("checkpoint has no step")?;
        best = file
            .metadata
            .get("best")
            .and_then(|s| s.parse().ok())
            .unwrap_or(best);
        let state: BTreeMap<String, Tensor> = file
            .tensors
            .iter()
            .filter(|(k, _)| k.starts_with("adam."))
            .map(|(k, t)| {
                let dims: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
                (k.clone(), Tensor::from_slice(&t.data).view(dims.as_slice()))
            })
            .collect();
        adam.restore(step, &state);
        // Steps logged after the checkpoint will be run again: drop them from the log.
        let log_path = a.run_dir.join("metrics.jsonl");
        if let Ok(log) = std::fs::read_to_string(&log_path) {
            let kept: String = log
                .lines()
                .filter(|l| {
                    l.strip_prefix("{\"step\": ")
                        .and_then(|r| r.split(',').next())
                        .and_then(|n| n.parse::<u64>().ok())
                        .is_some_and(|n| n <= step)
                })
                .map(|l| format!("{l}\n"))
                .collect();
            write_atomically(&log_path, kept.as_bytes())?;
        }
        eprintln!("resuming {} at step {step}", a.run_dir.display());
        return run_loop(a, cfg, net_mut, adam, best, speech, noise, valid_pairs);
    }
    initialise(&net, a.seed);
    let description = format!(
        "{{\"model\": {}, \"args\": {:?}}}\n",
        cfg.to_json(),
        format!("{a:?}")
    );
    write_atomically(&a.run_dir.join("config.json"), description.as_bytes())?;
    run_loop(a, cfg, net, adam, best, speech, noise, valid_pairs)
}

#[allow(clippy::too_many_arguments)]
fn run_loop(
    a: RunArgs,
    cfg: ModelConfig,
    net: Net,
    mut adam: Adam,
    mut best: f64,
    speech: Arc<Vec<(String, Vec<f32>)>>,
    noise: Arc<Vec<(String, Vec<f32>)>>,
    valid_pairs: Vec<wavecrn_metrics::validation::Pair>,
) -> Result<()> {
    let crop = ((a.seconds * cfg.sample_rate as f64) as usize).div_ceil(cfg.stride) * cfg.stride;
    let mixing = Mixing {
        crop,
        batch: a.batch,
        snr: (a.snr[0], a.snr[1]),
        gain_db: (-25.0, -1.0),
    };
    let batches = data::prefetch(speech, noise, mixing, a.seed, adam.step);
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(a.run_dir.join("metrics.jsonl"))?;
    let started = Instant::now();
    let first = adam.step;
    // A bar on a terminal; on a pipe or in a log, indicatif stays quiet and the validation
    // lines still say how the run goes.
    let bar = indicatif::ProgressBar::new(a.steps).with_position(first);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} step {pos}/{len}  {msg}  eta {eta}")
            .expect("valid template"),
    );
    while adam.step < a.steps {
        let b = batches.recv().context("the data thread stopped")?;
        let x = Tensor::from_slice(&b.noisy).view([a.batch as i64, 1, crop as i64]);
        let y = Tensor::from_slice(&b.clean).view([a.batch as i64, 1, crop as i64]);
        // Masks depend only on the seed and the step, so a resumed run draws the same ones.
        tch::manual_seed((a.seed ^ (adam.step + 1).wrapping_mul(0x9E37_79B9)) as i64);
        let (_, loss) = net.train_step(&x, &y, a.rnn_dropout);
        if !loss.is_finite() {
            bail!("the loss became {loss} at step {}: lower --lr", adam.step);
        }
        adam.step(net.params());
        let step = adam.step;
        let secs = started.elapsed().as_secs_f64();
        let rate = (step - first) as f64 * a.batch as f64 * a.seconds / secs.max(1e-9);
        bar.set_position(step);
        bar.set_message(format!("loss {loss:.5}  {rate:.2} audio-s/s"));
        let mut record =
            format!("{{\"step\": {step}, \"loss\": {loss}, \"audio_s_per_s\": {rate:.3}");
        if step.is_multiple_of(a.valid_every) || step == a.steps {
            let (sdr, ssnr, pesq) = validate(&net, &valid_pairs)?;
            bar.println(format!(
                "step {step}: loss {loss:.5}, {rate:.2} audio-s/s; validation SI-SDR {sdr:.2} dB, SSNR {ssnr:.2} dB, PESQ {pesq:.3}"
            ));
            record += &format!(
                ", \"valid_si_sdr\": {sdr}, \"valid_ssnr\": {ssnr}, \"valid_pesq\": {pesq}"
            );
            if sdr > best {
                best = sdr;
                save(
                    &a.run_dir.join("best.safetensors"),
                    &cfg,
                    &weights_only(&net),
                    &[("step", step.to_string())],
                )?;
            }
            let mut all = weights_only(&net);
            all.extend(adam.state());
            save(
                &a.run_dir.join("checkpoint.safetensors"),
                &cfg,
                &all,
                &[("step", step.to_string()), ("best", best.to_string())],
            )?;
        }
        writeln!(log, "{record}}}")?;
    }
    bar.finish();
    Ok(())
}

/// Trains the paper configuration on random audio (batch 8 x 1 s) and prints the
/// throughput and the share of time in the recurrence kernels. Data loading is left out:
/// it runs on its own thread during training.
pub fn bench(steps: u64) -> Result<()> {
    use std::sync::atomic::Ordering;
    let cfg = ModelConfig::default();
    let net = Net::zeros(cfg.clone(), Device::Cpu);
    initialise(&net, 1);
    let mut adam = Adam::new(1e-3);
    let (batch, crop) = (8usize, cfg.sample_rate as usize / cfg.stride * cfg.stride);
    let mut rng = data::Rng(5);
    let mut noise = |n: usize| {
        (0..n)
            .map(|_| rng.uniform(-0.3, 0.3) as f32)
            .collect::<Vec<f32>>()
    };
    let x = Tensor::from_slice(&noise(batch * crop)).view([batch as i64, 1, crop as i64]);
    let y = Tensor::from_slice(&noise(batch * crop)).view([batch as i64, 1, crop as i64]);
    let _ = net.loss_and_backward(&x, &y);
    adam.step(net.params()); // warm-up
    crate::recurrence::NANOS.store(0, Ordering::Relaxed);
    let started = Instant::now();
    for _ in 0..steps {
        let _ = net.loss_and_backward(&x, &y);
        adam.step(net.params());
    }
    let secs = started.elapsed().as_secs_f64();
    let recurrence = crate::recurrence::NANOS.load(Ordering::Relaxed) as f64 * 1e-9;
    let audio = steps as f64 * batch as f64 * crop as f64 / cfg.sample_rate as f64;
    println!("paper configuration ({} parameters), batch {batch} x {:.2} s, {steps} steps, {} LibTorch threads", cfg.parameter_count(), crop as f64 / cfg.sample_rate as f64, tch::get_num_threads());
    println!(
        "{:.2} s per step; recurrence forward+backward {:.0} % of the time",
        secs / steps as f64,
        100.0 * recurrence / secs
    );
    println!("train-throughput: {:.2} audio-s/s", audio / secs);
    Ok(())
}
