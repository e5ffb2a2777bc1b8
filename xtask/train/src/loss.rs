//! The training loss: the paper's L1 on the waveform, plus optional terms: a multi-resolution
//! STFT term (spectral convergence and log-magnitude distance at three frame sizes) that weighs
//! errors as the ear and PESQ do, by band and on a log scale, rather than by raw amplitude; and
//! a negative SI-SDR term, which weighs every example alike whatever its level (L1 leans on the
//! loud ones) and rewards what SI-SDR and segmental SNR measure.

use tch::{Kind, Tensor};

/// FFT size and hop of each resolution (at 16 kHz: 16, 32 and 64 ms frames).
const RESOLUTIONS: [(i64, i64); 3] = [(256, 64), (512, 128), (1024, 256)];

/// How much of each optional term the loss adds to the waveform L1 (all 0: the paper's loss).
#[derive(Clone, Copy, Debug, Default)]
pub struct Weights {
    /// Of [`multi_resolution_stft`].
    pub stft: f64,
    /// Of minus the mean SI-SDR in dB ([`si_sdr_db`]).
    pub si_sdr: f64,
}

/// `mean |output - target|`, plus the weighted optional terms.
pub fn loss(output: &Tensor, target: &Tensor, w: Weights) -> Tensor {
    let mut total = (output - target).abs().mean(Kind::Float);
    if w.stft != 0.0 {
        total += multi_resolution_stft(output, target) * w.stft;
    }
    if w.si_sdr != 0.0 {
        total -= si_sdr_db(output, target).mean(Kind::Float) * w.si_sdr;
    }
    total
}

/// Scale-invariant SDR in dB of each example (signals shaped `[batch, 1, samples]` or
/// `[batch, samples]`), as the metrics crate computes it: zero-mean signals, the output's
/// projection on the target against the rest.
pub fn si_sdr_db(output: &Tensor, target: &Tensor) -> Tensor {
    let n = target.size()[target.dim() - 1];
    let y = output.view([-1, n]);
    let s = target.view([-1, n]);
    let y = &y - y.mean_dim(-1, true, Kind::Float);
    let s = &s - s.mean_dim(-1, true, Kind::Float);
    let eps = 1e-8;
    let alpha = (&y * &s).sum_dim_intlist(-1, true, Kind::Float)
        / (s.square().sum_dim_intlist(-1, true, Kind::Float) + eps);
    let projection = &s * alpha;
    let residual = &y - &projection;
    let ratio = (projection.square().sum_dim_intlist(-1, false, Kind::Float) + eps)
        / (residual.square().sum_dim_intlist(-1, false, Kind::Float) + eps);
    ratio.log10() * 10.0
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
        let l1 = f64::try_from(loss(&(&t * 2.0), &t, Weights::default())).unwrap();
        let mean_abs = f64::try_from(t.abs().mean(Kind::Float)).unwrap();
        assert!((l1 - mean_abs).abs() < 1e-6);
    }

    #[test]
    fn the_si_sdr_term_matches_the_metric_and_ignores_scale() {
        let t = Tensor::randn([3, 1, 4000], (Kind::Float, tch::Device::Cpu)) * 0.1;
        let noise = Tensor::randn([3, 1, 4000], (Kind::Float, tch::Device::Cpu)) * 0.02;
        let y = &t + &noise;
        let db = Vec::<f32>::try_from(si_sdr_db(&y, &t)).unwrap();
        let y3 = Vec::<f32>::try_from(si_sdr_db(&(&y * 3.0), &t)).unwrap();
        for b in 0..3usize {
            let (yv, tv) = (
                Vec::<f32>::try_from(y.get(b as i64).view([-1])).unwrap(),
                Vec::<f32>::try_from(t.get(b as i64).view([-1])).unwrap(),
            );
            let want = wavecrn_metrics::si_sdr(&tv, &yv).unwrap();
            assert!((db[b] as f64 - want).abs() < 0.01, "{} {want}", db[b]);
            assert!((db[b] - y3[b]).abs() < 0.01);
        }
        // The term lowers the loss as the output gets closer.
        let w = Weights {
            si_sdr: 0.01,
            ..Weights::default()
        };
        let far = f64::try_from(loss(&(&t + &noise * 4.0), &t, w)).unwrap();
        let near = f64::try_from(loss(&y, &t, w)).unwrap();
        assert!(near < far, "{near} {far}");
    }
}
