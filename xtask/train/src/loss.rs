//! The training loss: the paper's L1 on the waveform, plus optional terms: a multi-resolution
//! STFT term (spectral convergence and log-magnitude distance at three frame sizes) that weighs
//! errors as the ear and PESQ do, by band and on a log scale, rather than by raw amplitude; and
//! a negative SI-SDR term, which weighs every example alike whatever its level (L1 leans on the
//! loud ones) and rewards what SI-SDR and segmental SNR measure; and a compressed-spectrum term
//! (squared error of power-law compressed magnitudes and complex spectra, as the strongest
//! small denoisers train on), which weighs quiet bands more than raw magnitudes would and,
//! through the complex part, phase too.

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
    /// Of [`compressed_spectrum`].
    pub compressed: f64,
}

/// `mean |output - target|`, plus the weighted optional terms. The two spectral terms share
/// one STFT of each signal per resolution (the STFTs and their gradients are most of their cost).
pub fn loss(output: &Tensor, target: &Tensor, w: Weights) -> Tensor {
    let mut total = (output - target).abs().mean(Kind::Float);
    let spectra = (w.stft != 0.0 || w.compressed != 0.0).then(|| Spectra::of(output, target));
    if w.stft != 0.0 {
        total += spectra.as_ref().unwrap().stft_term() * w.stft;
    }
    if w.si_sdr != 0.0 {
        total -= si_sdr_db(output, target).mean(Kind::Float) * w.si_sdr;
    }
    if w.compressed != 0.0 {
        total += spectra.as_ref().unwrap().compressed_term() * w.compressed;
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

/// The complex STFT of signals shaped `[batch, 1, samples]` or `[batch, samples]`:
/// `[batch, bins, frames]`.
fn spectrum(x: &Tensor, n_fft: i64, hop: i64) -> Tensor {
    let window = Tensor::hann_window(n_fft, (Kind::Float, x.device()));
    x.view([-1, x.size()[x.dim() - 1]]).stft(
        n_fft,
        hop,
        n_fft,
        Some(window),
        false,
        true,
        true,
        false,
    )
}

/// The complex spectra of an output and its target at each of the [`RESOLUTIONS`], which both
/// spectral terms are computed from.
struct Spectra {
    /// `(output, target)` per resolution.
    pairs: Vec<(Tensor, Tensor)>,
}

/// How far under an example's mean bin power its magnitudes are floored (-50 dB): the
/// floor follows each example's level, so neither a quiet example nor the silent stretches of
/// a loud one weigh on the log distance more than what can be heard.
const RELATIVE_FLOOR: f64 = 1e-5;

/// The power the compressed term raises magnitudes to.
const COMPRESSION: f64 = 0.3;
/// The compressed term's share on the magnitudes; the rest goes to the complex spectra.
const MAGNITUDE_SHARE: f64 = 0.7;

impl Spectra {
    fn of(output: &Tensor, target: &Tensor) -> Spectra {
        let pairs = RESOLUTIONS
            .iter()
            .map(|&(n_fft, hop)| (spectrum(output, n_fft, hop), spectrum(target, n_fft, hop)))
            .collect();
        Spectra { pairs }
    }

    /// See [`multi_resolution_stft`].
    fn stft_term(&self) -> Tensor {
        let mut total = Tensor::zeros([], (Kind::Float, self.pairs[0].0.device()));
        for (output, target) in &self.pairs {
            // Magnitudes of both, floored at the target's [`RELATIVE_FLOOR`].
            let (y, t) = (output.abs().square(), target.abs().square());
            let floor = t.mean_dim([-2, -1].as_slice(), true, Kind::Float) * RELATIVE_FLOOR + 1e-12;
            let (y, t) = ((y + &floor).sqrt(), (t + &floor).sqrt());
            let convergence = (&t - &y).square().sum(Kind::Float).sqrt()
                / (t.square().sum(Kind::Float).sqrt() + 1e-7);
            let log_distance = (t.log() - y.log()).abs().mean(Kind::Float);
            total += convergence + log_distance;
        }
        total / self.pairs.len() as f64
    }

    /// See [`compressed_spectrum`].
    fn compressed_term(&self) -> Tensor {
        let mut total = Tensor::zeros([], (Kind::Float, self.pairs[0].0.device()));
        let compress = |x: &Tensor| {
            let complex = Tensor::view_as_real(x);
            // A tiny floor keeps the gradient of |X|^0.3 finite at silent bins.
            let magnitude =
                (complex.square().sum_dim_intlist(-1, true, Kind::Float) + 1e-10).sqrt();
            let compressed = magnitude.pow_tensor_scalar(COMPRESSION);
            let phase_kept = &complex * &compressed / &magnitude;
            (compressed, phase_kept)
        };
        for (output, target) in &self.pairs {
            let (ym, yc) = compress(output);
            let (tm, tc) = compress(target);
            let magnitude = (ym - tm).square().mean(Kind::Float);
            let complex = (yc - tc).square().mean(Kind::Float);
            total += magnitude * MAGNITUDE_SHARE + complex * (1.0 - MAGNITUDE_SHARE);
        }
        total / self.pairs.len() as f64
    }
}

/// The mean over resolutions of spectral convergence plus mean log-magnitude L1, for
/// signals shaped `[batch, 1, samples]` or `[batch, samples]`.
pub fn multi_resolution_stft(output: &Tensor, target: &Tensor) -> Tensor {
    Spectra::of(output, target).stft_term()
}

/// Squared error of power-law compressed spectra, averaged over the resolutions: `0.7 x`
/// that of the magnitudes `|X|^0.3` plus `0.3 x` that of the complex spectra
/// `X |X|^(0.3 - 1)` (the compressed magnitude with the phase), for signals shaped
/// `[batch, 1, samples]` or `[batch, samples]`.
pub fn compressed_spectrum(output: &Tensor, target: &Tensor) -> Tensor {
    Spectra::of(output, target).compressed_term()
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

    /// The floor follows the example's level: the same error at a level 60 dB lower costs the
    /// same, and the silent stretch of a half-silent example does not swamp the term.
    #[test]
    fn the_stft_term_floors_each_example_at_its_own_level() {
        let t = Tensor::randn([1, 1, 8000], (Kind::Float, tch::Device::Cpu)) * 0.1;
        let y = &t * 1.2;
        let loud = f64::try_from(multi_resolution_stft(&y, &t)).unwrap();
        let quiet = f64::try_from(multi_resolution_stft(&(&y * 1e-3), &(&t * 1e-3))).unwrap();
        assert!((loud - quiet).abs() < 1e-3 * loud, "{loud} vs {quiet}");
        // Half of the target silent: a tiny residual there adds little to the term.
        let half = Tensor::cat(&[t.narrow(2, 0, 4000), t.narrow(2, 0, 4000) * 0.0], 2);
        let residual = Tensor::randn([1, 1, 8000], (Kind::Float, tch::Device::Cpu)) * 1e-6;
        let exact = f64::try_from(multi_resolution_stft(&(&half + &residual), &half)).unwrap();
        assert!(exact < 0.05, "{exact}");
    }

    /// The compressed term is zero for a perfect output, grows with the error, sees a phase
    /// error the magnitudes cannot (a sign flip), and lowers the loss as the output nears.
    #[test]
    fn the_compressed_term_sees_magnitude_and_phase() {
        let t = Tensor::randn([2, 1, 4000], (Kind::Float, tch::Device::Cpu)) * 0.1;
        let term = |y: &Tensor| f64::try_from(compressed_spectrum(y, &t)).unwrap();
        assert!(term(&t).abs() < 1e-9);
        assert!(0.0 < term(&(&t * 1.1)) && term(&(&t * 1.1)) < term(&(&t * 2.0)));
        let flipped = term(&(-&t));
        assert!(
            flipped > term(&(&t * 2.0)),
            "a sign flip is a large error: {flipped}"
        );
        let w = Weights {
            compressed: 1.0,
            ..Weights::default()
        };
        let far = f64::try_from(loss(&(&t * 3.0), &t, w)).unwrap();
        let near = f64::try_from(loss(&(&t * 1.1), &t, w)).unwrap();
        assert!(near < far);
    }

    /// Sharing the spectra changes nothing: the loss with every term is the sum of the terms
    /// computed one by one, and so is its gradient.
    #[test]
    fn the_shared_spectra_give_the_terms_computed_alone() {
        let t = Tensor::randn([2, 1, 4000], (Kind::Float, tch::Device::Cpu)) * 0.1;
        let noise = Tensor::randn([2, 1, 4000], (Kind::Float, tch::Device::Cpu)) * 0.03;
        let w = Weights {
            stft: 0.02,
            si_sdr: 0.002,
            compressed: 1.0,
        };
        let mut y = (&t + &noise).set_requires_grad(true);
        let shared = loss(&y, &t, w);
        shared.backward();
        let shared_grad = y.grad().copy();
        y.zero_grad();
        let alone = (&y - &t).abs().mean(Kind::Float) + multi_resolution_stft(&y, &t) * w.stft
            - si_sdr_db(&y, &t).mean(Kind::Float) * w.si_sdr
            + compressed_spectrum(&y, &t) * w.compressed;
        alone.backward();
        let gap = f64::try_from((&shared - &alone).abs()).unwrap();
        assert!(gap < 1e-6, "{gap}");
        let grad_gap = f64::try_from((shared_grad - y.grad()).abs().max()).unwrap();
        let grad_scale = f64::try_from(y.grad().abs().max()).unwrap();
        assert!(grad_gap < 1e-4 * grad_scale, "{grad_gap} of {grad_scale}");
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
