//! `wavecrn-train bench`: training throughput of the paper configuration, and the recurrence
//! kernels' share of it.

use std::time::Instant;

use anyhow::Result;
use tch::{Device, Tensor};
use wavecrn_engine::sru::Kernel;
use wavecrn_engine::ModelConfig;

use crate::adam::Adam;
use crate::data;
use crate::model::Net;

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
    let (shared, alone) = time_spectral_terms(&x, &y);
    println!(
        "spectral loss terms (--stft-loss and --compressed-loss, forward+backward on this batch): {:.0} ms from shared spectra, {:.0} ms with each term taking its own STFTs",
        shared * 1e3,
        alone * 1e3
    );
    println!("train-throughput: {:.2} audio-s/s", audio / secs);
    Ok(())
}

/// Seconds for the two spectral loss terms with their gradient: as the trainer computes them
/// (one STFT of each signal per resolution) and each from its own STFTs.
fn time_spectral_terms(x: &Tensor, y: &Tensor) -> (f64, f64) {
    use crate::loss::{compressed_spectrum, loss, multi_resolution_stft, Weights};
    let w = Weights {
        stft: 0.02,
        compressed: 1.0,
        ..Weights::default()
    };
    let time = |terms: &dyn Fn(&Tensor) -> Tensor| {
        let repeats = 5;
        let started = Instant::now();
        for _ in 0..repeats {
            let output = x.copy().set_requires_grad(true);
            terms(&output).backward();
        }
        started.elapsed().as_secs_f64() / repeats as f64
    };
    let shared = time(&|o| loss(o, y, w));
    let alone = time(&|o| {
        (o - y).abs().mean(tch::Kind::Float)
            + multi_resolution_stft(o, y) * w.stft
            + compressed_spectrum(o, y) * w.compressed
    });
    (shared, alone)
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
