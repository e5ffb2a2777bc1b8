//! Short-time objective intelligibility (Taal et al., 2011) and its extended form (Jensen
//! and Taal, 2016), as pystoi computes them: resampling to 10 kHz, removal of frames more
//! than 40 dB below the loudest, 15 one-third-octave bands from 150 Hz, 384 ms segments.

use rustfft::{num_complex::Complex, FftPlanner};

use crate::{check, MetricError};

const FS: u32 = 10_000;
const FRAME: usize = 256;
const NFFT: usize = 512;
const BANDS: usize = 15;
const MIN_FREQ: f64 = 150.0;
/// Frames per segment (384 ms).
const SEGMENT: usize = 30;
/// Lower signal-to-distortion bound, dB.
const BETA: f64 = -15.0;
const DYN_RANGE: f64 = 40.0;
const EPS: f64 = f64::EPSILON;

/// STOI, in [0, 1] (about). `rate` is the signals' sample rate.
pub fn stoi(reference: &[f32], test: &[f32], rate: u32) -> Result<f64, MetricError> {
    check(reference, test)?;
    let Some((x, y)) = segments(reference, test, rate) else {
        return Ok(1e-5);
    };
    let clip = 10f64.powf(-BETA / 20.0);
    let mut total = 0.0;
    for (xs, ys) in x.iter().zip(&y) {
        for band in 0..BANDS {
            let xr = &xs[band];
            let yr = &ys[band];
            let norm = (norm(xr) / (norm(yr) + EPS)).max(0.0);
            let mut yp: Vec<f64> = yr
                .iter()
                .zip(xr)
                .map(|(&y, &x)| (y * norm).min(x * (1.0 + clip)))
                .collect();
            let mut xc = xr.clone();
            center_and_normalise(&mut yp);
            center_and_normalise(&mut xc);
            total += yp.iter().zip(&xc).map(|(a, b)| a * b).sum::<f64>();
        }
    }
    Ok(total / (x.len() * BANDS) as f64)
}

/// Extended STOI, in [0, 1] (about).
pub fn estoi(reference: &[f32], test: &[f32], rate: u32) -> Result<f64, MetricError> {
    check(reference, test)?;
    let Some((x, y)) = segments(reference, test, rate) else {
        return Ok(1e-5);
    };
    let mut total = 0.0;
    for (xs, ys) in x.iter().zip(&y) {
        let xn = row_col_normalise(xs);
        let yn = row_col_normalise(ys);
        let s: f64 = xn
            .iter()
            .flatten()
            .zip(yn.iter().flatten())
            .map(|(a, b)| a * b)
            .sum();
        total += s / SEGMENT as f64;
    }
    Ok(total / x.len() as f64)
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a).sum::<f64>().sqrt()
}

fn center_and_normalise(v: &mut [f64]) {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    v.iter_mut().for_each(|a| *a -= mean);
    let n = norm(v) + EPS;
    v.iter_mut().for_each(|a| *a /= n);
}

/// Rows (bands over time) then columns (each frame across bands) to zero mean, unit norm.
fn row_col_normalise(seg: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let mut m: Vec<Vec<f64>> = seg.to_vec();
    for row in &mut m {
        let mean = row.iter().sum::<f64>() / row.len() as f64;
        row.iter_mut().for_each(|a| *a -= mean);
        let n = norm(row);
        row.iter_mut().for_each(|a| *a /= n);
    }
    for t in 0..SEGMENT {
        let mean = m.iter().map(|r| r[t]).sum::<f64>() / BANDS as f64;
        m.iter_mut().for_each(|r| r[t] -= mean);
        let n = m.iter().map(|r| r[t] * r[t]).sum::<f64>().sqrt();
        m.iter_mut().for_each(|r| r[t] /= n);
    }
    m
}

/// A segment: [band][frame] one-third-octave magnitudes.
type Segment = Vec<Vec<f64>>;

/// Resampled, silence-removed one-third-octave envelopes cut into overlapping segments, or
/// `None` when fewer than one segment's worth of frames remain.
fn segments(reference: &[f32], test: &[f32], rate: u32) -> Option<(Vec<Segment>, Vec<Segment>)> {
    let to64 = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
    let (mut x, mut y) = (to64(reference), to64(test));
    if rate != FS {
        x = resample(&x, FS, rate);
        y = resample(&y, FS, rate);
    }
    let (x, y) = remove_silent_frames(&x, &y);
    let obm = third_octave_matrix();
    let (xt, yt) = (octave_bands(&x, &obm), octave_bands(&y, &obm));
    let frames = xt.first().map_or(0, Vec::len);
    if frames < SEGMENT {
        return None;
    }
    let cut = |t: &[Vec<f64>], m: usize| -> Segment {
        t.iter().map(|band| band[m - SEGMENT..m].to_vec()).collect()
    };
    Some((
        (SEGMENT..=frames).map(|m| cut(&xt, m)).collect(),
        (SEGMENT..=frames).map(|m| cut(&yt, m)).collect(),
    ))
}

/// MATLAB's `hanning(n)`: a Hann window without its zero end points.
fn hanning(n: usize) -> Vec<f64> {
    (1..=n)
        .map(|k| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * k as f64 / (n + 1) as f64).cos())
        .collect()
}

fn remove_silent_frames(x: &[f64], y: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let hop = FRAME / 2;
    let w = hanning(FRAME);
    let starts: Vec<usize> = if x.len() >= FRAME {
        (0..=x.len() - FRAME).step_by(hop).collect()
    } else {
        vec![]
    };
    let frame = |s: &[f64], i: usize| -> Vec<f64> {
        w.iter().zip(&s[i..i + FRAME]).map(|(a, b)| a * b).collect()
    };
    let energies: Vec<f64> = starts
        .iter()
        .map(|&i| 20.0 * (norm(&frame(x, i)) + EPS).log10())
        .collect();
    let max = energies.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let kept: Vec<usize> = starts
        .iter()
        .zip(&energies)
        .filter(|(_, &e)| max - DYN_RANGE - e < 0.0)
        .map(|(&i, _)| i)
        .collect();
    let overlap_add = |s: &[f64]| {
        let len = if kept.is_empty() {
            0
        } else {
            (kept.len() - 1) * hop + FRAME
        };
        let mut out = vec![0.0; len];
        for (n, &i) in kept.iter().enumerate() {
            for (o, v) in out[n * hop..n * hop + FRAME].iter_mut().zip(frame(s, i)) {
                *o += v;
            }
        }
        out
    };
    (overlap_add(x), overlap_add(y))
}

/// One-third-octave band magnitudes, [band][frame], from a 512-point STFT of 256-sample
/// Hann frames with 50 % overlap.
fn octave_bands(x: &[f64], obm: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let w = hanning(FRAME);
    let fft = FftPlanner::<f64>::new().plan_fft_forward(NFFT);
    let mut bands = vec![vec![]; BANDS];
    let hop = FRAME / 2;
    let mut start = 0;
    while x.len() > FRAME && start < x.len() - FRAME {
        let mut buf: Vec<Complex<f64>> = (0..NFFT)
            .map(|i| Complex::new(if i < FRAME { w[i] * x[start + i] } else { 0.0 }, 0.0))
            .collect();
        fft.process(&mut buf);
        let power: Vec<f64> = buf[..=NFFT / 2].iter().map(|c| c.norm_sqr()).collect();
        for (band, row) in bands.iter_mut().zip(obm) {
            band.push(
                row.iter()
                    .zip(&power)
                    .map(|(m, p)| m * p)
                    .sum::<f64>()
                    .sqrt(),
            );
        }
        start += hop;
    }
    bands
}

fn third_octave_matrix() -> Vec<Vec<f64>> {
    let bins = NFFT / 2 + 1;
    let f: Vec<f64> = (0..bins)
        .map(|i| i as f64 * FS as f64 / NFFT as f64)
        .collect();
    let nearest = |target: f64| {
        (0..bins)
            .min_by(|&a, &b| (f[a] - target).powi(2).total_cmp(&(f[b] - target).powi(2)))
            .unwrap()
    };
    (0..BANDS)
        .map(|k| {
            let k = k as f64;
            let lo = nearest(MIN_FREQ * 2f64.powf((2.0 * k - 1.0) / 6.0));
            let hi = nearest(MIN_FREQ * 2f64.powf((2.0 * k + 1.0) / 6.0));
            (0..bins)
                .map(|i| if (lo..hi).contains(&i) { 1.0 } else { 0.0 })
                .collect()
        })
        .collect()
}

/// Rational resampling by `up / down` with a Kaiser-windowed sinc, as MATLAB's `resample`
/// (and pystoi's `resample_oct`, via scipy's `resample_poly`) does it.
fn resample(x: &[f64], to: u32, from: u32) -> Vec<f64> {
    let g = gcd(to, from);
    let (p, q) = ((to / g) as usize, (from / g) as usize);
    let h = kaiser_sinc(p, q);
    let sum: f64 = h.iter().sum();
    let h: Vec<f64> = h.iter().map(|v| v / sum * p as f64).collect();
    let half = (h.len() - 1) / 2;
    let out_len = (x.len() * p).div_ceil(q);
    (0..out_len)
        .map(|n| {
            // Output n sits at upsampled index n*q; input k sits at k*p.
            let m = n * q + half;
            let k_hi = (m / p).min(x.len().saturating_sub(1));
            let k_lo = (m + 1).saturating_sub(h.len()).div_ceil(p);
            (k_lo..=k_hi).map(|k| x[k] * h[m - k * p]).sum()
        })
        .collect()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn kaiser_sinc(p: usize, q: usize) -> Vec<f64> {
    let rejection_db = 60.0;
    let cutoff = 1.0 / (2.0 * p.max(q) as f64);
    let roll_off = cutoff / 10.0;
    let l = ((rejection_db - 8.0) / (28.714 * roll_off)).ceil() as i64;
    let beta = 0.1102 * (rejection_db - 8.7);
    let n = (2 * l + 1) as f64;
    (-l..=l)
        .map(|t| {
            let t = t as f64;
            let arg = 2.0 * cutoff * t;
            let sinc = if arg == 0.0 {
                1.0
            } else {
                (std::f64::consts::PI * arg).sin() / (std::f64::consts::PI * arg)
            };
            // numpy.kaiser(M, beta) at index t + l.
            let r = 2.0 * (t + l as f64) / (n - 1.0) - 1.0;
            let w = bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / bessel_i0(beta);
            2.0 * p as f64 * cutoff * sinc * w
        })
        .collect()
}

fn bessel_i0(x: f64) -> f64 {
    let (mut sum, mut term) = (1.0, 1.0);
    for k in 1..200 {
        term *= (x / (2.0 * k as f64)).powi(2);
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}
