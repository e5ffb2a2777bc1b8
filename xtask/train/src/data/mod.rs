//! Training data: audio loaded once (any format `wavecrn_audio` reads, resampled to 16 kHz, mixed to
//! mono), and examples drawn from it on a background thread. Two sources: clean speech mixed
//! with noise on the fly, or fixed noisy/clean recordings matched by name (the VoiceBank+DEMAND
//! layout). Two tasks: denoising, and the paper's restoration of speech from its sign.

use std::path::PathBuf;
use std::sync::{mpsc, Arc};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
pub use wavecrn_audio::pairs::{load_pairs, Recording};
pub use wavecrn_metrics::validation::sign_compress;

pub mod augment;
pub mod pool;
pub use pool::speaker;

/// Named mono signals.
pub type Clips = Vec<(String, Vec<f32>)>;

/// Every usable file of some folders as mono at `rate` Hz, with its name.
pub fn load_folders(dirs: &[PathBuf], rate: u32) -> Result<Clips> {
    let mut out = vec![];
    for dir in dirs {
        out.extend(wavecrn_audio::folder::read_folder_mono(dir, rate)?);
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

/// Where examples come from. Every signal in it is a seamless loop ([`pool`]), so a crop
/// is real audio wherever it starts.
#[derive(Clone)]
pub enum Source {
    /// Clean speech (one loop per speaker), mixed with noise on the fly (denoising) or
    /// compressed (restoration).
    Mixtures {
        speech: Arc<Clips>,
        noise: Arc<Clips>,
    },
    /// Fixed pairs (one joined pair per speaker); restoration uses only their clean side.
    Pairs(Arc<Vec<Recording>>),
}

impl Source {
    /// Speech files and noise files arranged for sampling: each speaker's utterances joined
    /// into one loop, each noise made a loop without a splice.
    pub fn mixtures(speech: Clips, noise: Clips) -> Source {
        Source::Mixtures {
            speech: Arc::new(pool::speaker_loops(&speech)),
            noise: Arc::new(
                noise
                    .into_iter()
                    .map(|(name, n)| {
                        let looped = pool::seamless_loop(&n, pool::FADE);
                        (name, looped)
                    })
                    .collect(),
            ),
        }
    }

    /// Noisy/clean recordings arranged like speech: each speaker's pairs joined (both sides
    /// with the same crossfades, so the noisy side stays the clean side plus its noise) into
    /// one loop.
    pub fn pairs(recordings: Vec<Recording>) -> Source {
        let noisy: Clips = recordings
            .iter()
            .map(|r| (r.name.clone(), r.noisy.clone()))
            .collect();
        let clean: Clips = recordings.into_iter().map(|r| (r.name, r.clean)).collect();
        let joined = pool::speaker_loops(&noisy)
            .into_iter()
            .zip(pool::speaker_loops(&clean))
            .map(|((name, noisy), (_, clean))| Recording { name, noisy, clean })
            .collect();
        Source::Pairs(Arc::new(joined))
    }

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
    /// Augmentations of denoising mixtures.
    pub augment: Augmentation,
}

/// Augmentations of denoising mixtures ([`augment`]), each as the share of examples it
/// applies to (0: off, the default).
#[derive(Clone, Debug, Default)]
pub struct Augmentation {
    /// A random equaliser on the speech (input and target alike: a microphone the model must
    /// not undo) and another on the noise.
    pub eq: f64,
    /// Speech in a synthetic room (RT60 0.2-0.8 s, direct-to-reverberant ratio -3 to 12 dB);
    /// the target keeps the direct sound and the first 50 ms of reflections.
    pub reverb: f64,
    /// A second noise recording under the first, 0-10 dB quieter.
    pub second_noise: f64,
    /// Of the examples whose noise would be a recording: speech-shaped noise made from
    /// another talker instead, stationary or (half of them) with the talker's envelope.
    pub speech_shaped: f64,
    /// Speech played 0.9-1.1 times as fast (tempo and pitch; input and target alike):
    /// voices the training speakers do not have.
    pub speed: f64,
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

/// A window of `len` samples of a loop picked by duration from `count` loops, with some
/// speech in it (a few tries, then whatever came): the loop's index and the window's start.
fn speech_crop<'a>(
    rng: &mut Rng,
    count: usize,
    clip: impl Fn(usize) -> &'a [f32] + Copy,
    len: usize,
) -> (usize, usize) {
    let mut pick = (0, 0);
    for _ in 0..8 {
        let i = pool::pick_by_length(rng, (0..count).map(|i| clip(i).len()));
        let s = clip(i);
        pick = (i, pool::window_start(rng, s.len(), len));
        if power(&pool::wrapped(s, pick.1, len)) > 1e-6 {
            break;
        }
    }
    pick
}

/// Babble: `talkers` other speakers from the training speech at once (never the target's
/// speaker, whose loop is `target`), each scaled to the same power and then by a random
/// -6..+6 dB, as in a room of people talking at different distances.
fn babble(rng: &mut Rng, speech: &Clips, target: usize, talkers: usize, len: usize) -> Vec<f32> {
    let mut out = vec![0f32; len];
    for _ in 0..talkers {
        let pick = other_speaker(rng, speech, target);
        let gain_db = rng.uniform(-6.0, 6.0);
        let Some(j) = pick else { continue };
        let s = &speech[j].1;
        let talk = pool::wrapped(s, pool::window_start(rng, s.len(), len), len);
        let p = power(&talk);
        if p < 1e-9 {
            continue;
        }
        let k = (10f64.powf(gain_db / 20.0) / p.sqrt()) as f32;
        out.iter_mut().zip(&talk).for_each(|(o, v)| *o += k * v);
    }
    out
}

/// Another speaker's loop than `target`'s, picked by duration (a handful of tries covers any
/// realistic folder; none where there is no other speaker).
fn other_speaker(rng: &mut Rng, speech: &Clips, target: usize) -> Option<usize> {
    (0..16)
        .map(|_| pool::pick_by_length(rng, speech.iter().map(|s| s.1.len())))
        .find(|&j| j != target)
}

/// A window of a noise recording, picked by duration; `not` is a recording to avoid (the
/// first noise, when this is a second one under it).
fn noise_recording(
    rng: &mut Rng,
    noise: &Clips,
    len: usize,
    not: Option<usize>,
) -> (usize, Vec<f32>) {
    let mut pick = 0;
    for _ in 0..8 {
        pick = pool::pick_by_length(rng, noise.iter().map(|n| n.1.len()));
        if Some(pick) != not {
            break;
        }
    }
    let n = &noise[pick].1;
    (
        pick,
        pool::wrapped(n, pool::window_start(rng, n.len(), len), len),
    )
}

/// Speech-shaped noise from another talker's crop: stationary, or for half of them modulated
/// by that talker's envelope (as ICRA noise is).
fn synthetic_noise(rng: &mut Rng, speech: &Clips, target: usize, len: usize) -> Option<Vec<f32>> {
    let j = other_speaker(rng, speech, target)?;
    let s = &speech[j].1;
    let talk = pool::wrapped(s, pool::window_start(rng, s.len(), len), len);
    let modulated = rng.uniform(0.0, 1.0) < 0.5;
    let mut out = augment::speech_shaped(rng, &talk);
    if modulated {
        let env = augment::envelope(&talk);
        out.iter_mut().zip(&env).for_each(|(v, e)| *v *= e);
    }
    Some(out)
}

/// One denoising example from clean speech and noise (a recording, or babble made from the
/// other speakers for a `m.babble` share of examples, or noise made from a talker), with the
/// augmentations `m.augment` asks for.
fn mixture(rng: &mut Rng, speech: &Clips, noise: &Clips, m: &Mixing) -> (Vec<f32>, Vec<f32>) {
    let (i, start) = speech_crop(rng, speech.len(), |i| &speech[i].1, m.crop);
    // Each augmentation has its own generator, seeded whatever the shares, so that turning
    // one on leaves the others' draws as they were.
    let (chance, talkers) = (
        rng.uniform(0.0, 1.0),
        m.talkers.0 + rng.below(m.talkers.1 - m.talkers.0 + 1),
    );
    let a = &m.augment;
    let mut eq_rng = Rng(rng.next_u64());
    let mut room_rng = Rng(rng.next_u64());
    let mut second_rng = Rng(rng.next_u64());
    let mut shaped_rng = Rng(rng.next_u64());
    let [eq, room, second, shaped] = [0; 4].map(|_| rng.uniform(0.0, 1.0));
    // Derived, not drawn from `rng`: examples of runs without it stay as they were.
    let mut speed_rng = Rng(shaped_rng.0 ^ 0x5EED_5BEE_D000_0001);

    // The speech, with the second before the crop that a room response reaches back to and
    // that a filter settles in.
    let s = &speech[i].1;
    let context = augment::ROOM_CONTEXT;
    let from = (start as i64 - context as i64).rem_euclid(s.len() as i64) as usize;
    let mut dry = if speed_rng.uniform(0.0, 1.0) < a.speed {
        let factor = augment::random_speed(&mut speed_rng);
        let len = context + m.crop;
        let read = pool::wrapped(s, from, augment::speed_input_len(len, factor));
        augment::change_speed(&read, factor, len)
    } else {
        pool::wrapped(s, from, context + m.crop)
    };
    if eq < a.eq {
        augment::random_eq(&mut eq_rng)
            .iter()
            .for_each(|f| f.apply(&mut dry));
    }
    let (wet, clean) = if room < a.reverb {
        let rt60 = room_rng.uniform(0.2, 0.8);
        let drr_db = room_rng.uniform(-3.0, 12.0);
        augment::reverberate(&dry, &augment::room_response(&mut room_rng, rt60, drr_db))
    } else {
        let crop = dry[context..].to_vec();
        (crop.clone(), crop)
    };

    let synthetic = if chance >= m.babble && shaped < a.speech_shaped {
        synthetic_noise(&mut shaped_rng, speech, i, m.crop)
    } else {
        None
    };
    let mut first = None;
    let mut noise_crop = if chance < m.babble {
        babble(rng, speech, i, talkers, m.crop)
    } else if let Some(n) = synthetic {
        n
    } else {
        let (pick, n) = noise_recording(rng, noise, m.crop, None);
        first = Some(pick);
        n
    };
    if second < a.second_noise {
        let (_, under) = noise_recording(&mut second_rng, noise, m.crop, first);
        let gain_db = second_rng.uniform(-10.0, 0.0);
        let k = (power(&noise_crop) / power(&under).max(1e-12) * 10f64.powf(gain_db / 10.0)).sqrt();
        noise_crop
            .iter_mut()
            .zip(&under)
            .for_each(|(n, u)| *n += k as f32 * u);
    }
    if eq < a.eq {
        // The noise through its own colouring: another source, elsewhere in the room.
        augment::random_eq(&mut eq_rng)
            .iter()
            .for_each(|f| f.apply(&mut noise_crop));
    }
    // The SNR is of the speech as the microphone hears it, reverberation included.
    let snr = rng.uniform(m.snr.0, m.snr.1);
    let k = (power(&wet) / power(&noise_crop).max(1e-12) / 10f64.powf(snr / 10.0)).sqrt() as f32;
    let noisy = wet
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
    // Both draws always happen, so turning clipping on leaves the example otherwise as it was.
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
    let mut batch_rng = Rng(seed ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    let mut b = Batch {
        noisy: Vec::with_capacity(m.batch * m.crop),
        clean: Vec::with_capacity(m.batch * m.crop),
    };
    for _ in 0..m.batch {
        // Each example has a generator of its own, so no setting that changes how many
        // draws one example takes changes the others.
        let mut rng = Rng(batch_rng.next_u64());
        let (mut noisy, mut clean) = match (source, m.task) {
            (Source::Mixtures { speech, noise }, Task::Denoise) => {
                mixture(&mut rng, speech, noise, m)
            }
            (Source::Pairs(pairs), Task::Denoise) => {
                // The clean side picks the window; the noisy side takes the same one.
                let (i, start) = speech_crop(&mut rng, pairs.len(), |i| &pairs[i].clean, m.crop);
                (
                    pool::wrapped(&pairs[i].noisy, start, m.crop),
                    pool::wrapped(&pairs[i].clean, start, m.crop),
                )
            }
            (source, Task::Restore) => {
                let count = source.speech_count();
                let (i, start) = speech_crop(&mut rng, count, |i| source.speech(i), m.crop);
                let mut clean = pool::wrapped(source.speech(i), start, m.crop);
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
            augment: Augmentation::default(),
        }
    }

    fn mixtures() -> Source {
        Source::mixtures(
            vec![("s".into(), tone(4000, 7.0))],
            vec![("n".into(), tone(900, 131.0))],
        )
    }

    /// The mixture's SNR is the one drawn, of the speech as heard (reverberation included),
    /// whatever the augmentations.
    #[test]
    fn mixtures_have_the_snr_they_were_given() {
        let source = mixtures();
        let mut m = mixing(Task::Denoise, 0.0);
        m.crop = 4000;
        for (snr, augment) in [
            (5.0, Augmentation::default()),
            (-5.0, Augmentation::default()),
            (
                10.0,
                Augmentation {
                    eq: 1.0,
                    second_noise: 1.0,
                    ..Augmentation::default()
                },
            ),
            (
                0.0,
                Augmentation {
                    speed: 1.0,
                    ..Augmentation::default()
                },
            ),
        ] {
            m.snr = (snr, snr);
            m.augment = augment;
            let b = draw(&source, &m, 5, 1);
            for e in 0..m.batch {
                let r = e * m.crop..(e + 1) * m.crop;
                let (noisy, clean) = (&b.noisy[r.clone()], &b.clean[r]);
                let noise: Vec<f32> = noisy.iter().zip(clean).map(|(n, c)| n - c).collect();
                let got = 10.0 * (power(clean) / power(&noise)).log10();
                assert!((got - snr).abs() < 0.01, "{got} vs {snr}");
            }
        }
    }

    /// Each augmentation does what it says at the mixture: a room makes the input hold a tail
    /// the target lacks, a second noise brings a second recording's sound, speech-shaped noise
    /// replaces the recording with one shaped like speech, and the equaliser colours the
    /// target (the speech differs from the same example without it).
    #[test]
    fn augmentations_show_in_the_mixtures() {
        let sine = |freq: f64| -> Vec<f32> {
            (0..16_000)
                .map(|t| (2.0 * std::f64::consts::PI * freq * t as f64 / 16_000.0).sin() as f32)
                .collect()
        };
        // Power of `x` at `freq` (one DFT bin), relative to its total.
        let share_at = |x: &[f32], freq: f64| {
            let w = 2.0 * std::f64::consts::PI * freq / 16_000.0;
            let (re, im) = x.iter().enumerate().fold((0.0, 0.0), |(re, im), (t, &v)| {
                (
                    re + v as f64 * (w * t as f64).cos(),
                    im + v as f64 * (w * t as f64).sin(),
                )
            });
            2.0 * (re * re + im * im) / x.len() as f64 / x.len() as f64 / power(x)
        };
        let talker = |phase: f32| -> Vec<f32> {
            (0..20_000)
                .map(|t| {
                    let tf = t as f32;
                    (0.3 * (tf * 0.11 + phase).sin() + 0.2 * (tf * 0.37).sin())
                        * (tf * 0.0015).sin().abs()
                })
                .collect()
        };
        let source = Source::mixtures(
            vec![("A_1".into(), talker(0.0)), ("B_1".into(), talker(1.0))],
            vec![("low".into(), sine(500.0)), ("high".into(), sine(3000.0))],
        );
        let mut m = mixing(Task::Denoise, 0.0);
        m.crop = 8000;
        m.snr = (0.0, 0.0);
        let examples = |m: &Mixing| {
            let b = draw(&source, m, 9, 2);
            (0..m.batch)
                .map(|e| {
                    let r = e * m.crop..(e + 1) * m.crop;
                    let (noisy, clean) = (b.noisy[r.clone()].to_vec(), b.clean[r].to_vec());
                    let noise: Vec<f32> = noisy.iter().zip(&clean).map(|(n, c)| n - c).collect();
                    (noisy, clean, noise)
                })
                .collect::<Vec<_>>()
        };
        let plain = examples(&m);
        for (_, _, noise) in &plain {
            let (low, high) = (share_at(noise, 500.0), share_at(noise, 3000.0));
            assert!((low > 0.9) != (high > 0.9), "one recording: {low} {high}");
        }
        m.augment.second_noise = 1.0;
        for (_, _, noise) in examples(&m) {
            let (low, high) = (share_at(&noise, 500.0), share_at(&noise, 3000.0));
            assert!(
                low > 0.05 && high > 0.05 && low + high > 0.99,
                "{low} {high}"
            );
        }
        m.augment = Augmentation {
            speech_shaped: 1.0,
            ..Augmentation::default()
        };
        for (_, _, noise) in examples(&m) {
            let tones = share_at(&noise, 500.0) + share_at(&noise, 3000.0);
            assert!(
                tones < 0.01,
                "speech-shaped noise holds no recording: {tones}"
            );
        }
        m.augment = Augmentation {
            eq: 1.0,
            ..Augmentation::default()
        };
        for ((_, c0, _), (_, c1, _)) in plain.iter().zip(examples(&m)) {
            let diff: Vec<f32> = c0
                .iter()
                .zip(&c1)
                .map(|(a, b)| a / power(c0).sqrt() as f32 - b / power(&c1).sqrt() as f32)
                .collect();
            assert!(power(&diff) > 1e-3, "the equaliser colours the speech");
        }
        m.augment = Augmentation {
            reverb: 1.0,
            ..Augmentation::default()
        };
        m.snr = (60.0, 60.0);
        for (noisy, clean, _) in examples(&m) {
            // Almost no noise: what the input holds beyond the target is the room's tail.
            let tail: Vec<f32> = noisy.iter().zip(&clean).map(|(n, c)| n - c).collect();
            assert!(
                power(&tail) > 1e-3 * power(&clean),
                "the input carries reverberation"
            );
        }
    }

    /// Speech files shorter than a crop fill it with the same speaker's other utterances,
    /// never with zeros, and a noise shorter than a crop loops without a click: with a ramp
    /// for noise (the worst splice), the noise in every example moves smoothly.
    #[test]
    fn crops_are_real_audio_without_padding_or_splices() {
        let utterance = |phase: f32| -> Vec<f32> {
            (0..300)
                .map(|t| 0.2 + 0.1 * (t as f32 * 0.05 + phase).sin())
                .collect()
        };
        let ramp: Vec<f32> = (0..900).map(|t| t as f32 / 900.0 - 0.5).collect();
        let source = Source::mixtures(
            vec![
                ("S_1".into(), utterance(0.0)),
                ("S_2".into(), utterance(1.0)),
                ("S_3".into(), utterance(2.0)),
            ],
            vec![("n".into(), ramp)],
        );
        let mut m = mixing(Task::Denoise, 0.0);
        m.crop = 2000;
        for index in 0..20 {
            let b = draw(&source, &m, 3, index);
            for e in 0..m.batch {
                let (noisy, clean) = (
                    &b.noisy[e * m.crop..(e + 1) * m.crop],
                    &b.clean[e * m.crop..(e + 1) * m.crop],
                );
                let level = clean.iter().fold(0f32, |a, v| a.max(v.abs()));
                assert!(
                    clean.iter().all(|v| v.abs() > 0.05 * level),
                    "a crop holds padding"
                );
                let noise: Vec<f32> = noisy.iter().zip(clean).map(|(n, c)| n - c).collect();
                let peak = noise.iter().fold(0f32, |a, v| a.max(v.abs()));
                let step = noise
                    .windows(2)
                    .fold(0f32, |a, w| a.max((w[1] - w[0]).abs()));
                assert!(step < 0.05 * peak, "a splice: step {step} of peak {peak}");
            }
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
    /// babble example's noise is that speaker's audio, and the target's own recordings never
    /// appear in it.
    #[test]
    fn babble_comes_from_other_speakers_only() {
        assert_eq!(speaker("103-1240-0000"), "103");
        assert_eq!(speaker("SPEAKER0001_000010011"), "SPEAKER0001");
        assert_eq!(speaker("plain"), "plain");
        let own = tone(4000, 7.0);
        let other: Vec<f32> = (0..4000)
            .map(|t| if t % 2 == 0 { 0.2 } else { -0.2 })
            .collect();
        let source = Source::mixtures(
            vec![
                ("A-1".to_string(), own.clone()),
                ("A-2".to_string(), own),
                ("B-1".to_string(), other),
            ],
            vec![("n".into(), vec![0.0; 900])],
        );
        // Lag-one correlation: near -1 for B's alternating samples, near +1 for A's tone.
        let lag_one = |x: &[f32]| {
            let (mut xy, mut xx) = (0.0f64, 1e-30f64);
            for w in x.windows(2) {
                xy += (w[0] * w[1]) as f64;
                xx += (w[0] * w[0]) as f64;
            }
            xy / xx
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
                if lag_one(clean) < -0.9 {
                    // B's babble comes from A, a smooth tone.
                    assert!(lag_one(&noise) > 0.9, "{}", lag_one(&noise));
                } else {
                    assert!(lag_one(clean) > 0.9);
                    assert!(lag_one(&noise) < -0.9, "A's babble is B's audio alone");
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
        let source = Source::pairs(vec![Recording {
            name: "a".into(),
            noisy,
            clean,
        }]);
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
