//! A training run: `runs/<name>/` with its checkpoint (weights, Adam state, step), the best
//! weights by validation PESQ, and a JSON-lines metrics log. Kill it any time: `--resume`
//! continues from the last checkpoint with the same data it would have seen.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};
use wavecrn_engine::io::write_atomically;
use wavecrn_engine::sru::Kernel;
use wavecrn_engine::{ModelConfig, TensorFile, Weights};
use wavecrn_metrics::validation::Pair;

use crate::adam::Adam;
use crate::args::{DeviceChoice, RunArgs};
use crate::data::{self, Mixing, Source, Task};
use crate::model::Net;

/// Writes `named` tensors (plus the network's metadata) as safetensors, atomically.
pub(crate) fn save(
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

/// The rate for the update after `step` steps: linear warm-up, then a half cosine from
/// `--lr` down to `--lr-end` at `--steps`. A function of the step alone, so a resumed run
/// follows the same curve.
fn learning_rate(a: &RunArgs, step: u64) -> f64 {
    if step < a.warmup {
        return a.lr * (step + 1) as f64 / a.warmup as f64;
    }
    let span = a.steps.saturating_sub(a.warmup).max(1) as f64;
    let progress = ((step - a.warmup) as f64 / span).min(1.0);
    a.lr_end + 0.5 * (a.lr - a.lr_end) * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// How much of the noise the target still keeps at `step` (see `--identity-steps`): 1 at
/// the first step, falling linearly to 0.
fn identity_share(a: &RunArgs, step: u64) -> f64 {
    match a.task {
        Task::Denoise if step < a.identity_steps => 1.0 - step as f64 / a.identity_steps as f64,
        _ => 0.0,
    }
}

fn pad_to(x: &[f32], stride: usize) -> Vec<f32> {
    let mut v = x.to_vec();
    v.resize(x.len().div_ceil(stride) * stride, 0.0);
    v
}

/// Validation means: over all pairs, and over the ambient ones alone
/// ([`validation::is_ambient`](wavecrn_metrics::validation::is_ambient)).
#[derive(Clone, Copy, Debug, Default)]
struct Validation {
    si_sdr: f64,
    ssnr: f64,
    pesq: f64,
    ambient_si_sdr: f64,
    ambient_pesq: f64,
}

/// The network's validation scores.
fn validate(net: &Net, pairs: &[Pair]) -> Result<Validation> {
    scores(pairs, |noisy| {
        let x = pad_to(noisy, net.config.stride);
        let y = net.forward(
            &Tensor::from_slice(&x)
                .view([1, 1, -1])
                .to_device(net.vs.device()),
        );
        Vec::<f32>::try_from(&y.view([-1])).expect("float output")
    })
}

/// The validation scores of `output(noisy input)`.
fn scores(pairs: &[Pair], mut output: impl FnMut(&[f32]) -> Vec<f32>) -> Result<Validation> {
    let (mut all, mut ambient, mut ambient_count) =
        (Validation::default(), Validation::default(), 0);
    for p in pairs {
        let y = output(&p.noisy);
        let y = &y[..p.clean.len()];
        let sdr = wavecrn_metrics::si_sdr(&p.clean, y)?;
        let pesq = wavecrn_metrics::pesq_wb(&p.clean, y).unwrap_or(f64::NAN);
        all.si_sdr += sdr;
        all.ssnr += wavecrn_metrics::segmental_snr(&p.clean, y)?;
        all.pesq += pesq;
        if wavecrn_metrics::validation::is_ambient(&p.name) {
            ambient.si_sdr += sdr;
            ambient.pesq += pesq;
            ambient_count += 1;
        }
    }
    let n = pairs.len().max(1) as f64;
    let m = ambient_count.max(1) as f64;
    Ok(Validation {
        si_sdr: all.si_sdr / n,
        ssnr: all.ssnr / n,
        pesq: all.pesq / n,
        ambient_si_sdr: ambient.si_sdr / m,
        ambient_pesq: ambient.pesq / m,
    })
}

impl std::fmt::Display for Validation {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "SI-SDR {:.2} dB, SSNR {:.2} dB, PESQ {:.3}; ambient PESQ {:.3}, SI-SDR {:.2} dB",
            self.si_sdr, self.ssnr, self.pesq, self.ambient_pesq, self.ambient_si_sdr
        )
    }
}

/// Weights from a safetensors file (a checkpoint) or from an exported ONNX model.
fn read_weights(path: &Path) -> Result<Weights> {
    if path.extension().is_some_and(|e| e == "onnx") {
        let bytes = std::fs::read(path)?;
        return Ok(wavecrn_engine::onnx_import::weights_from_onnx(&bytes)?);
    }
    Ok(Weights::read(path)?)
}

/// CPU time this process has used so far, all threads, in seconds.
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut u = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// The device `choice` names, with a clear error where it is not there.
pub fn device(choice: DeviceChoice) -> Result<Device> {
    crate::cuda::load_libtorch_cuda();
    let available = tch::Cuda::is_available();
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto => Ok(if available {
            Device::Cuda(0)
        } else {
            Device::Cpu
        }),
        DeviceChoice::Cuda if available => Ok(Device::Cuda(0)),
        DeviceChoice::Cuda => bail!(
            "--device cuda: LibTorch sees no CUDA device here (no GPU, no driver, or a \
             CPU-only LibTorch); use --device cpu or auto"
        ),
    }
}

/// The training examples' source, loaded.
fn load_source(a: &RunArgs, rate: u32) -> Result<Source> {
    if let [noisy, clean] = a.pairs.as_slice() {
        let pairs = data::load_pairs(noisy, clean, rate)?;
        eprintln!("{} training pairs", pairs.len());
        return Ok(Source::pairs(pairs));
    }
    let speech = data::load_folders(&a.speech, rate)?;
    let noise = match a.task {
        Task::Denoise => data::load_folders(&a.noise, rate)?,
        Task::Restore => vec![],
    };
    Ok(Source::mixtures(speech, noise))
}

/// The seed of a run's examples: the checkpoint's when resuming (a run's data never changes
/// under it; checkpoints from before the data seed drew with `--seed`), else the one given,
/// else a fresh one.
fn data_seed(a: &RunArgs, checkpoint: Option<&TensorFile>) -> Result<u64> {
    let Some(file) = checkpoint else {
        return Ok(a.data_seed.unwrap_or_else(fresh_seed));
    };
    let recorded = match file.metadata.get("data_seed") {
        Some(s) => s
            .parse()
            .context("the checkpoint's data_seed is not a number")?,
        None => a.seed,
    };
    if a.data_seed.is_some_and(|given| given != recorded) {
        bail!(
            "--data-seed differs from the run's ({recorded}): a resumed run goes on with its own \
             data; leave the option out, or start another --run-dir"
        );
    }
    Ok(recorded)
}

/// A seed no earlier run is likely to have had: the clock's nanoseconds and the process id,
/// mixed.
fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut rng = data::Rng(nanos ^ (u64::from(std::process::id()) << 32));
    rng.next_u64() >> 1
}

pub fn train(mut a: RunArgs) -> Result<()> {
    a.check()?;
    let cfg = a.model();
    cfg.validate()?;
    if a.threads > 0 {
        tch::set_num_threads(a.threads as i32);
        tch::set_num_interop_threads(a.threads as i32);
    }
    let device = device(a.device)?;
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
    let source = load_source(&a, rate)?;
    let valid_pairs = {
        let s = data::load_folders(std::slice::from_ref(&a.valid_speech), rate)?;
        let n = data::load_folders(std::slice::from_ref(&a.valid_noise), rate)?;
        let mut p = wavecrn_metrics::validation::mix(&s, &n, wavecrn_metrics::validation::SEED);
        p.truncate(a.valid_files);
        match a.task {
            Task::Denoise => p,
            Task::Restore => wavecrn_metrics::validation::restore_pairs(p),
        }
    };

    let mut net = Net::zeros(cfg.clone(), device);
    net.loss = crate::loss::Weights {
        stft: a.stft_loss,
        si_sdr: a.si_sdr_loss,
        compressed: a.compressed_loss,
    };
    let mut adam = Adam::new(a.lr);
    let mut best = f64::NEG_INFINITY;
    let resuming = a.resume && checkpoint.exists();
    let file = if resuming {
        Some(TensorFile::read(&checkpoint)?)
    } else {
        None
    };
    a.data_seed = Some(data_seed(&a, file.as_ref())?);
    if let Some(file) = file {
        let weights = Weights::new(cfg.clone(), file.tensors.clone())
            .with_context(|| format!("{} does not fit this configuration", checkpoint.display()))?;
        let mut net_mut = net;
        net_mut.load(&weights)?;
        let step: u64 = file
            .metadata
            .get("step")
            .and_then(|s| s.parse().ok())
            .context("checkpoint has no step")?;
        // Checkpoints from before PESQ picked the best weights hold an SI-SDR there.
        if file.metadata.get("best_by").is_some_and(|b| b == "pesq") {
            best = file
                .metadata
                .get("best")
                .and_then(|s| s.parse().ok())
                .unwrap_or(best);
        }
        let state: BTreeMap<String, Tensor> = file
            .tensors
            .iter()
            .filter(|(k, _)| k.starts_with("adam."))
            .map(|(k, t)| {
                let dims: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
                let t = Tensor::from_slice(&t.data).view(dims.as_slice());
                (k.clone(), t.to_device(device))
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
        return run_loop(a, cfg, net_mut, adam, best, source, valid_pairs);
    }
    crate::init::initialise(&net, a.seed);
    if let Some(path) = &a.init {
        let weights =
            read_weights(path).with_context(|| format!("cannot read --init {}", path.display()))?;
        if weights.config.channels < cfg.channels {
            crate::init::widen(&net, &weights, crate::init::WIDENED_JITTER, a.seed)
                .with_context(|| format!("--init {} does not fit this run", path.display()))?;
            eprintln!(
                "starting from the weights in {}, widened from {} to {} channels",
                path.display(),
                weights.config.channels,
                cfg.channels
            );
        } else if weights.config.layers < cfg.layers {
            crate::init::deepen(&net, &weights, crate::init::ADDED_LAYER_RESET_BIAS)
                .with_context(|| format!("--init {} does not fit this run", path.display()))?;
            eprintln!(
                "starting from the weights in {}, deepened from {} to {} layers",
                path.display(),
                weights.config.layers,
                cfg.layers
            );
        } else {
            net.load(&weights)
                .with_context(|| format!("--init {} does not fit this run", path.display()))?;
            eprintln!("starting from the weights in {}", path.display());
        }
    }
    // What the network has to beat, on the same pairs as the validation lines.
    let input = scores(&valid_pairs, <[f32]>::to_vec)?;
    eprintln!("validation input: {input}");
    write_atomically(&a.run_dir.join("config.toml"), a.to_toml().as_bytes()).with_context(
        || {
            format!(
                "cannot write into {} (is the disk full?)",
                a.run_dir.display()
            )
        },
    )?;
    run_loop(a, cfg, net, adam, best, source, valid_pairs)
}

#[allow(clippy::too_many_arguments)]
fn run_loop(
    a: RunArgs,
    cfg: ModelConfig,
    net: Net,
    mut adam: Adam,
    mut best: f64,
    source: Source,
    valid_pairs: Vec<Pair>,
) -> Result<()> {
    let crop = ((a.seconds * cfg.sample_rate as f64) as usize).div_ceil(cfg.stride) * cfg.stride;
    let mixing = Mixing {
        task: a.task,
        clip: a.clip,
        babble: a.babble,
        talkers: (a.talkers[0], a.talkers[1]),
        augment: data::Augmentation {
            eq: a.eq,
            reverb: a.reverb,
            second_noise: a.second_noise,
            speech_shaped: a.speech_shaped,
            speed: a.speed,
        },
        crop,
        batch: a.batch,
        snr: (a.snr[0], a.snr[1]),
        gain_db: (-25.0, -1.0),
    };
    let data_seed = a
        .data_seed
        .context("the data seed is resolved before the loop")?;
    let batches = data::prefetch(source, mixing, data_seed, adam.step);
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
    let mut end = a.stop_at.unwrap_or(a.steps).min(a.steps);
    // CPU seconds of earlier sessions of this run, so the log counts the run's whole cost.
    let cpu_before = last_logged_cpu(&a.run_dir.join("metrics.jsonl"));
    let cpu_start = cpu_seconds();
    while adam.step < end {
        let b = batches.recv().context("the data thread stopped")?;
        let device = net.vs.device();
        let shape = [a.batch as i64, 1, crop as i64];
        let x = Tensor::from_slice(&b.noisy).view(shape).to_device(device);
        let mut y = Tensor::from_slice(&b.clean).view(shape).to_device(device);
        let pass_through = identity_share(&a, adam.step);
        if pass_through > 0.0 {
            y = &y + (&x - &y) * pass_through;
        }
        // Masks depend only on the seed and the step, so a resumed run draws the same ones.
        tch::manual_seed((data_seed ^ (adam.step + 1).wrapping_mul(0x9E37_79B9)) as i64);
        let (_, loss) = net.train_step(&x, &y, a.rnn_dropout);
        if !loss.is_finite() {
            bail!("the loss became {loss} at step {}: lower --lr", adam.step);
        }
        adam.lr = learning_rate(&a, adam.step);
        adam.step(net.params());
        let step = adam.step;
        let cpu = cpu_seconds() - cpu_start;
        if a.cpu_minutes.is_some_and(|m| cpu >= m * 60.0) {
            end = step;
        }
        let secs = started.elapsed().as_secs_f64();
        let rate = (step - first) as f64 * a.batch as f64 * a.seconds / secs.max(1e-9);
        bar.set_position(step);
        bar.set_message(format!("loss {loss:.5}  {rate:.2} audio-s/s"));
        let mut record = format!(
            "{{\"step\": {step}, \"loss\": {loss}, \"lr\": {:.3e}, \"audio_s_per_s\": {rate:.3}, \"cpu_s\": {:.1}",
            adam.lr,
            cpu_before + cpu
        );
        if step.is_multiple_of(a.valid_every) || step == end {
            let v = validate(&net, &valid_pairs)?;
            bar.println(format!(
                "step {step}: loss {loss:.5}, {rate:.2} audio-s/s; validation {v}"
            ));
            record += &format!(
                ", \"valid_si_sdr\": {}, \"valid_ssnr\": {}, \"valid_pesq\": {}, \"valid_ambient_pesq\": {}, \"valid_ambient_si_sdr\": {}",
                v.si_sdr, v.ssnr, v.pesq, v.ambient_pesq, v.ambient_si_sdr
            );
            // PESQ picks the best weights: the score the product is judged by (SI-SDR, which
            // picked them before, rewards level-faithful output that can sound worse).
            if v.pesq > best {
                best = v.pesq;
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
                &[
                    ("step", step.to_string()),
                    ("best", best.to_string()),
                    ("best_by", "pesq".to_string()),
                    ("data_seed", data_seed.to_string()),
                ],
            )?;
        }
        writeln!(log, "{record}}}").with_context(|| {
            format!(
                "cannot append to the metrics log in {} (is the disk full?)",
                a.run_dir.display()
            )
        })?;
        if record.contains("valid_si_sdr") {
            crate::plot::render(&a.run_dir)?;
        }
    }
    bar.finish();
    Ok(())
}

/// The run's CPU seconds at its last logged step (0 for a new run).
fn last_logged_cpu(log: &Path) -> f64 {
    std::fs::read_to_string(log)
        .ok()
        .and_then(|text| {
            text.lines().rev().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                v.get("cpu_s")?.as_f64()
            })
        })
        .unwrap_or(0.0)
}

/// Trains the paper configuration on random audio (batch 8 x 1 s) and prints the
/// throughput and the share of time in the recurrence kernels. Data loading is left out:
/// it runs on its own thread during training.
pub fn bench(steps: u64) -> Result<()> {
    use std::sync::atomic::Ordering;
    let cfg = ModelConfig::default();
    let net = Net::zeros(cfg.clone(), Device::Cpu);
    crate::init::initialise(&net, 1);
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
    let threads = tch::get_num_threads().max(1) as usize;
    println!("paper configuration ({} parameters), batch {batch} x {:.2} s, {steps} steps, {threads} LibTorch threads", cfg.parameter_count(), crop as f64 / cfg.sample_rate as f64);
    println!(
        "{:.2} s per step; recurrence forward+backward {:.0} % of the time",
        secs / steps as f64,
        100.0 * recurrence / secs
    );
    let steps_per_layer = crop / cfg.stride;
    let (scalar, fast) = (
        time_recurrence(Kernel::Scalar, 1, steps_per_layer, batch, cfg.hidden()),
        time_recurrence(
            Kernel::best(),
            threads,
            steps_per_layer,
            batch,
            cfg.hidden(),
        ),
    );
    println!(
        "recurrence per layer (forward+backward): {:.1} ms one lane on one thread, {:.1} ms {:?} on {threads} threads ({:.1}x)",
        scalar * 1e3,
        fast * 1e3,
        Kernel::best(),
        scalar / fast
    );
    println!("train-throughput: {:.2} audio-s/s", audio / secs);
    Ok(())
}

/// Seconds for one bidirectional layer's recurrence forward and backward on random values.
fn time_recurrence(
    kernel: Kernel,
    threads: usize,
    steps: usize,
    batch: usize,
    hidden: usize,
) -> f64 {
    use crate::recurrence::{backward_with, forward_with, Params, Shape};
    let s = Shape {
        steps,
        batch,
        hidden,
        directions: 2,
        k: 3,
    };
    let mut rng = data::Rng(9);
    let mut values = |n: usize| {
        (0..n)
            .map(|_| rng.uniform(-1.0, 1.0) as f32)
            .collect::<Vec<_>>()
    };
    let (u, skip, dh) = (values(s.u_len()), values(s.h_len()), values(s.h_len()));
    let (weight_c, bias) = (values(4 * hidden), values(4 * hidden));
    let p = Params {
        weight_c: &weight_c,
        bias: &bias,
    };
    let (mut h, mut c) = (vec![0.0; s.h_len()], vec![0.0; s.h_len()]);
    let repeats = 5;
    let started = Instant::now();
    for _ in 0..repeats {
        forward_with(kernel, threads, s, p, &u, Some(&skip), &mut h, &mut c);
        std::hint::black_box(backward_with(
            kernel,
            threads,
            s,
            p,
            &u,
            Some(&skip),
            &c,
            &dh,
        ));
    }
    started.elapsed().as_secs_f64() / repeats as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(extra: &[&str]) -> RunArgs {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            run: RunArgs,
        }
        let base = ["train", "--speech", "s", "--noise", "n", "--run-dir", "r"];
        <Cli as clap::Parser>::parse_from(base.iter().chain(extra)).run
    }

    /// The target starts as the noisy input and reaches the clean speech after
    /// `--identity-steps`; without the option, and for restoration, it is clean throughout.
    #[test]
    fn the_identity_curriculum_fades_linearly() {
        let a = run_args(&["--identity-steps", "100"]);
        for (step, share) in [(0, 1.0), (50, 0.5), (99, 0.01), (100, 0.0), (5000, 0.0)] {
            assert!(
                (identity_share(&a, step) - share).abs() < 1e-12,
                "step {step}"
            );
        }
        assert_eq!(identity_share(&run_args(&[]), 0), 0.0);
        let restore = run_args(&["--identity-steps", "100", "--task", "restore"]);
        assert_eq!(identity_share(&restore, 0), 0.0);
    }

    /// The schedule at its corners: the warm-up's first and last steps, the peak, the cosine's
    /// middle, its end, past the end, and a run without warm-up or with a constant rate.
    #[test]
    fn the_learning_rate_schedule_holds_at_its_corners() {
        let a = run_args(&[
            "--lr", "1e-3", "--lr-end", "1e-5", "--warmup", "100", "--steps", "1100",
        ]);
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-12 + 1e-9 * y.abs();
        assert!(close(learning_rate(&a, 0), 1e-5));
        assert!(close(learning_rate(&a, 49), 5e-4));
        assert!(close(learning_rate(&a, 99), 1e-3));
        assert!(close(learning_rate(&a, 100), 1e-3));
        assert!(close(learning_rate(&a, 600), 0.5 * (1e-3 + 1e-5)));
        assert!(close(learning_rate(&a, 1100), 1e-5));
        assert!(close(learning_rate(&a, 5000), 1e-5));
        for step in 100..1100 {
            assert!(learning_rate(&a, step + 1) <= learning_rate(&a, step));
        }
        let cold = run_args(&["--warmup", "0", "--steps", "10", "--lr", "2e-3"]);
        assert!(close(learning_rate(&cold, 0), 2e-3));
        let flat = run_args(&["--lr", "3e-3", "--lr-end", "3e-3", "--warmup", "0"]);
        assert!((0..20_000)
            .step_by(997)
            .all(|s| close(learning_rate(&flat, s), 3e-3)));
    }

    /// SNRs below 0 dB are values, not options.
    #[test]
    fn negative_snrs_parse() {
        assert_eq!(run_args(&["--snr", "-5", "20"]).snr, vec![-5.0, 20.0]);
    }

    /// `auto` takes the GPU exactly when there is one; `cuda` without one says what to do.
    #[test]
    fn device_choices_follow_what_libtorch_sees() {
        let gpu = tch::Cuda::is_available();
        assert_eq!(device(DeviceChoice::Cpu).unwrap(), Device::Cpu);
        assert_eq!(
            device(DeviceChoice::Auto).unwrap(),
            if gpu { Device::Cuda(0) } else { Device::Cpu }
        );
        match device(DeviceChoice::Cuda) {
            Ok(d) => assert!(gpu && d == Device::Cuda(0)),
            Err(e) => assert!(!gpu && e.to_string().contains("--device cpu"), "{e}"),
        }
    }
}
