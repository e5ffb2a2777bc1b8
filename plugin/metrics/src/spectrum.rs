//! Long-term spectra and the per-band spectral error: how far an output's average spectrum
//! sits above or below the clean speech's, band by band. Added hiss shows as a positive
//! error in the top bands, lost bass as a negative one in the bottom band, which the
//! waveform metrics average away.

use rustfft::num_complex::Complex;
use rustfft::FftPlanner;

/// FFT size and hop of the long-term spectrum (32 ms Hann frames, half overlap at 16 kHz).
const N_FFT: usize = 512;
const HOP: usize = 256;

/// The bands of the spectral error, in Hz: octaves up to 2 kHz, then 2 kHz steps to 8 kHz.
pub const BANDS: [(f64, f64); 7] = [
    (0.0, 250.0),
    (250.0, 500.0),
    (500.0, 1000.0),
    (1000.0, 2000.0),
    (2000.0, 4000.0),
    (4000.0, 6000.0),
    (6000.0, 8000.0),
];

/// A band's name for tables: `250-500`, `1k-2k`, `6k-8k` (Hz).
pub fn band_label((lo, hi): (f64, f64)) -> String {
    let hz = |f: f64| {
        if f >= 1000.0 {
            format!("{}k", f / 1000.0)
        } else {
            format!("{f}")
        }
    };
    format!("{}-{}", hz(lo), hz(hi))
}

/// Power summed over frames, per FFT bin (`N_FFT / 2 + 1` bins), for signals at
/// `rate` Hz. Sums over several files add.
#[derive(Clone, Debug, PartialEq)]
pub struct LongTermSpectrum {
    pub power: Vec<f64>,
    pub rate: u32,
}

impl LongTermSpectrum {
    pub fn new(rate: u32) -> Self {
        Self {
            power: vec![0.0; N_FFT / 2 + 1],
            rate,
        }
    }

    /// Adds the power spectrum of every frame of `x` (signals shorter than a frame are
    /// zero-padded to one).
    pub fn add(&mut self, x: &[f32]) {
        let fft = FftPlanner::<f64>::new().plan_fft_forward(N_FFT);
        let window: Vec<f64> = (0..N_FFT)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / N_FFT as f64).cos())
            .collect();
        let mut buf = vec![Complex::new(0.0, 0.0); N_FFT];
        let frames = x.len().saturating_sub(N_FFT) / HOP + 1;
        for f in 0..frames {
            for (i, b) in buf.iter_mut().enumerate() {
                let v = x.get(f * HOP + i).copied().unwrap_or(0.0) as f64;
                *b = Complex::new(v * window[i], 0.0);
            }
            fft.process(&mut buf);
            for (p, b) in self.power.iter_mut().zip(&buf) {
                *p += b.norm_sqr();
            }
        }
    }

    /// Power in `[lo, hi)` Hz (the top band includes the Nyquist bin).
    pub fn band(&self, (lo, hi): (f64, f64)) -> f64 {
        let bin_hz = self.rate as f64 / N_FFT as f64;
        let nyquist = self.rate as f64 / 2.0;
        self.power
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                let f = *i as f64 * bin_hz;
                f >= lo && (f < hi || (hi >= nyquist && f <= hi))
            })
            .map(|(_, p)| p)
            .sum()
    }
}

/// Per band of [`BANDS`], the level of `test` over `reference` in dB: 0 where the output's
/// long-term spectrum matches the clean speech's, positive where it has more energy.
pub fn band_errors_db(reference: &LongTermSpectrum, test: &LongTermSpectrum) -> [f64; 7] {
    BANDS.map(|b| 10.0 * ((test.band(b) + 1e-20) / (reference.band(b) + 1e-20)).log10())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, amp: f64, len: usize) -> Vec<f32> {
        (0..len)
            .map(|t| (amp * (2.0 * std::f64::consts::PI * freq * t as f64 / 16000.0).sin()) as f32)
            .collect()
    }

    #[test]
    fn a_band_gain_shows_in_that_band_only() {
        let reference: Vec<f32> = tone(300.0, 0.3, 16000)
            .iter()
            .zip(tone(7000.0, 0.01, 16000))
            .map(|(a, b)| a + b)
            .collect();
        // The same, with the 7 kHz component 10 dB louder: hiss added at the top.
        let hissy: Vec<f32> = tone(300.0, 0.3, 16000)
            .iter()
            .zip(tone(7000.0, 0.01 * 10f64.sqrt(), 16000))
            .map(|(a, b)| a + b)
            .collect();
        let (mut r, mut t) = (LongTermSpectrum::new(16000), LongTermSpectrum::new(16000));
        r.add(&reference);
        t.add(&hissy);
        let e = band_errors_db(&r, &t);
        assert!((e[6] - 10.0).abs() < 0.1, "{e:?}");
        assert!(e[1].abs() < 0.01, "{e:?}");
        let same = band_errors_db(&r, &r);
        assert!(same.iter().all(|v| v.abs() < 1e-9));
    }
}
