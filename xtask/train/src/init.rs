//! Initial weights of a fresh run.
//!
//! Everything but the codec starts as PyTorch would (uniform fan-in scaling, unit layer
//! norms, zero biases). The encoder and decoder start as a matched pair instead: a windowed
//! tight frame, so that `deconv(conv(x)) == x` from the first step. The network then only has
//! to learn the mask, not also how to rebuild a waveform from its own random features, which
//! is what eats most of a small training budget. The architecture is unchanged; only where
//! the optimiser starts from differs from the reference recipe.

use tch::Tensor;
use wavecrn_engine::ModelConfig;

use crate::data::Rng;
use crate::model::Net;

/// Sets every parameter of `net` to its deterministic initial value for `seed`.
pub fn initialise(net: &Net, seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(31) + 7);
    tch::no_grad(|| {
        for (name, p) in net.params() {
            let shape = p.size();
            let n: i64 = shape.iter().product();
            let value: Vec<f32> =
                if name.ends_with("layer_norm.weight") || name.ends_with("scale_x") {
                    vec![1.0; n as usize]
                } else if name.ends_with("bias") {
                    vec![0.0; n as usize]
                } else if name.ends_with("weight_c") {
                    // Recurrent weights start at zero: each gate begins as a plain sigmoid of U.
                    vec![0.0; n as usize]
                } else if name == "conv.weight" || name == "deconv.weight" {
                    // Filled below, both from one frame.
                    continue;
                } else {
                    let fan_in = match shape.len() {
                        _ if name.starts_with("outfc") => shape[1], // Linear stores (out, in)
                        _ => shape[0],                              // SRU weight: (in, out)
                    };
                    let bound = (3.0 / fan_in.max(1) as f64).sqrt();
                    (0..n).map(|_| rng.uniform(-bound, bound) as f32).collect()
                };
            p.shallow_clone()
                .copy_(&Tensor::from_slice(&value).view(shape.as_slice()));
        }
        let frame = codec_frame(&net.config, &mut rng);
        for name in ["conv.weight", "deconv.weight"] {
            let p = net.param(name);
            p.shallow_clone()
                .copy_(&Tensor::from_slice(&frame).view(p.size().as_slice()));
        }
    });
}

/// `channels x kernel` analysis filters (row-major) that the decoder, given the same
/// filters, inverts exactly:
/// - with at least as many channels as taps: random orthonormal columns (a tight frame,
///   `QᵀQ = I`) times a square-root periodic Hann window, whose squares overlap-add to one at
///   a hop of half the kernel;
/// - with fewer channels than taps but at least one per hop sample (a 64-channel model's
///   96-tap, 48-hop codec): a random orthonormal mix `Q` (`channels x hop`, `QᵀQ = I`) of the
///   MDCT's `hop` lapped basis functions, an orthogonal transform at this hop, so the codec is
///   exact again. (A plain projection of each frame onto `channels` random directions, what
///   this did before, rebuilt speech at only about 6 dB SI-SDR with 64 channels, measured
///   once on four training crops with a throw-away PyTorch snippet, not a repo command: every small
///   model started with a third of its input's energy lost and spent its budget relearning
///   the codec.)
/// - with fewer channels than hop samples, no codec can be exact: orthonormal rows, a
///   projection.
pub fn codec_frame(cfg: &ModelConfig, rng: &mut Rng) -> Vec<f32> {
    let (rows, cols) = (cfg.channels, cfg.kernel);
    let halves = cfg.stride * 2 == cfg.kernel;
    if halves && rows < cols && rows >= cfg.stride {
        return mixed_mdct(rows, cfg.stride, rng);
    }
    let mut m: Vec<f64> = (0..rows * cols).map(|_| rng.uniform(-1.0, 1.0)).collect();
    if rows >= cols {
        orthonormalise(&mut m, cols, rows, |i, j| j * cols + i);
    } else {
        orthonormalise(&mut m, rows, cols, |i, j| i * cols + j);
    }
    let window = |n: usize| {
        if halves {
            (0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / cols as f64).cos()).sqrt()
        } else {
            // Any other hop: no exact overlap-add, so scale for unit gain on average.
            (cfg.stride as f64 / cols as f64).sqrt()
        }
    };
    (0..rows * cols)
        .map(|i| (m[i] * window(i % cols)) as f32)
        .collect()
}

/// `rows` filters of `2 * hop` taps: `Q · MDCT`, with `Q` random `rows x hop` orthonormal
/// columns and the MDCT's sine-windowed basis (Princen-Bradley), whose frames at `hop` form
/// an orthogonal transform. `QᵀQ = I` keeps it one: decoding with the same filters is exact.
fn mixed_mdct(rows: usize, hop: usize, rng: &mut Rng) -> Vec<f32> {
    let taps = 2 * hop;
    let n = hop as f64;
    let basis: Vec<f64> = (0..hop * taps)
        .map(|i| {
            let (k, t) = ((i / taps) as f64, (i % taps) as f64);
            let window = (std::f64::consts::PI * (t + 0.5) / (2.0 * n)).sin();
            (2.0 / n).sqrt()
                * window
                * (std::f64::consts::PI / n * (t + 0.5 + n / 2.0) * (k + 0.5)).cos()
        })
        .collect();
    let mut q: Vec<f64> = (0..rows * hop).map(|_| rng.uniform(-1.0, 1.0)).collect();
    orthonormalise(&mut q, hop, rows, |i, j| j * hop + i);
    (0..rows * taps)
        .map(|i| {
            let (r, t) = (i / taps, i % taps);
            (0..hop)
                .map(|k| q[r * hop + k] * basis[k * taps + t])
                .sum::<f64>() as f32
        })
        .collect()
}

/// Modified Gram-Schmidt over `count` vectors of `len` entries each, entry `j` of vector `i`
/// at `at(i, j)`.
fn orthonormalise(m: &mut [f64], count: usize, len: usize, at: impl Fn(usize, usize) -> usize) {
    for i in 0..count {
        for k in 0..i {
            let dot: f64 = (0..len).map(|j| m[at(i, j)] * m[at(k, j)]).sum();
            for j in 0..len {
                m[at(i, j)] -= dot * m[at(k, j)];
            }
        }
        let norm = (0..len).map(|j| m[at(i, j)].powi(2)).sum::<f64>().sqrt();
        for j in 0..len {
            m[at(i, j)] /= norm.max(1e-12);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// The encoder followed by the decoder gives the input back: for the paper's codec, for
    /// the narrower codecs of small models (64 and 48 channels for 96 taps), and for one with
    /// more channels than taps.
    #[test]
    fn the_initial_codec_reconstructs_its_input() {
        for channels in [256, 128, 96, 64, 48] {
            reconstructs(ModelConfig {
                channels,
                layers: 1,
                ..ModelConfig::default()
            });
        }
    }

    fn reconstructs(cfg: ModelConfig) {
        let net = Net::zeros(cfg.clone(), Device::Cpu);
        initialise(&net, 3);
        let stride = cfg.stride as i64;
        let mut rng = Rng(9);
        let x: Vec<f32> = (0..cfg.stride * 40)
            .map(|_| rng.uniform(-0.5, 0.5) as f32)
            .collect();
        let input = Tensor::from_slice(&x).view([1, 1, -1]);
        let features = input.conv1d(
            net.param("conv.weight"),
            None::<Tensor>,
            [stride],
            [stride],
            [1],
            1,
        );
        let back = features.conv_transpose1d(
            net.param("deconv.weight"),
            None::<Tensor>,
            [stride],
            [stride],
            [0],
            1,
            [1],
        );
        let err = (back - &input).abs().max().double_value(&[]);
        assert!(
            err < 1e-5,
            "{} channels: reconstruction error {err}",
            cfg.channels
        );
        assert!(input.abs().max().double_value(&[]) > 0.4);
    }
}
