//! Segmental SNR, log-likelihood ratio, weighted spectral slope and the composite measures
//! CSIG, CBAK, COVL (Hu and Loizou, 2008), following Loizou's MATLAB code: 30 ms Hann
//! frames every 7.5 ms.

use rustfft::{num_complex::Complex, FftPlanner};

use crate::{check, MetricError};

/// Share of the best frames kept by LLR and WSS.
const ALPHA: f64 = 0.95;

/// CSIG, CBAK, COVL and the measures they are made of.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Composite {
    pub csig: f64,
    pub cbak: f64,
    pub covl: f64,
    pub ssnr: f64,
    pub llr: f64,
    pub wss: f64,
}

/// The composite measures, given the wide-band PESQ of the same pair. Each is clipped to
/// [1, 5].
pub fn composite(reference: &[f32], test: &[f32], pesq_wb: f64) -> Result<Composite, MetricError> {
    let ssnr = segmental_snr(reference, test)?;
    let llr = llr(reference, test)?;
    let wss = wss(reference, test)?;
    let clip = |v: f64| v.clamp(1.0, 5.0);
    Ok(Composite {
        csig: clip(3.093 - 1.029 * llr + 0.603 * pesq_wb - 0.009 * wss),
        cbak: clip(1.634 + 0.478 * pesq_wb - 0.007 * wss + 0.063 * ssnr),
        covl: clip(1.594 + 0.805 * pesq_wb - 0.512 * llr - 0.007 * wss),
        ssnr,
        llr,
        wss,
    })
}

/// The analysis frames: (window length, hop, number of frames, window).
fn framing(len: usize) -> (usize, usize, usize, Vec<f64>) {
    let rate = crate::SAMPLE_RATE as f64;
    let win = (0.030 * rate).round() as usize;
    let hop = win / 4;
    // MATLAB: num_frames = len/skip - win/skip, and `for 1:num_frames` takes the floor.
    let frames = (len as f64 / hop as f64 - win as f64 / hop as f64)
        .floor()
        .max(0.0) as usize;
    let window = (1..=win)
        .map(|k| 0.5 * (1.0 - (2.0 * std::f64::consts::PI * k as f64 / (win + 1) as f64).cos()))
        .collect();
    (win, hop, frames, window)
}

fn frame(x: &[f32], start: usize, window: &[f64]) -> Vec<f64> {
    window
        .iter()
        .zip(&x[start..start + window.len()])
        .map(|(w, &v)| w * v as f64)
        .collect()
}

/// Segmental SNR in dB: per-frame SNR clipped to [-10, 35] dB, averaged over all frames.
pub fn segmental_snr(reference: &[f32], test: &[f32]) -> Result<f64, MetricError> {
    check(reference, test)?;
    let (_, hop, frames, window) = framing(reference.len());
    let eps = f64::EPSILON;
    let total: f64 = (0..frames)
        .map(|i| {
            let c = frame(reference, i * hop, &window);
            let p = frame(test, i * hop, &window);
            let signal: f64 = c.iter().map(|v| v * v).sum();
            let noise: f64 = c.iter().zip(&p).map(|(a, b)| (a - b).powi(2)).sum();
            (10.0 * (signal / (noise + eps) + eps).log10()).clamp(-10.0, 35.0)
        })
        .sum();
    Ok(total / frames.max(1) as f64)
}

/// Mean of the lowest 95 % of the per-frame values.
fn mean_of_best(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = (v.len() as f64 * ALPHA).round() as usize;
    v[..n].iter().sum::<f64>() / n.max(1) as f64
}

/// Autocorrelation lags 0..=order and the LPC polynomial [1, -a1, ..., -ap] (Levinson).
fn lpc(frame: &[f64], order: usize) -> (Vec<f64>, Vec<f64>) {
    let n = frame.len();
    let r: Vec<f64> = (0..=order)
        .map(|k| {
            frame[..n - k]
                .iter()
                .zip(&frame[k..])
                .map(|(a, b)| a * b)
                .sum()
        })
        .collect();
    let mut a = vec![1.0; order];
    let mut e = r[0];
    for i in 0..order {
        let past = a[..i].to_vec();
        let sum: f64 = (0..i).map(|j| past[j] * r[i - j]).sum();
        let k = (r[i + 1] - sum) / e;
        a[i] = k;
        for j in 0..i {
            a[j] = past[j] - k * past[i - 1 - j];
        }
        e *= 1.0 - k * k;
    }
    let mut poly = vec![1.0];
    poly.extend(a.iter().map(|v| -v));
    (r, poly)
}

/// `a' * toeplitz(r) * a`.
fn quadratic(a: &[f64], r: &[f64]) -> f64 {
    let n = a.len();
    (0..n)
        .map(|i| (0..n).map(|j| a[i] * r[i.abs_diff(j)] * a[j]).sum::<f64>())
        .sum()
}

/// Log-likelihood ratio (LPC order 16 at 16 kHz), mean of the best 95 % of frames, as the
/// composite measure uses it (no clipping of single frames).
pub fn llr(reference: &[f32], test: &[f32]) -> Result<f64, MetricError> {
    check(reference, test)?;
    let (_, hop, frames, window) = framing(reference.len());
    let order = 16;
    let per_frame = (0..frames)
        .map(|i| {
            let (r_clean, a_clean) = lpc(&frame(reference, i * hop, &window), order);
            let (_, a_test) = lpc(&frame(test, i * hop, &window), order);
            (quadratic(&a_test, &r_clean) / quadratic(&a_clean, &r_clean)).ln()
        })
        .collect();
    Ok(mean_of_best(per_frame))
}

const CENTRE: [f64; 25] = [
    50.0, 120.0, 190.0, 260.0, 330.0, 400.0, 470.0, 540.0, 617.372, 703.378, 798.717, 904.128,
    1020.38, 1148.30, 1288.72, 1442.54, 1610.70, 1794.16, 1993.93, 2211.08, 2446.71, 2701.97,
    2978.04, 3276.17, 3597.63,
];
const BANDWIDTH: [f64; 25] = [
    70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 77.3724, 86.0056, 95.3398, 105.411, 116.256, 127.914,
    140.423, 153.823, 168.154, 183.457, 199.776, 217.153, 235.631, 255.255, 276.072, 298.126,
    321.465, 346.136,
];

/// Weighted spectral slope (Klatt), mean of the best 95 % of frames.
pub fn wss(reference: &[f32], test: &[f32]) -> Result<f64, MetricError> {
    check(reference, test)?;
    let (win, hop, frames, window) = framing(reference.len());
    let nfft = (2 * win).next_power_of_two();
    let half = nfft / 2;
    let max_freq = crate::SAMPLE_RATE as f64 / 2.0;
    let min_factor = (-30.0f64 / (2.0 * 2.303)).exp();
    let filters: Vec<Vec<f64>> = (0..25)
        .map(|i| {
            let f0 = (CENTRE[i] / max_freq * half as f64).floor();
            let bw = BANDWIDTH[i] / max_freq * half as f64;
            let norm = BANDWIDTH[0].ln() - BANDWIDTH[i].ln();
            (0..half)
                .map(|j| {
                    let v = (-11.0 * ((j as f64 - f0) / bw).powi(2) + norm).exp();
                    if v > min_factor {
                        v
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect();
    let fft = FftPlanner::<f64>::new().plan_fft_forward(nfft);
    let band_db = |x: &[f32], start: usize| -> Vec<f64> {
        let f = frame(x, start, &window);
        let mut buf: Vec<Complex<f64>> = (0..nfft)
            .map(|i| Complex::new(f.get(i).copied().unwrap_or(0.0), 0.0))
            .collect();
        fft.process(&mut buf);
        let power: Vec<f64> = buf[..half].iter().map(|c| c.norm_sqr()).collect();
        filters
            .iter()
            .map(|h| {
                10.0 * h
                    .iter()
                    .zip(&power)
                    .map(|(a, b)| a * b)
                    .sum::<f64>()
                    .max(1e-10)
                    .log10()
            })
            .collect()
    };
    let (k_max, k_loc_max) = (20.0, 1.0);
    let per_frame = (0..frames)
        .map(|i| {
            let c = band_db(reference, i * hop);
            let p = band_db(test, i * hop);
            let (cs, cp) = (slopes(&c), slopes(&p));
            let (pc, pp) = (nearest_peaks(&c, &cs), nearest_peaks(&p, &cp));
            let (max_c, max_p) = (
                c.iter().cloned().fold(f64::MIN, f64::max),
                p.iter().cloned().fold(f64::MIN, f64::max),
            );
            let (mut num, mut den) = (0.0, 0.0);
            for b in 0..24 {
                let wc = k_max / (k_max + max_c - c[b]) * k_loc_max / (k_loc_max + pc[b] - c[b]);
                let wp = k_max / (k_max + max_p - p[b]) * k_loc_max / (k_loc_max + pp[b] - p[b]);
                let w = (wc + wp) / 2.0;
                num += w * (cs[b] - cp[b]).powi(2);
                den += w;
            }
            num / den
        })
        .collect();
    Ok(mean_of_best(per_frame))
}

fn slopes(e: &[f64]) -> Vec<f64> {
    e.windows(2).map(|w| w[1] - w[0]).collect()
}

/// For each band, the energy of the nearest spectral peak: searching up while the slope
/// rises, down while it falls. Mirrors the index arithmetic of Loizou's `wss.m` exactly
/// (1-based there), its off-by-one included, since the reference values come from it.
fn nearest_peaks(energy: &[f64], slope: &[f64]) -> Vec<f64> {
    let bands = energy.len(); // 25
                              // 1-based accessors, as in the MATLAB code.
    let s = |n: usize| slope[n - 1];
    let e = |n: usize| energy[n - 1];
    (1..bands)
        .map(|i| {
            if s(i) > 0.0 {
                let mut n = i;
                while n < bands && s(n) > 0.0 {
                    n += 1;
                }
                e(n - 1)
            } else {
                let mut n = i;
                while n > 0 && s(n) <= 0.0 {
                    n -= 1;
                }
                e(n + 1)
            }
        })
        .collect()
}
