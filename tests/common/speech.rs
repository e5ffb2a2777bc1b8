//! Real noisy speech for the plugin host tests, and the SNR they judge it by.

use wavecrn_tests::shared;

/// The first `seconds` of the validation speech and noise at `rate`, mixed at 5 dB SNR:
/// (clean, noisy). `None` without `../shared`.
pub fn noisy_speech(rate: f64, seconds: f64) -> Option<(Vec<f32>, Vec<f32>)> {
    let speech = shared("data/speech/valid")?;
    let noise = shared("data/noise/valid")?;
    let first = |dir: &std::path::Path| {
        let files = wavecrn_cli::pipeline::audio_files(dir).unwrap();
        let mut x = Vec::new();
        for f in files {
            x.extend(wavecrn_cli::pipeline::read_mono(&f, rate as u32).unwrap());
            if x.len() as f64 >= rate * seconds {
                break;
            }
        }
        x.truncate((rate * seconds) as usize);
        x
    };
    let (s, n) = (first(&speech), first(&noise));
    let (ps, pn) = (power(&s), power(&n));
    // 5 dB SNR.
    let g = (ps / pn / 10f64.powf(0.5)).sqrt() as f32;
    let noisy = s.iter().zip(&n).map(|(a, b)| a + g * b).collect();
    Some((s, noisy))
}

/// Mean square.
pub fn power(x: &[f32]) -> f64 {
    x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64
}

/// SNR of `test` against `clean`, in dB.
pub fn snr_db(clean: &[f32], test: &[f32]) -> f64 {
    let e: Vec<f32> = clean.iter().zip(test).map(|(a, b)| a - b).collect();
    10.0 * (power(clean) / power(&e).max(1e-30)).log10()
}
