//! What the plugin host tests share: an impulse test signal and its check, real noisy speech,
//! and the SNR they judge the output by.

use wavecrn_tests::shared;

/// The first `seconds` of the validation speech and noise at `rate`, mixed at 5 dB SNR:
/// (clean, noisy). `None` without `../shared`.
pub fn noisy_speech(rate: f64, seconds: f64) -> Option<(Vec<f32>, Vec<f32>)> {
    let speech = shared("data/speech/valid")?;
    let noise = shared("data/noise/valid")?;
    let first = |dir: &std::path::Path| {
        let files = wavecrn_audio::folder::audio_files(dir).unwrap();
        let mut x = Vec::new();
        for f in files {
            x.extend(wavecrn_audio::folder::read_mono(&f, rate as u32).unwrap());
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
fn power(x: &[f32]) -> f64 {
    x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64
}

/// SNR of `test` against `clean`, in dB.
pub fn snr_db(clean: &[f32], test: &[f32]) -> f64 {
    let e: Vec<f32> = clean.iter().zip(test).map(|(a, b)| a - b).collect();
    10.0 * (power(clean) / power(&e).max(1e-30)).log10()
}

/// Where the impulse sits in [`impulse_and_noise`]'s first channel.
pub const IMPULSE_AT: usize = 1234;

/// Two channels of `len` frames: an impulse, and a quiet deterministic noise.
pub fn impulse_and_noise(len: usize) -> Vec<Vec<f32>> {
    let mut x = vec![0.0f32; len];
    x[IMPULSE_AT] = 0.5;
    let noise = (0..len)
        .map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.01)
        .collect();
    vec![x, noise]
}

/// Two identical channels of `len` frames: a tone with a little deterministic noise, for
/// automation tests.
pub fn tone_and_noise(len: usize) -> Vec<Vec<f32>> {
    let x: Vec<f32> = (0..len)
        .map(|i| (i as f32 * 0.013).sin() * 0.3 + ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.05)
        .collect();
    vec![x.clone(), x]
}

/// The dry path through a plugin: the impulse appears after exactly the reported `latency`
/// and both channels are the input, delayed, bit for bit.
pub fn assert_delayed_exactly(input: &[Vec<f32>], out: &[Vec<f32>], latency: usize, what: &str) {
    let len = input[0].len();
    assert!(
        latency > 0 && latency < len / 2,
        "{what}: latency {latency}"
    );
    assert_eq!(
        out[0].iter().position(|&v| v != 0.0),
        Some(IMPULSE_AT + latency),
        "{what}"
    );
    for (i, o) in input.iter().zip(out) {
        assert_eq!(
            &o[latency..],
            &i[..len - latency],
            "{what}: dry path bit-exact"
        );
    }
}

/// After a Mode change to Low latency and the host's restart: the latency is Low latency's
/// (a small fraction of Quality's), and the impulse comes out after exactly that.
pub fn assert_restarted_into_low_latency(
    input: &[Vec<f32>],
    out: &[Vec<f32>],
    latency: u32,
    quality: u32,
) {
    assert!(latency < quality / 10, "{latency} vs {quality}");
    assert_delayed_exactly(
        input,
        out,
        latency as usize,
        "Low latency after the restart",
    );
}

/// The plugin's output (first channel, `latency` frames late) is at least 1 dB closer to
/// `clean` than `noisy` was.
pub fn assert_cleaner(clean: &[f32], noisy: &[f32], out: &[f32], latency: usize, what: &str) {
    let y = &out[latency..];
    let before = snr_db(&clean[..y.len()], &noisy[..y.len()]);
    let after = snr_db(&clean[..y.len()], y);
    eprintln!("{what}: SNR {before:.2} dB in, {after:.2} dB out");
    assert!(after > before + 1.0, "{what}: {before:.2} -> {after:.2} dB");
}
