//! Augmentation: variety that the few hours of real audio in `../shared/data` lack, made
//! from that audio. Microphones and rooms (random equalisation, synthetic room responses)
//! and noises built from the training speech (stationary speech-shaped noise, and the same
//! modulated by a talker's envelope, as ICRA noise is). Every draw comes from the caller's
//! generator, so an example is a function of the run's data seed and its index.

use std::f64::consts::PI;

use rustfft::num_complex::Complex32;
use rustfft::FftPlanner;

use super::Rng;

/// Sample rate everything here is designed for.
const RATE: f64 = 16_000.0;

/// A second-order IIR section (the Audio EQ Cookbook's forms), direct form I.
#[derive(Clone, Copy, Debug)]
pub struct Biquad {
    b: [f64; 3],
    a: [f64; 2],
}

impl Biquad {
    fn normalised(b: [f64; 3], a: [f64; 3]) -> Biquad {
        Biquad {
            b: [b[0] / a[0], b[1] / a[0], b[2] / a[0]],
            a: [a[1] / a[0], a[2] / a[0]],
        }
    }

    /// A bell of `gain_db` at `freq` Hz, bandwidth set by `q`.
    pub fn peaking(freq: f64, gain_db: f64, q: f64) -> Biquad {
        let a = 10f64.powf(gain_db / 40.0);
        let w = 2.0 * PI * freq / RATE;
        let alpha = w.sin() / (2.0 * q);
        Biquad::normalised(
            [1.0 + alpha * a, -2.0 * w.cos(), 1.0 - alpha * a],
            [1.0 + alpha / a, -2.0 * w.cos(), 1.0 - alpha / a],
        )
    }

    /// A shelf of `gain_db` below (`high` false) or above (`high` true) `freq` Hz, slope 1.
    pub fn shelf(freq: f64, gain_db: f64, high: bool) -> Biquad {
        let a = 10f64.powf(gain_db / 40.0);
        let w = 2.0 * PI * freq / RATE;
        let (cos, alpha) = (w.cos(), w.sin() / 2.0 * 2f64.sqrt());
        let root = 2.0 * a.sqrt() * alpha;
        // The high shelf is the low shelf with the sign of the cosine terms turned.
        let s = if high { -1.0 } else { 1.0 };
        let b = [
            a * ((a + 1.0) - s * (a - 1.0) * cos + root),
            s * 2.0 * a * ((a - 1.0) - s * (a + 1.0) * cos),
            a * ((a + 1.0) - s * (a - 1.0) * cos - root),
        ];
        let den = [
            (a + 1.0) + s * (a - 1.0) * cos + root,
            -s * 2.0 * ((a - 1.0) + s * (a + 1.0) * cos),
            (a + 1.0) + s * (a - 1.0) * cos - root,
        ];
        Biquad::normalised(b, den)
    }

    /// The gain at `freq` Hz, in dB.
    pub fn response_db(&self, freq: f64) -> f64 {
        let w = 2.0 * PI * freq / RATE;
        let z = |k: f64| (-(k * w)).sin_cos();
        let eval = |c: [f64; 3]| {
            let (s1, c1) = z(1.0);
            let (s2, c2) = z(2.0);
            let re = c[0] + c[1] * c1 + c[2] * c2;
            let im = c[1] * s1 + c[2] * s2;
            (re * re + im * im).sqrt()
        };
        20.0 * (eval(self.b) / eval([1.0, self.a[0], self.a[1]])).log10()
    }

    /// Filters `x` in place, from rest.
    pub fn apply(&self, x: &mut [f32]) {
        let (mut x1, mut x2, mut y1, mut y2) = (0.0f64, 0.0, 0.0, 0.0);
        for v in x.iter_mut() {
            let x0 = *v as f64;
            let y0 =
                self.b[0] * x0 + self.b[1] * x1 + self.b[2] * x2 - self.a[0] * y1 - self.a[1] * y2;
            (x2, x1, y2, y1) = (x1, x0, y1, y0);
            *v = y0 as f32;
        }
    }
}

/// Most an equaliser band boosts or cuts, in dB.
pub const EQ_RANGE_DB: f64 = 6.0;

/// A random microphone-and-channel colouring: a low shelf (100-400 Hz), a high shelf
/// (2-6 kHz) and one bell (300 Hz-5 kHz, Q 0.5-2), each within +-[`EQ_RANGE_DB`]. Always
/// draws the same number of values.
pub fn random_eq(rng: &mut Rng) -> [Biquad; 3] {
    let mut gain = || rng.uniform(-EQ_RANGE_DB, EQ_RANGE_DB);
    let (low, high, bell) = (gain(), gain(), gain());
    let low_freq = rng.uniform(100.0, 400.0);
    let high_freq = rng.uniform(2000.0, 6000.0);
    let bell_freq = 300.0 * (5000f64 / 300.0).powf(rng.uniform(0.0, 1.0));
    let q = rng.uniform(0.5, 2.0);
    [
        Biquad::shelf(low_freq, low, false),
        Biquad::shelf(high_freq, high, true),
        Biquad::peaking(bell_freq, bell, q),
    ]
}

/// A standard normal value (Box-Muller).
fn gaussian(rng: &mut Rng) -> f64 {
    let u = rng.uniform(f64::MIN_POSITIVE, 1.0);
    let v = rng.uniform(0.0, 1.0);
    (-2.0 * u.ln()).sqrt() * (2.0 * PI * v).cos()
}

/// Longest synthetic room response, in samples (1 s): a crop needs this much speech before
/// it to carry the reverberation of what came before.
pub const ROOM_CONTEXT: usize = 16_000;
/// The end of the early part of a room response (50 ms), which the target keeps: direct
/// sound and early reflections, as a listener in the room hears the talker.
pub const EARLY: usize = 800;

/// A synthetic room response: the direct sound (1 at 0), then after a 1-8 ms gap a
/// reverberant tail of Gaussian noise decaying by 60 dB in `rt60` seconds, scaled so that the
/// direct-to-reverberant energy ratio is `drr_db`. At most [`ROOM_CONTEXT`] samples long.
pub fn room_response(rng: &mut Rng, rt60: f64, drr_db: f64) -> Vec<f32> {
    let len = ((1.2 * rt60 * RATE) as usize).clamp(EARLY + 1, ROOM_CONTEXT);
    let gap = 16 + rng.below(112);
    let decay = 3.0 * 10f64.ln() / (rt60 * RATE);
    let mut h: Vec<f64> = (0..len)
        .map(|n| {
            let g = gaussian(rng);
            if n < gap {
                0.0
            } else {
                g * (-decay * n as f64).exp()
            }
        })
        .collect();
    let tail: f64 = h.iter().map(|v| v * v).sum();
    let k = (10f64.powf(-drr_db / 10.0) / tail.max(1e-30)).sqrt();
    h.iter_mut().for_each(|v| *v *= k);
    h[0] = 1.0;
    h.into_iter().map(|v| v as f32).collect()
}

/// The room's reverberation time as measured from a response: Schroeder's backward integral,
/// its slope from -5 to -25 dB, extrapolated to 60 dB (T20).
pub fn measured_rt60(h: &[f32]) -> f64 {
    let mut energy: Vec<f64> = h[1..].iter().map(|&v| (v as f64).powi(2)).collect();
    for i in (0..energy.len().saturating_sub(1)).rev() {
        energy[i] += energy[i + 1];
    }
    let total = energy[0];
    let db: Vec<f64> = energy.iter().map(|e| 10.0 * (e / total).log10()).collect();
    let at = |level: f64| db.iter().position(|&d| d <= level).unwrap_or(db.len()) as f64;
    (at(-25.0) - at(-5.0)) / RATE * 3.0
}

thread_local! {
    /// One planner per data thread: rustfft keeps the plans it has made, so every example
    /// after the first reuses them instead of planning its FFT sizes again.
    static PLANNER: std::cell::RefCell<FftPlanner<f32>> = std::cell::RefCell::new(FftPlanner::new());
}

/// A forward (`inverse` false) or inverse FFT of `n` points, from this thread's planner.
fn fft(n: usize, inverse: bool) -> std::sync::Arc<dyn rustfft::Fft<f32>> {
    PLANNER.with(|p| {
        let mut p = p.borrow_mut();
        if inverse {
            p.plan_fft_inverse(n)
        } else {
            p.plan_fft_forward(n)
        }
    })
}

/// `x` convolved with each of `filters`, the first `x.len()` samples of each (FFT
/// convolution; `x`'s spectrum is taken once for all of them).
pub fn convolve_each(x: &[f32], filters: &[&[f32]]) -> Vec<Vec<f32>> {
    let longest = filters.iter().map(|h| h.len()).max().unwrap_or(0);
    let n = (x.len() + longest).next_power_of_two();
    let (forward, inverse) = (fft(n, false), fft(n, true));
    let spectrum = |s: &[f32]| {
        let mut buf: Vec<Complex32> = s.iter().map(|&v| Complex32::new(v, 0.0)).collect();
        buf.resize(n, Complex32::new(0.0, 0.0));
        forward.process(&mut buf);
        buf
    };
    let input = spectrum(x);
    let scale = 1.0 / n as f32;
    filters
        .iter()
        .map(|h| {
            let mut a = spectrum(h);
            a.iter_mut().zip(&input).for_each(|(a, b)| *a *= b);
            inverse.process(&mut a);
            a[..x.len()].iter().map(|c| c.re * scale).collect()
        })
        .collect()
}

/// `x` convolved with `h`, the first `x.len()` samples (FFT convolution).
pub fn convolve(x: &[f32], h: &[f32]) -> Vec<f32> {
    convolve_each(x, &[h])
        .pop()
        .expect("one filter, one result")
}

/// Speech in a room: `dry` (with [`ROOM_CONTEXT`] samples before the crop it ends with)
/// through the response `h`. Returns the crop as the microphone hears it (the whole
/// response) and as the target keeps it (the first [`EARLY`] samples of the response).
pub fn reverberate(dry: &[f32], h: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let [wet, early]: [Vec<f32>; 2] = convolve_each(dry, &[h, &h[..EARLY.min(h.len())]])
        .try_into()
        .expect("two filters, two results");
    (wet[ROOM_CONTEXT..].to_vec(), early[ROOM_CONTEXT..].to_vec())
}

/// Stationary noise with the long-term spectrum of `speech`: its spectrum with every phase
/// drawn at random (a speech-shaped noise, as made for hearing tests), the same length.
pub fn speech_shaped(rng: &mut Rng, speech: &[f32]) -> Vec<f32> {
    let n = speech.len();
    let mut buf: Vec<Complex32> = speech.iter().map(|&v| Complex32::new(v, 0.0)).collect();
    fft(n, false).process(&mut buf);
    // Random phases with Hermitian symmetry, so the result is real.
    for k in 1..n.div_ceil(2) {
        let phase = rng.uniform(0.0, 2.0 * PI) as f32;
        let v = Complex32::from_polar(buf[k].norm(), phase);
        buf[k] = v;
        buf[n - k] = v.conj();
    }
    buf[0] = Complex32::new(0.0, 0.0);
    if n.is_multiple_of(2) {
        buf[n / 2] = Complex32::new(buf[n / 2].norm(), 0.0);
    }
    fft(n, true).process(&mut buf);
    buf.iter().map(|c| c.re / n as f32).collect()
}

/// The amplitude envelope of `x`: RMS over 20 ms frames, linearly interpolated between frame
/// centres, normalised to a mean square of one.
pub fn envelope(x: &[f32]) -> Vec<f32> {
    const FRAME: usize = 320;
    let frames: Vec<f32> = x
        .chunks(FRAME)
        .map(|c| (c.iter().map(|v| v * v).sum::<f32>() / c.len() as f32).sqrt())
        .collect();
    let centre = |i: usize| (i * FRAME + FRAME / 2) as f32;
    let mut out: Vec<f32> = (0..x.len())
        .map(|t| {
            let pos = (t as f32 - FRAME as f32 / 2.0) / FRAME as f32;
            let i = (pos.floor().max(0.0) as usize).min(frames.len() - 1);
            let j = (i + 1).min(frames.len() - 1);
            let w = ((t as f32 - centre(i)) / FRAME as f32).clamp(0.0, 1.0);
            frames[i] * (1.0 - w) + frames[j] * w
        })
        .collect();
    let mean_square = out.iter().map(|v| v * v).sum::<f32>() / out.len().max(1) as f32;
    let k = 1.0 / mean_square.sqrt().max(1e-12);
    out.iter_mut().for_each(|v| *v *= k);
    out
}

/// Fastest and slowest speaking rate [`change_speed`] makes, as a factor: tempo and pitch
/// together, as a tape played off speed (vocal tracts a little longer or shorter than the
/// training speakers').
pub const SPEED_RANGE: (f64, f64) = (0.9, 1.1);

/// Input samples past the last one [`change_speed`] returns, so that the converter's filter
/// ends on real audio there, not on the silence it is flushed with.
const SPEED_MARGIN: usize = 512;

/// A speed factor in [`SPEED_RANGE`], in whole percent: the converter's two rates then share
/// a large divisor (16 kHz against 14.4-17.6 kHz in 160 Hz steps), which keeps its blocks
/// short.
pub fn random_speed(rng: &mut Rng) -> f64 {
    (rng.uniform(SPEED_RANGE.0, SPEED_RANGE.1) * 100.0).round() / 100.0
}

/// How many input samples [`change_speed`] reads to give `len` samples at `factor`.
pub fn speed_input_len(len: usize, factor: f64) -> usize {
    (len as f64 * factor).ceil() as usize + SPEED_MARGIN
}

/// The first `len` samples of `x` played `factor` times as fast (pitch up by the same
/// factor): `x` taken as sampled at `factor` times the rate and converted back by the
/// engine's file converter, whose filter follows the lower of the two rates, so a faster
/// playback does not fold the top octave down. `x` holds [`speed_input_len`] samples.
pub fn change_speed(x: &[f32], factor: f64, len: usize) -> Vec<f32> {
    let from = (RATE * factor).round();
    let mut converter = wavecrn_engine::resample::StreamResampler::new(from, RATE, 1)
        .expect("two positive rates convert");
    let mut out = vec![Vec::with_capacity(len + SPEED_MARGIN)];
    converter
        .process(&[x], &mut out)
        .and_then(|()| converter.finish(&mut out))
        .expect("one channel in, one out");
    let mut out = out.pop().expect("one channel");
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, len: usize) -> Vec<f32> {
        (0..len)
            .map(|t| (2.0 * PI * freq * t as f64 / RATE).sin() as f32)
            .collect()
    }

    /// A sine played 1.1 and 0.9 times as fast comes out at 1.1 and 0.9 times its frequency
    /// and its level; a tone near the top of the band, played faster, is filtered out rather
    /// than folded down.
    #[test]
    fn speed_changes_move_a_tone_by_the_factor() {
        let len = 8000;
        for factor in [SPEED_RANGE.0, 1.0, SPEED_RANGE.1] {
            let input = sine(1000.0, speed_input_len(len, factor));
            let out = change_speed(&input, factor, len);
            let inner = &out[100..len - 100];
            let at = |f: f64| {
                let (mut re, mut im) = (0.0, 0.0);
                for (t, v) in inner.iter().enumerate() {
                    let phase = 2.0 * PI * f * (t + 100) as f64 / RATE;
                    re += *v as f64 * phase.cos();
                    im += *v as f64 * phase.sin();
                }
                2.0 * (re * re + im * im).sqrt() / inner.len() as f64
            };
            let moved = at(1000.0 * factor);
            assert!((moved - 1.0).abs() < 0.02, "{factor}: amplitude {moved}");
            if factor != 1.0 {
                assert!(at(1000.0) < 0.02, "{factor}: the old tone is left");
            }
        }
        let high = sine(7800.0, speed_input_len(len, 1.1));
        let out = change_speed(&high, 1.1, len);
        let rms =
            (out[100..len - 100].iter().map(|v| v * v).sum::<f32>() / (len - 200) as f32).sqrt();
        assert!(rms < 0.05, "7.8 kHz at 1.1x folds back at rms {rms}");
    }

    fn rms(x: &[f32]) -> f64 {
        (x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    /// Each filter does to a sine what its response says, the bell reaches its gain at its
    /// centre, and the shelves reach theirs far from their corner.
    #[test]
    fn the_equaliser_has_the_response_it_was_given() {
        let filters = [
            Biquad::peaking(1000.0, 6.0, 1.0),
            Biquad::peaking(2500.0, -5.0, 0.7),
            Biquad::shelf(200.0, 4.0, false),
            Biquad::shelf(4000.0, -6.0, true),
        ];
        assert!((filters[0].response_db(1000.0) - 6.0).abs() < 1e-6);
        assert!((filters[1].response_db(2500.0) + 5.0).abs() < 1e-6);
        assert!((filters[2].response_db(20.0) - 4.0).abs() < 0.2);
        assert!(filters[2].response_db(5000.0).abs() < 0.1);
        assert!((filters[3].response_db(7800.0) + 6.0).abs() < 0.3);
        assert!(filters[3].response_db(100.0).abs() < 0.1);
        for f in filters {
            for freq in [150.0, 700.0, 1000.0, 2500.0, 6000.0] {
                let mut x = sine(freq, 16_000);
                f.apply(&mut x);
                let got = 20.0 * (rms(&x[8000..]) / rms(&sine(freq, 16_000)[8000..])).log10();
                assert!(
                    (got - f.response_db(freq)).abs() < 0.05,
                    "{freq} Hz: {got} vs {}",
                    f.response_db(freq)
                );
            }
        }
        // A random equaliser stays within its range at every frequency.
        let mut rng = Rng(4);
        for _ in 0..50 {
            let eq = random_eq(&mut rng);
            for freq in [50.0, 300.0, 1000.0, 3000.0, 7000.0] {
                let total: f64 = eq.iter().map(|f| f.response_db(freq)).sum();
                assert!(total.abs() <= 3.0 * EQ_RANGE_DB + 1e-9, "{total}");
            }
        }
    }

    /// A synthetic room decays as fast as it was asked to, and has the asked-for
    /// direct-to-reverberant ratio.
    #[test]
    fn a_room_response_has_its_decay_time_and_direct_ratio() {
        let mut rng = Rng(11);
        for (rt60, drr) in [(0.3, 0.0), (0.5, 6.0), (0.8, -3.0)] {
            let h = room_response(&mut rng, rt60, drr);
            let measured = measured_rt60(&h);
            assert!(
                (measured - rt60).abs() < 0.1 * rt60,
                "asked {rt60}, measured {measured}"
            );
            let tail: f64 = h[1..].iter().map(|&v| (v as f64).powi(2)).sum();
            assert!((10.0 * (1.0 / tail).log10() - drr).abs() < 1e-3);
            assert!(h.len() <= ROOM_CONTEXT);
        }
    }

    /// The FFT convolution equals the direct sum, and the target part of reverberated speech
    /// is the same speech through the response's early part only.
    #[test]
    fn reverberation_convolves_and_keeps_the_early_part_as_target() {
        let mut rng = Rng(2);
        let x: Vec<f32> = (0..3000).map(|_| gaussian(&mut rng) as f32).collect();
        let h: Vec<f32> = (0..100).map(|_| gaussian(&mut rng) as f32).collect();
        let fast = convolve(&x, &h);
        for t in [0, 50, 99, 1234, 2999] {
            let direct: f32 = (0..=t.min(99)).map(|k| h[k] * x[t - k]).sum();
            assert!(
                (fast[t] - direct).abs() < 1e-3,
                "{t}: {} vs {direct}",
                fast[t]
            );
        }
        let room = room_response(&mut rng, 0.8, 0.0);
        let dry: Vec<f32> = (0..ROOM_CONTEXT + 4000)
            .map(|_| gaussian(&mut rng) as f32)
            .collect();
        let (wet, early) = reverberate(&dry, &room);
        assert_eq!((wet.len(), early.len()), (4000, 4000));
        let want = convolve(&dry, &room[..EARLY]);
        for t in [0, 1000, 3999] {
            assert!((early[t] - want[ROOM_CONTEXT + t]).abs() < 1e-3);
        }
        // The tail adds energy: the microphone hears more than the target.
        assert!(rms(&wet) > 1.05 * rms(&early));
    }

    /// Speech-shaped noise has the long-term spectrum of its source (octave bands within
    /// 1 dB) and no envelope of its own; the envelope follows its signal's level.
    #[test]
    fn speech_shaped_noise_keeps_the_spectrum_and_loses_the_envelope() {
        let mut rng = Rng(6);
        // A "talker": noise through a 500 Hz resonance, in 4 Hz syllables.
        let mut talker: Vec<f32> = (0..32_000).map(|_| gaussian(&mut rng) as f32).collect();
        Biquad::peaking(500.0, 15.0, 2.0).apply(&mut talker);
        for (t, v) in talker.iter_mut().enumerate() {
            *v *= (2.0 * PI * 4.0 * t as f64 / RATE).sin().max(0.0) as f32;
        }
        let noise = speech_shaped(&mut rng, &talker);
        assert_eq!(noise.len(), talker.len());
        let band = |x: &[f32], lo: f64, hi: f64| {
            let mut planner = FftPlanner::<f32>::new();
            let mut buf: Vec<Complex32> = x.iter().map(|&v| Complex32::new(v, 0.0)).collect();
            planner.plan_fft_forward(x.len()).process(&mut buf);
            let (a, b) = (
                (lo / RATE * x.len() as f64) as usize,
                (hi / RATE * x.len() as f64) as usize,
            );
            10.0 * (buf[a..b].iter().map(|c| c.norm_sqr() as f64).sum::<f64>()).log10()
        };
        for (lo, hi) in [(300.0, 700.0), (1500.0, 2500.0)] {
            let d = band(&noise, lo, hi) - band(&talker, lo, hi);
            assert!(d.abs() < 1.0, "{lo}-{hi} Hz: {d} dB");
        }
        let spread = |x: &[f32]| {
            let e = envelope(x);
            let mean = e.iter().sum::<f32>() / e.len() as f32;
            (e.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / e.len() as f32).sqrt() / mean
        };
        assert!(spread(&talker) > 0.5, "{}", spread(&talker));
        assert!(spread(&noise) < 0.25, "{}", spread(&noise));
        // Modulating by the talker's envelope brings the syllables back.
        let env = envelope(&talker);
        let modulated: Vec<f32> = noise.iter().zip(&env).map(|(n, e)| n * e).collect();
        assert!(spread(&modulated) > 0.5);
    }
}
