//! The training loss: the paper's L1 on the waveform, plus an optional multi-resolution STFT
//! term (spectral convergence and log-magnitude distance at three frame sizes) that weighs
//! errors as the ear and PESQ do, by band and on a log scale, rather than by raw amplitude.

use tch::{Kind, Tensor};

/// FFT size and hop of each resolution (at 16 kHz: 16, 32 and 64 ms frames).
const RESOLUTIONS: [(i64, i64); 3] = [(256, 64), (512, 128), (1024, 256)];

/// `mean |output - target|`, plus `stft_weight` times [`multi_resolution_stft`].
pub fn loss(output: &Tensor, target: &Tensor, stft_weight: f64) -> Tensor {
    let l1 = (output - target).abs().mean(Kind::Float);
    if stft_weight == 0.0 {
        return l1;
    }
    l1 + multi_resolution_stft(output, target) * stft_weight
}

fn magnitude(x: &Tensor, n_fft: i64, hop: i64) -> Tensor {
    let window = Tensor::hann_window(n_fft, (Kind::Float, x.device()));
    let spec = x.view([-1, x.size()[x.dim() - 1]]).stft(
        n_fft,
        hop,
        n_fft,
        Some(window),
        false,
        true,
        true,
        false,
    );
    (spec.abs().square() + 1e-7).sqrt()
}

/// The mean over resolutions of spectral convergence plus mean log-magnitude L1, for
/// signals shaped `[batch, 1, samples]` or `[batch, samples]`.
pub fn multi_resolution_stft(output: &Tensor, target: &Tensor) -> Tensor {
    let mut total = Tensor::zeros([], (Kind::Float, output.device()));
    for (n_fft, hop) in RESOLUTIONS {
        let (y, t) = (magnitude(output, n_fft, hop), magnitude(target, n_fft, hop));
        let convergence = (&t - &y).square().sum(Kind::Float).sqrt()
            / (t.square().sum(Kind::Float).sqrt() + 1e-7);
        let log_distance = (t.log() - y.log()).abs().mean(Kind::Float);
        total += convergence + log_distance;
    }
    total / RESOLUTIONS.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stft_term_is_zero_for_a_perfect_output_and_grows_with_the_error() {
        let t = Tensor::randn([2, 1, 4000], (Kind::Float, tch::Device::Cpu)) * 0.1;
        let same = f64::try_from(multi_resolution_stft(&t, &t)).unwrap();
        assert!(same.abs() < 1e-6, "{same}");
        let small = f64::try_from(multi_resolution_stft(&(&t * 1.1), &t)).unwrap();
        let large = f64::try_from(multi_resolution_stft(&(&t * 2.0), &t)).unwrap();
        assert!(0.0 < small && small < large, "{small} {large}");
        // Without the term, the loss is the paper's L1.
        let l1 = f64::try_from(loss(&(&t * 2.0), &t, 0.0)).unwrap();
        let mean_abs = f64::try_from(t.abs().mean(Kind::Float)).unwrap();
        assert!((l1 - mean_abs).abs() < 1e-6);
    }
}
