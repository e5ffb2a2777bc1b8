//! Other denoisers, scored beside ours in `cargo xtask eval --peers`.
//!
//! - RNNoise (Valin, 2018), through `nnnoiseless` from crates.io, a Rust port of Xiph's
//!   code with its shipped model: 48 kHz, 10 ms frames, samples on the 16-bit scale.
//! - DeepFilterNet is not here: its crate on crates.io (`deep_filter` 0.2.5) has neither
//!   the tract inference code nor a model, and the PyPI package (`deepfilternet` 0.5.6,
//!   113 kB) downloads its checkpoints from GitHub at run time, which this project's
//!   machines cannot reach.

use anyhow::Result;
use nnnoiseless::DenoiseState;
use wavecrn_engine::resample::StreamResampler;
use wavecrn_metrics::SAMPLE_RATE;

/// RNNoise's rate.
const RNNOISE_RATE: f64 = 48_000.0;

/// `input` (16 kHz mono) denoised by RNNoise, the same length and aligned: resampled to
/// 48 kHz, run frame by frame, its one-frame delay removed, resampled back.
pub fn rnnoise(input: &[f32]) -> Result<Vec<f32>> {
    let frame = DenoiseState::FRAME_SIZE;
    let mut up = StreamResampler::new(SAMPLE_RATE as f64, RNNOISE_RATE, 1)?;
    let mut wide = vec![vec![]];
    up.process(&[input], &mut wide)?;
    up.finish(&mut wide)?;
    let mut wide = wide.pop().unwrap_or_default();
    let len = wide.len();
    // One more frame to flush the delay, then whole frames.
    wide.resize((len + frame).div_ceil(frame) * frame, 0.0);
    let mut state = DenoiseState::new();
    let mut out = Vec::with_capacity(wide.len());
    let mut buf = vec![0f32; frame];
    let scaled: Vec<f32> = wide.iter().map(|v| v * 32768.0).collect();
    for chunk in scaled.chunks(frame) {
        state.process_frame(&mut buf, chunk);
        out.extend(buf.iter().map(|v| v / 32768.0));
    }
    // Each output frame is the input frame before it (overlap-add of two windows).
    let aligned = &out[frame..frame + len];
    let mut down = StreamResampler::new(RNNOISE_RATE, SAMPLE_RATE as f64, 1)?;
    let mut narrow = vec![vec![]];
    down.process(&[aligned], &mut narrow)?;
    down.finish(&mut narrow)?;
    let mut narrow = narrow.pop().unwrap_or_default();
    narrow.resize(input.len(), 0.0);
    Ok(narrow)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The output lines up with the input: on clean speech, which RNNoise mostly passes,
    /// the cross-correlation peaks at lag 0, and the output keeps most of the speech.
    #[test]
    fn rnnoise_output_is_aligned_with_its_input() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/metrics/pesq_ref.wav");
        let x = wavecrn_audio::folder::read_mono(&path, SAMPLE_RATE).unwrap();
        let y = rnnoise(&x).unwrap();
        assert_eq!(y.len(), x.len());
        let corr = |lag: i64| -> f64 {
            (0..x.len() as i64)
                .filter_map(|t| {
                    let u = t + lag;
                    (u >= 0 && (u as usize) < y.len())
                        .then(|| x[t as usize] as f64 * y[u as usize] as f64)
                })
                .sum()
        };
        let best = (-400..=400)
            .max_by(|&a, &b| corr(a).total_cmp(&corr(b)))
            .unwrap();
        eprintln!("best lag {best}");
        assert_eq!(best, 0);
        let sdr = wavecrn_metrics::si_sdr(&x, &y).unwrap();
        assert!(sdr > 10.0, "RNNoise keeps clean speech: {sdr:.1} dB");
    }
}
