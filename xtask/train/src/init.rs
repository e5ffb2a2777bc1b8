//! Initial weights of a fresh run.
//!
//! Everything but the codec starts as PyTorch would (uniform fan-in scaling, unit layer
//! norms, zero biases). The encoder and decoder start as a matched pair instead: a windowed
//! tight frame, so that `deconv(conv(x)) == x` from the first step. The network then only has
//! to learn the mask, not also how to rebuild a waveform from its own random features, which
//! is what eats most of a small training budget. The architecture is unchanged; only where
//! the optimiser starts from differs from the reference recipe.

use std::collections::BTreeMap;

use anyhow::{bail, ensure, Result};
use tch::Tensor;
use wavecrn_engine::{ModelConfig, Weights};

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

/// Reset-gate bias of a layer [`deepen`] adds: its output is `0.95 * input + 0.05 * cell`, close
/// enough to its input to keep what the shallower model learnt, far enough from a closed gate
/// (where every gradient of the layer vanishes) for Adam to open it within a few hundred steps.
pub const ADDED_LAYER_RESET_BIAS: f32 = -3.0;

/// Gives `net` (already initialised) the weights of `shallow`, a trained model of the same
/// configuration but fewer layers, and turns each added top layer into a near-identity: its
/// reset gate is a constant `sigmoid(reset_bias)`, so the highway passes the input through and
/// the cell adds a little. A bigger model then starts where the smaller one ended instead of
/// from scratch, which a CPU budget cannot afford. The added layers keep their random input
/// weights for the candidate and the forget gate, so they have something to learn from.
pub fn deepen(net: &Net, shallow: &Weights, reset_bias: f32) -> Result<()> {
    let (cfg, from) = (&net.config, &shallow.config);
    let same_but_depth = ModelConfig {
        layers: cfg.layers,
        ..from.clone()
    } == *cfg;
    if !same_but_depth || from.layers >= cfg.layers {
        bail!("can deepen only a model that differs in having fewer layers: {from:?} into {cfg:?}");
    }
    net.copy_in(shallow)?;
    tch::no_grad(|| {
        for layer in from.layers..cfg.layers {
            let l = cfg.layer(layer);
            // The highway carries the layer's own input only where widths match (k = 3).
            ensure!(l.k == 3, "layer {layer} has no identity skip path");
            let set = |name: &str, edit: &dyn Fn(&mut [f32])| {
                let p = net.param(&format!("sru.rnn_lst.{layer}.{name}"));
                let mut v = Vec::<f32>::try_from(&p.view([-1])).expect("float tensor");
                edit(&mut v);
                p.shallow_clone()
                    .copy_(&Tensor::from_slice(&v).view(p.size().as_slice()));
            };
            let units = l.directions * l.hidden;
            // Input weights: columns [direction][unit][k], k = (candidate, forget, reset).
            set("weight", &|w| {
                for column in w.chunks_mut(units * l.k) {
                    column
                        .iter_mut()
                        .skip(2)
                        .step_by(l.k)
                        .for_each(|x| *x = 0.0);
                }
            });
            // Recurrent weights and biases: [gate][direction][unit], gate 1 = reset.
            set("weight_c", &|w| w[units..].fill(0.0));
            set("bias", &|b| {
                b[..units].fill(0.0);
                b[units..].fill(reset_bias);
            });
        }
        Ok(())
    })
}

/// Relative jitter [`widen`] gives the copied SRU input weights and mask weights of a run: the
/// copies of a unit would otherwise get the same gradients but for dropout's masks. The test
/// below holds the widened network's output within 20-80 dB of the narrow one's with it.
pub const WIDENED_JITTER: f32 = 0.02;

/// Gives `net` the function of `narrow`, a trained model of the same configuration but
/// `1/m` of the channels: every channel and SRU unit is copied `m` times (a copy's outgoing
/// weights divided by `m`), Net2Net's widening. Copies keep each layer norm's mean and
/// variance, so the wider network computes exactly what the narrow one did before `jitter`
/// (relative, on the SRU input and mask weights) parts the copies. A wider model then starts
/// where the narrow one ended instead of from scratch.
pub fn widen(net: &Net, narrow: &Weights, jitter: f32, seed: u64) -> Result<()> {
    let (cfg, from) = (&net.config, &narrow.config);
    let same_but_width = ModelConfig {
        channels: cfg.channels,
        ..from.clone()
    } == *cfg;
    if !same_but_width || cfg.channels <= from.channels || cfg.channels % from.channels != 0 {
        bail!(
            "can widen only a model that differs in having a whole fraction of the channels: \
             {from:?} into {cfg:?}"
        );
    }
    let (narrow_c, wide_c, dirs) = (from.channels, cfg.channels, cfg.directions);
    let m = (wide_c / narrow_c) as f32;
    // Where a wide index's value comes from: encoder channels, then SRU outputs laid out as
    // [direction][unit].
    let channel = |c: usize| c % narrow_c;
    let unit = |j: usize| (j / wide_c) * narrow_c + (j % wide_c) % narrow_c;
    let mut rng = Rng(seed.wrapping_mul(97) + 13);
    let mut shake = |v: f32| v * (1.0 + jitter * rng.uniform(-1.732, 1.732) as f32);
    let mut wide: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    let src = |name: &str| &narrow.tensor(name).data;
    let kernel = cfg.kernel;
    // The decoder sums over channels, so its copies share their channel's filter.
    for (name, scale) in [("conv.weight", 1.0), ("deconv.weight", 1.0 / m)] {
        let rows = (0..wide_c * kernel)
            .map(|i| src(name)[channel(i / kernel) * kernel + i % kernel] * scale)
            .collect();
        wide.insert(name.into(), rows);
    }
    for layer in 0..cfg.layers {
        let (l, nl) = (cfg.layer(layer), from.layer(layer));
        let name = |s: &str| format!("sru.rnn_lst.{layer}.{s}");
        let input = |i: usize| if layer == 0 { channel(i) } else { unit(i) };
        for part in ["layer_norm.weight", "layer_norm.bias"] {
            let v = src(&name(part));
            wide.insert(name(part), (0..l.input).map(|i| v[input(i)]).collect());
        }
        wide.insert(name("scale_x"), src(&name("scale_x")).clone());
        // Columns [direction][unit][k]; each input row is seen `m` times.
        let w = src(&name("weight"));
        let (cols, narrow_cols) = (dirs * l.hidden * l.k, dirs * nl.hidden * nl.k);
        let mut weight = Vec::with_capacity(l.input * cols);
        for i in 0..l.input {
            for col in 0..cols {
                let (du, k) = (col / l.k, col % l.k);
                let from_col = unit(du) * l.k + k;
                weight.push(shake(w[input(i) * narrow_cols + from_col] / m));
            }
        }
        wide.insert(name("weight"), weight);
        // Recurrent weights and biases: [gate][direction][unit].
        for part in ["weight_c", "bias"] {
            let v = src(&name(part));
            let (out, narrow_out) = (l.output(), nl.output());
            let copied = (0..2 * out)
                .map(|j| v[(j / out) * narrow_out + unit(j % out)])
                .collect();
            wide.insert(name(part), copied);
        }
    }
    let outfc = src("outfc.weight");
    let (ins, narrow_ins) = (dirs * wide_c, dirs * narrow_c);
    let mut mask = Vec::with_capacity(wide_c * ins);
    for c in 0..wide_c {
        for j in 0..ins {
            mask.push(shake(outfc[channel(c) * narrow_ins + unit(j)] / m));
        }
    }
    wide.insert("outfc.weight".into(), mask);
    let tensors = cfg
        .parameter_shapes()
        .into_iter()
        .filter_map(|(name, shape)| {
            let data = wide.remove(&name)?;
            Some((name, wavecrn_engine::Tensor::new(shape, data)))
        })
        .collect();
    net.copy_in(&Weights::new(cfg.clone(), tensors)?)
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

    /// A deepened model computes what the shallow one did: exactly with the reset gates shut,
    /// and within the small step the added layers' open gates make with the bias used in runs.
    #[test]
    fn a_deepened_model_starts_where_the_shallow_one_ended() {
        let shallow_cfg = ModelConfig {
            channels: 32,
            layers: 2,
            ..ModelConfig::default()
        };
        let shallow = Net::zeros(shallow_cfg.clone(), Device::Cpu);
        initialise(&shallow, 5);
        let weights = weights_of(&shallow, 0.0, &mut Rng(1));

        let mut rng = Rng(4);
        let x: Vec<f32> = (0..shallow_cfg.stride * 200)
            .map(|_| rng.uniform(-0.5, 0.5) as f32)
            .collect();
        let input = Tensor::from_slice(&x).view([1, 1, -1]);
        let reference = shallow.forward(&input);
        let deep_cfg = ModelConfig {
            layers: 4,
            ..shallow_cfg.clone()
        };
        let gap = |reset_bias: f32| {
            let deep = Net::zeros(deep_cfg.clone(), Device::Cpu);
            initialise(&deep, 6);
            deepen(&deep, &weights, reset_bias).unwrap();
            snr_db(&deep.forward(&input), &reference)
        };
        let shut = gap(-30.0);
        let used = gap(ADDED_LAYER_RESET_BIAS);
        assert!(
            shut > 80.0,
            "closed gates: {shut:.1} dB from the shallow output"
        );
        assert!(
            (15.0..80.0).contains(&used),
            "run's gates: {used:.1} dB from the shallow output"
        );

        // Anything but fewer layers is refused.
        let wider = Net::zeros(
            ModelConfig {
                channels: 64,
                ..deep_cfg
            },
            Device::Cpu,
        );
        assert!(deepen(&wider, &weights, -3.0).is_err());
        let same = Net::zeros(shallow_cfg, Device::Cpu);
        assert!(deepen(&same, &weights, -3.0).is_err());
    }

    /// A widened model computes what the narrow one did: exactly without jitter, and within
    /// the small step the run's jitter makes; for a bidirectional model doubled and a causal
    /// one tripled, with every parameter of the narrow model random (biases, recurrent
    /// weights and layer norms too, so a wrong copy anywhere shows).
    #[test]
    fn a_widened_model_starts_where_the_narrow_one_ended() {
        for (directions, factor) in [(2, 2), (1, 3)] {
            let narrow_cfg = ModelConfig {
                channels: 16,
                layers: 3,
                directions,
                ..ModelConfig::default()
            };
            let narrow = Net::zeros(narrow_cfg.clone(), Device::Cpu);
            initialise(&narrow, 5);
            let mut rng = Rng(11);
            let weights = weights_of(&narrow, 0.3, &mut rng);
            let mut narrow = Net::zeros(narrow_cfg.clone(), Device::Cpu);
            narrow.load(&weights).unwrap();

            let x: Vec<f32> = (0..narrow_cfg.stride * 200)
                .map(|_| rng.uniform(-0.5, 0.5) as f32)
                .collect();
            let input = Tensor::from_slice(&x).view([1, 1, -1]);
            let reference = narrow.forward(&input);
            let wide_cfg = ModelConfig {
                channels: 16 * factor,
                ..narrow_cfg.clone()
            };
            let gap = |jitter: f32| {
                let wide = Net::zeros(wide_cfg.clone(), Device::Cpu);
                initialise(&wide, 6);
                widen(&wide, &weights, jitter, 7).unwrap();
                snr_db(&wide.forward(&input), &reference)
            };
            let exact = gap(0.0);
            let jittered = gap(WIDENED_JITTER);
            assert!(
                exact > 80.0,
                "{wide_cfg:?}: {exact:.1} dB from the narrow output"
            );
            assert!(
                (20.0..80.0).contains(&jittered),
                "{wide_cfg:?} with jitter: {jittered:.1} dB from the narrow output"
            );
        }
        // Anything but a whole multiple of the channels is refused.
        let cfg = |channels, layers| ModelConfig {
            channels,
            layers,
            ..ModelConfig::default()
        };
        let narrow = Net::zeros(cfg(16, 2), Device::Cpu);
        initialise(&narrow, 1);
        let weights = weights_of(&narrow, 0.0, &mut Rng(1));
        for bad in [cfg(24, 2), cfg(16, 2), cfg(32, 3), cfg(8, 2)] {
            let net = Net::zeros(bad.clone(), Device::Cpu);
            assert!(widen(&net, &weights, 0.0, 1).is_err(), "{bad:?}");
        }
    }

    /// How far `out` is from `reference`, as the reference's power over the difference's, dB.
    fn snr_db(out: &Tensor, reference: &Tensor) -> f64 {
        let err = (out - reference)
            .square()
            .sum(tch::Kind::Float)
            .double_value(&[]);
        let power = reference.square().sum(tch::Kind::Float).double_value(&[]);
        10.0 * (power / err.max(1e-30)).log10()
    }

    /// `net`'s parameters as [`Weights`], each but the codec and the rescale buffer moved by
    /// up to `noise` at random.
    fn weights_of(net: &Net, noise: f64, rng: &mut Rng) -> Weights {
        let tensors = net
            .params()
            .iter()
            .map(|(name, t)| {
                let shape = t.size().iter().map(|&d| d as usize).collect();
                let mut data = Vec::<f32>::try_from(&t.view([-1])).unwrap();
                if !name.ends_with("scale_x") && !name.contains("conv") {
                    data.iter_mut()
                        .for_each(|v| *v += rng.uniform(-noise, noise) as f32);
                }
                (name.clone(), wavecrn_engine::Tensor::new(shape, data))
            })
            .collect();
        Weights::new(net.config.clone(), tensors).unwrap()
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
