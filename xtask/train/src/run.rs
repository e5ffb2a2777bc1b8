//! A training run: `runs/<name>/` with its checkpoint (weights, Adam state, step), the best
//! weights by validation PESQ, and a JSON-lines metrics log. Kill it any time: `--resume`
//! continues from the last checkpoint with the same data it would have seen.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tch::{Device, Tensor};
use wavecrn_engine::io::write_atomically;
use wavecrn_engine::{ModelConfig, TensorFile, Weights};
use wavecrn_metrics::validation::Pair;

use crate::adam::Adam;
use crate::args::{DeviceChoice, RunArgs};
use crate::checkpoint::{data_seed, last_logged_cpu, read_weights, save, weights_only};
use crate::data::{self, Mixing, Source, Task};
use crate::model::Net;
use crate::schedule::{identity_share, learning_rate};
use crate::validation::{scores, validate};

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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::args::test_args as run_args;

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
