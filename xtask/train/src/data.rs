//! Training data: clean speech and noise loaded once (any format the CLI reads, resampled to
//! 16 kHz, mixed to mono), and on-the-fly mixtures drawn from them on a background thread.

use std::path::PathBuf;
use std::sync::mpsc;

use anyhow::{bail, Result};

/// Every usable file of some folders as mono at `rate` Hz, with its name.
pub fn load_folders(dirs: &[PathBuf], rate: u32) -> Result<Vec<(String, Vec<f32>)>> {
    let mut out = vec![];
    for dir in dirs {
        out.extend(wavecrn_cli::pipeline::read_folder_mono(dir, rate)?);
    }
    if out.is_empty() {
        bail!("no usable (non-silent) audio in {dirs:?}");
    }
    Ok(out)
}

/// How mixtures are drawn.
#[derive(Clone, Debug)]
pub struct Mixing {
    /// Samples per example.
    pub crop: usize,
    pub batch: usize,
    /// SNR range in dB, drawn uniformly.
    pub snr: (f64, f64),
    /// Output level range in dB (peak of the mixture), drawn uniformly.
    pub gain_db: (f64, f64),
}

pub use wavecrn_metrics::validation::SplitMix as Rng;

/// One batch: noisy inputs and clean targets, `batch * crop` samples each.
pub struct Batch {
    pub noisy: Vec<f32>,
    pub clean: Vec<f32>,
}

fn power(x: &[f32]) -> f64 {
    x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64
}

/// Draws batch number `index` deterministically from `seed`: the same run, resumed, sees the
/// same data.
pub fn draw(
    speech: &[(String, Vec<f32>)],
    noise: &[(String, Vec<f32>)],
    m: &Mixing,
    seed: u64,
    index: u64,
) -> Batch {
    let mut rng = Rng(seed ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    let mut b = Batch {
        noisy: Vec::with_capacity(m.batch * m.crop),
        clean: Vec::with_capacity(m.batch * m.crop),
    };
    for _ in 0..m.batch {
        // A crop with some speech in it (a few tries, then whatever came).
        let mut clean = vec![];
        for _ in 0..8 {
            let s = &speech[rng.below(speech.len())].1;
            let start = rng.below(s.len().saturating_sub(m.crop) + 1);
            clean = (0..m.crop)
                .map(|i| s.get(start + i).copied().unwrap_or(0.0))
                .collect();
            if power(&clean) > 1e-6 {
                break;
            }
        }
        let n = &noise[rng.below(noise.len())].1;
        let offset = rng.below(n.len());
        let noise_crop: Vec<f32> = (0..m.crop).map(|i| n[(offset + i) % n.len()]).collect();
        let snr = rng.uniform(m.snr.0, m.snr.1);
        let k =
            (power(&clean) / power(&noise_crop).max(1e-12) / 10f64.powf(snr / 10.0)).sqrt() as f32;
        let mut noisy: Vec<f32> = clean
            .iter()
            .zip(&noise_crop)
            .map(|(c, v)| c + k * v)
            .collect();
        let peak = noisy.iter().fold(1e-9f32, |a, v| a.max(v.abs()));
        let level = 10f64.powf(rng.uniform(m.gain_db.0, m.gain_db.1) / 20.0) as f32 / peak;
        noisy.iter_mut().for_each(|v| *v *= level);
        clean.iter_mut().for_each(|v| *v *= level);
        b.noisy.extend(noisy);
        b.clean.extend(clean);
    }
    b
}

/// Batches `from..` on a background thread, a few ahead, so the trainer never waits.
pub fn prefetch(
    speech: std::sync::Arc<Vec<(String, Vec<f32>)>>,
    noise: std::sync::Arc<Vec<(String, Vec<f32>)>>,
    m: Mixing,
    seed: u64,
    from: u64,
) -> mpsc::Receiver<Batch> {
    let (tx, rx) = mpsc::sync_channel(4);
    std::thread::spawn(move || {
        for i in from.. {
            if tx.send(draw(&speech, &noise, &m, seed, i)).is_err() {
                break;
            }
        }
    });
    rx
}
