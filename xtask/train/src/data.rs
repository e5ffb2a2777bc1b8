//! Training data: audio loaded once (any format the CLI reads, resampled to 16 kHz, mixed to
//! mono), and examples drawn from it on a background thread. Two sources: clean speech mixed
//! with noise on the fly, or fixed noisy/clean recordings matched by name (the VoiceBank+DEMAND
//! layout). Two tasks: denoising, and the paper's restoration of speech from its sign.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
pub use wavecrn_metrics::validation::sign_compress;

/// Named mono signals.
pub type Clips = Vec<(String, Vec<f32>)>;

/// Every usable file of some folders as mono at `rate` Hz, with its name.
pub fn load_folders(dirs: &[PathBuf], rate: u32) -> Result<Clips> {
    let mut out = vec![];
    for dir in dirs {
        out.extend(wavecrn_cli::pipeline::read_folder_mono(dir, rate)?);
    }
    if out.is_empty() {
        bail!("no usable (non-silent) audio in {dirs:?}");
    }
    Ok(out)
}

/// What the network learns to undo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Noisy speech in, clean speech out.
    Denoise,
    /// The sign of clean speech (2-bit compression) in, the speech out.
    Restore,
}

/// A noisy recording and its clean original, the same length.
pub struct Recording {
    pub name: String,
    pub noisy: Vec<f32>,
    pub clean: Vec<f32>,
}

/// Where examples come from.
#[derive(Clone)]
pub enum Source {
    /// Clean speech, mixed with noise on the fly (denoising) or compressed (restoration).
    Mixtures {
        speech: Arc<Clips>,
        noise: Arc<Clips>,
    },
    /// Fixed pairs; restoration uses only their clean side.
    Pairs(Arc<Vec<Recording>>),
}

impl Source {
    /// How many clean recordings there are.
    fn speech_count(&self) -> usize {
        match self {
            Source::Mixtures { speech, .. } => speech.len(),
            Source::Pairs(pairs) => pairs.len(),
        }
    }

    /// Clean recording `i`.
    fn speech(&self, i: usize) -> &[f32] {
        match self {
            Source::Mixtures { speech, .. } => &speech[i].1,
            Source::Pairs(pairs) => &pairs[i].clean,
        }
    }
}

/// Loads `noisy_dir` and `clean_dir` and pairs their files by name.
pub fn load_pairs(noisy_dir: &Path, clean_dir: &Path, rate: u32) -> Result<Vec<Recording>> {
    let read = |dir: &Path| -> Result<BTreeMap<String, Vec<f32>>> {
        Ok(wavecrn_cli::pipeline::read_folder_mono(dir, rate)?
            .into_iter()
            .collect())
    };
    let noisy = read(noisy_dir)?;
    let mut clean = read(clean_dir)?;
    let mut out = vec![];
    for (name, noisy) in noisy {
        let clean = clean.remove(&name).with_context(|| {
            format!(
                "{} has `{name}` but {} has no (non-silent) file of that name",
                noisy_dir.display(),
                clean_dir.display()
            )
        })?;
        let n = noisy.len().min(clean.len());
        if noisy.len().abs_diff(clean.len()) > rate as usize / 10 {
            bail!(
                "`{name}` is {} samples noisy but {} samples clean: not a pair",
                noisy.len(),
                clean.len()
            );
        }
        out.push(Recording {
            name,
            noisy: noisy[..n].to_vec(),
            clean: clean[..n].to_vec(),
        });
    }
    if let Some(name) = clean.keys().next() {
        bail!(
            "{} has `{name}` but {} has no file of that name",
            clean_dir.display(),
            noisy_dir.display()
        );
    }
    if out.is_empty() {
        bail!(
            "no pairs in {} and {}",
            noisy_dir.display(),
            clean_dir.display()
        );
    }
    Ok(out)
}

/// How examples are drawn.
#[derive(Clone, Debug)]
pub struct Mixing {
    pub task: Task,
    /// Samples per example.
    pub crop: usize,
    pub batch: usize,
    /// SNR range in dB, drawn uniformly.
    pub snr: (f64, f64),
    /// Output level range in dB (peak of the mixture), drawn uniformly.
    pub gain_db: (f64, f64),
    /// Share of denoising inputs hard-clipped, as an overdriven recording is.
    pub clip: f64,
    /// Share of denoising examples whose noise is babble of other training speakers.
    pub babble: f64,
    /// How many talkers a babble has, lowest and highest (drawn uniformly).
    pub talkers: (usize, usize),
}

pub use wavecrn_metrics::validation::SplitMix as Rng;

/// One batch: inputs and targets, `batch * crop` samples each.
pub struct Batch {
    pub noisy: Vec<f32>,
    pub clean: Vec<f32>,
}

fn power(x: &[f32]) -> f64 {
    x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64
}

/// `len` samples of `s` from `start`, zero past its end.
fn crop(s: &[f32], start: usize, len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| s.get(start + i).copied().unwrap_or(0.0))
        .collect()
}

/// A crop of a random clip with some speech in it (a few tries, then whatever came).
fn speech_crop<'a>(
    rng: &mut Rng,
    count: usize,
    clip: impl Fn(usize) -> &'a [f32],
    len: usize,
) -> (usize, usize) {
    let mut pick = (0, 0);
    for _ in 0..8 {
        let i = rng.below(count);
        let s = clip(i);
        let start = rng.below(s.len().saturating_sub(len) + 1);
        pick = (i, start);
        if power(&crop(s, start, len)) > 1e-6 {
            break;
        }
    }
    pick
}

/// The speaker of a speech file, from its name: what comes before the first `-` or `_`
/// (LibriSpeech's `103-1240-0000`, speechocean762's `SPEAKER0001_000010011`), or the whole
/// name.
pub fn speaker(name: &str) -> &str {
    name.split(['-', '_']).next().unwrap_or(name)
}

/// `len` samples of `s` from `offset`, wrapping round its end.
fn looped(s: &[f32], offset: usize, len: usize) -> Vec<f32> {
    (0..len).map(|i| s[(offset + i) % s.len()]).collect()
}

/// Babble: `talkers` other speakers from the training speech at once (never the target's
/// speaker, so never its own recording), each scaled to the same power and then by a random
/// -6..+6 dB, as in a room of people talking at different distances.
fn babble(rng: &mut Rng, speech: &Clips, target: usize, talkers: usize, len: usize) -> Vec<f32> {
    let own = speaker(&speech[target].0);
    let mut out = vec![0f32; len];
    for _ in 0..talkers {
        // Another speaker's clip; a handful of tries covers any realistic folder.
        let mut pick = None;
        for _ in 0..16 {
            let j = rng.below(speech.len());
            if speaker(&speech[j].0) != own {
                pick = Some(j);
                break;
            }
        }
        let gain_db = rng.uniform(-6.0, 6.0);
        let Some(j) = pick else { continue };
        let s = &speech[j].1;
        let talk = looped(s, rng.below(s.len()), len);
        let p = power(&talk);
        if p < 1e-9 {
            continue;
        }
        let k = (10f64.powf(gain_db / 20.0) / p.sqrt()) as f32;
        out.iter_mut().zip(&talk).for_each(|(o, v)| *o += k * v);
    }
    out
}

/// One denoising example from clean speech and noise (a recording, or babble made from the
/// other speakers for a `m.babble` share of examples).
fn mixture(rng: &mut Rng, speech: &Clips, noise: &Clips, m: &Mixing) -> (Vec<f32>, Vec<f32>) {
    let (i, start) = speech_crop(rng, speech.len(), |i| &speech[i].1, m.crop);
    let clean = crop(&speech[i].1, start, m.crop);
    // Both draws always happen, so the examples after this one do not depend on `babble`.
    let (chance, talkers) = (
        rng.uniform(0.0, 1.0),
        m.talkers.0 + rng.below(m.talkers.1 - m.talkers.0 + 1),
    );
    let noise_crop = if chance < m.babble {
        babble(rng, speech, i, talkers, m.crop)
    } else {
        let n = &noise[rng.below(noise.len())].1;
        looped(n, rng.below(n.len()), m.crop)
    };
    let snr = rng.uniform(m.snr.0, m.snr.1);
    let k = (power(&clean) / power(&noise_crop).max(1e-12) / 10f64.powf(snr / 10.0)).sqrt() as f32;
    let noisy = clean
        .iter()
        .zip(&noise_crop)
        .map(|(c, v)| c + k * v)
        .collect();
    (noisy, clean)
}

/// Scales an example to a random peak level, then maybe clips its input.
fn level_and_clip(rng: &mut Rng, noisy: &mut [f32], clean: &mut [f32], m: &Mixing) {
    let peak = noisy.iter().fold(1e-9f32, |a, v| a.max(v.abs()));
    let level = 10f64.powf(rng.uniform(m.gain_db.0, m.gain_db.1) / 20.0) as f32 / peak;
    noisy.iter_mut().for_each(|v| *v *= level);
    clean.iter_mut().for_each(|v| *v *= level);
    // Both draws always happen, so the examples after this one do not depend on `clip`.
    let (chance, cut_db) = (rng.uniform(0.0, 1.0), rng.uniform(1.0, 12.0));
    if chance < m.clip {
        // Cut the top 1-12 dB of the input's range; the target stays whole.
        let limit = level * peak * 10f64.powf(-cut_db / 20.0) as f32;
        noisy.iter_mut().for_each(|v| *v = v.clamp(-limit, limit));
    }
}

/// The restoration target's level: its sign-compressed input carries no level, so the
/// target gets a fixed one (RMS -26 dBFS, peak at most -1 dBFS).
fn restore_level(clean: &mut [f32]) {
    let rms = power(clean).sqrt().max(1e-9) as f32;
    let peak = clean.iter().fold(1e-9f32, |a, v| a.max(v.abs()));
    let k = (0.05 / rms).min(0.89 / peak);
    clean.iter_mut().for_each(|v| *v *= k);
}

/// Draws batch number `index` deterministically from `seed`: the same run, resumed, sees the
/// same data.
pub fn draw(source: &Source, m: &Mixing, seed: u64, index: u64) -> Batch {
    let mut rng = Rng(seed ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    let mut b = Batch {
        noisy: Vec::with_capacity(m.batch * m.crop),
        clean: Vec::with_capacity(m.batch * m.crop),
    };
    for _ in 0..m.batch {
        let (mut noisy, mut clean) = match (source, m.task) {
            (Source::Mixtures { speech, noise }, Task::Denoise) => {
                mixture(&mut rng, speech, noise, m)
            }
            (Source::Pairs(pairs), Task::Denoise) => {
                let (i, start) = speech_crop(&mut rng, pairs.len(), |i| &pairs[i].clean, m.crop);
                (
                    crop(&pairs[i].noisy, start, m.crop),
                    crop(&pairs[i].clean, start, m.crop),
                )
            }
            (source, Task::Restore) => {
                let count = source.speech_count();
                let (i, start) = speech_crop(&mut rng, count, |i| source.speech(i), m.crop);
                let mut clean = crop(source.speech(i), start, m.crop);
                restore_level(&mut clean);
                (sign_compress(&clean), clean)
            }
        };
        if m.task == Task::Denoise {
            level_and_clip(&mut rng, &mut noisy, &mut clean, m);
        }
        b.noisy.extend(noisy);
        b.clean.extend(clean);
    }
    b
}

/// Batches `from..` on a background thread, a few ahead, so the trainer never waits.
pub fn prefetch(source: Source, m: Mixing, seed: u64, from: u64) -> mpsc::Receiver<Batch> {
    let (tx, rx) = mpsc::sync_channel(4);
    std::thread::spawn(move || {
        for i in from.. {
            if tx.send(draw(&source, &m, seed, i)).is_err() {
                break;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(len: usize, freq: f32) -> Vec<f32> {
        (0..len)
            .map(|t| 0.3 * (t as f32 * freq * 0.001).sin())
            .collect()
    }

    fn mixing(task: Task, clip: f64) -> Mixing {
        Mixing {
            task,
            crop: 480,
            batch: 4,
            snr: (0.0, 15.0),
            gain_db: (-25.0, -1.0),
            clip,
            babble: 0.0,
            talkers: (1, 6),
        }
    }

    fn mixtures() -> Source {
        Source::Mixtures {
            speech: Arc::new(vec![("s".into(), tone(4000, 7.0))]),
            noise: Arc::new(vec![("n".into(), tone(900, 131.0))]),
        }
    }

    #[test]
    fn restoration_inputs_are_the_targets_signs() {
        let b = draw(&mixtures(), &mixing(Task::Restore, 0.0), 1, 3);
        assert_eq!(b.noisy, sign_compress(&b.clean));
        assert!(b.noisy.contains(&1.0) && b.noisy.contains(&-1.0));
        let rms = power(&b.clean[..480]).sqrt();
        assert!((rms - 0.05).abs() < 1e-3 || b.clean[..480].iter().any(|v| v.abs() > 0.88));
    }

    #[test]
    fn clipping_cuts_the_input_but_not_the_target() {
        let (plain, clipped) = (
            draw(&mixtures(), &mixing(Task::Denoise, 0.0), 1, 3),
            draw(&mixtures(), &mixing(Task::Denoise, 1.0), 1, 3),
        );
        assert_eq!(plain.clean, clipped.clean);
        for i in 0..4 {
            let peak = |x: &[f32]| {
                x[i * 480..(i + 1) * 480]
                    .iter()
                    .fold(0f32, |a, v| a.max(v.abs()))
            };
            assert!(peak(&clipped.noisy) < 0.9 * peak(&plain.noisy));
            let flat = clipped.noisy[i * 480..(i + 1) * 480]
                .iter()
                .filter(|v| v.abs() == peak(&clipped.noisy))
                .count();
            assert!(flat > 1, "a clipped input has flat tops");
        }
    }

    /// Babble is made of other speakers only: with one speaker besides the target's, every
    /// babble example's noise is that speaker's audio (its samples, scaled), and the target's
    /// own recording never appears in it.
    #[test]
    fn babble_comes_from_other_speakers_only() {
        assert_eq!(speaker("103-1240-0000"), "103");
        assert_eq!(speaker("SPEAKER0001_000010011"), "SPEAKER0001");
        assert_eq!(speaker("plain"), "plain");
        let own = tone(4000, 7.0);
        let other: Vec<f32> = (0..4000)
            .map(|t| if t % 2 == 0 { 0.2 } else { -0.2 })
            .collect();
        let speech = Arc::new(vec![
            ("A-1".to_string(), own.clone()),
            ("A-2".to_string(), own),
            ("B-1".to_string(), other),
        ]);
        let source = Source::Mixtures {
            speech,
            noise: Arc::new(vec![("n".into(), vec![0.0; 900])]),
        };
        let mut m = mixing(Task::Denoise, 0.0);
        m.babble = 1.0;
        m.talkers = (1, 3);
        let mut checked = 0;
        for index in 0..40 {
            let b = draw(&source, &m, 7, index);
            for e in 0..4 {
                let (noisy, clean) = (
                    &b.noisy[e * 480..(e + 1) * 480],
                    &b.clean[e * 480..(e + 1) * 480],
                );
                let noise: Vec<f32> = noisy.iter().zip(clean).map(|(n, c)| n - c).collect();
                let is_alternating = noise
                    .windows(2)
                    .all(|w| (w[0] + w[1]).abs() <= 1e-5 * w[0].abs().max(1e-3));
                let target_is_b = clean.windows(2).all(|w| (w[0] + w[1]).abs() < 1e-6);
                if target_is_b {
                    // B's babble comes from A, a smooth tone, never alternating samples.
                    assert!(!is_alternating);
                } else {
                    assert!(is_alternating, "A's babble is B's audio alone");
                    checked += 1;
                }
                assert!(noise.iter().any(|v| v.abs() > 1e-4), "babble is not silent");
            }
        }
        assert!(checked > 20);
    }

    #[test]
    fn pairs_give_aligned_crops_of_the_same_recording() {
        let clean = tone(3000, 5.0);
        let noisy: Vec<f32> = clean.iter().map(|v| 2.0 * v).collect();
        let source = Source::Pairs(Arc::new(vec![Recording {
            name: "a".into(),
            noisy,
            clean,
        }]));
        let b = draw(&source, &mixing(Task::Denoise, 0.0), 2, 0);
        // Same offset in both: the input is exactly twice the target, sample for sample.
        for (n, c) in b.noisy.iter().zip(&b.clean) {
            assert!(
                (n - 2.0 * c).abs() <= 1e-6 * n.abs().max(1e-3),
                "{n} vs {c}"
            );
        }
        assert!(b.clean.iter().any(|v| v.abs() > 1e-3));
    }
}
