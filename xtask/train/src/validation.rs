//! The run's validation: the network on the fixed validation pairs, scored as `cargo xtask
//! eval` scores (SI-SDR, segmental SNR, wide-band PESQ), over all pairs and the ambient ones.

use anyhow::Result;
use tch::Tensor;
use wavecrn_metrics::validation::Pair;

use crate::model::Net;

fn pad_to(x: &[f32], stride: usize) -> Vec<f32> {
    let mut v = x.to_vec();
    v.resize(x.len().div_ceil(stride) * stride, 0.0);
    v
}

/// Validation means: over all pairs, and over the ambient ones alone
/// ([`validation::is_ambient`](wavecrn_metrics::validation::is_ambient)).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Validation {
    pub si_sdr: f64,
    pub ssnr: f64,
    pub pesq: f64,
    pub ambient_si_sdr: f64,
    pub ambient_pesq: f64,
}

/// The network's validation scores.
pub(crate) fn validate(net: &Net, pairs: &[Pair]) -> Result<Validation> {
    scores(pairs, |noisy| {
        let x = pad_to(noisy, net.config.stride);
        let y = net.forward(
            &Tensor::from_slice(&x)
                .view([1, 1, -1])
                .to_device(net.vs.device()),
        );
        Vec::<f32>::try_from(&y.view([-1])).expect("float output")
    })
}

/// The validation scores of `output(noisy input)`.
pub(crate) fn scores(
    pairs: &[Pair],
    mut output: impl FnMut(&[f32]) -> Vec<f32>,
) -> Result<Validation> {
    let (mut all, mut ambient, mut ambient_count) =
        (Validation::default(), Validation::default(), 0);
    for p in pairs {
        let y = output(&p.noisy);
        let y = &y[..p.clean.len()];
        let sdr = wavecrn_metrics::si_sdr(&p.clean, y)?;
        let pesq = wavecrn_metrics::pesq_wb(&p.clean, y).unwrap_or(f64::NAN);
        all.si_sdr += sdr;
        all.ssnr += wavecrn_metrics::segmental_snr(&p.clean, y)?;
        all.pesq += pesq;
        if wavecrn_metrics::validation::is_ambient(&p.name) {
            ambient.si_sdr += sdr;
            ambient.pesq += pesq;
            ambient_count += 1;
        }
    }
    let n = pairs.len().max(1) as f64;
    let m = ambient_count.max(1) as f64;
    Ok(Validation {
        si_sdr: all.si_sdr / n,
        ssnr: all.ssnr / n,
        pesq: all.pesq / n,
        ambient_si_sdr: ambient.si_sdr / m,
        ambient_pesq: ambient.pesq / m,
    })
}

impl std::fmt::Display for Validation {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "SI-SDR {:.2} dB, SSNR {:.2} dB, PESQ {:.3}; ambient PESQ {:.3}, SI-SDR {:.2} dB",
            self.si_sdr, self.ssnr, self.pesq, self.ambient_pesq, self.ambient_si_sdr
        )
    }
}
