//! WaveCRN on tch, trained by staged backpropagation around the fused recurrence.
//!
//! The forward pass cuts the graph at every recurrence: each layer's output becomes a fresh
//! leaf. After `loss.backward()` has filled the top leaf's gradient, each layer in turn runs
//! the recurrence's backward kernel, then backpropagates a surrogate `sum(U * dU) + ...`
//! through its own LibTorch graph (layer norm, matrix product, skip), which fills the
//! gradient of the leaf below and of the layer's weights. The encoder output is a leaf too,
//! so the convolution is reached exactly once at the end.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use tch::{nn, Device, Kind, Tensor};
use wavecrn_engine::{MaskKind, ModelConfig, Weights};

use crate::recurrence::{self, Params, Shape};

/// A WaveCRN network's parameters, named as the reference (`sru.rnn_lst.0.weight`, ...).
pub struct Net {
    pub config: ModelConfig,
    /// Weight of the multi-resolution STFT loss term (0: the paper's plain L1).
    pub loss: crate::loss::Weights,
    pub vs: nn::VarStore,
    params: BTreeMap<String, Tensor>,
}

/// What one layer's forward keeps for its backward.
struct Tape {
    shape: Shape,
    /// U with its graph to the layer's input and weights.
    u: Tensor,
    skip: Option<Tensor>,
    u_data: Vec<f32>,
    skip_data: Option<Vec<f32>>,
    c: Vec<f32>,
    /// The recurrent weights and biases as the kernels read them.
    weight_c: Vec<f32>,
    bias: Vec<f32>,
    /// The layer's output, a leaf of the next stage.
    h: Tensor,
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    let t = t.detach().to_kind(Kind::Float).contiguous().view([-1]);
    Vec::<f32>::try_from(&t).expect("float tensor")
}

impl Net {
    /// A network of `config` with every parameter zero (load or initialise it next).
    pub fn zeros(config: ModelConfig, device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let mut params = BTreeMap::new();
        for (name, shape) in config.parameter_shapes() {
            let mut path = vs.root();
            let parts: Vec<&str> = name.split('.').collect();
            for p in &parts[..parts.len() - 1] {
                path = path.sub(*p);
            }
            let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
            let init = if name.ends_with("scale_x") {
                nn::Init::Const(1.0)
            } else {
                nn::Init::Const(0.0)
            };
            let mut t = path.var(parts[parts.len() - 1], &dims, init);
            if name.ends_with("scale_x") {
                // A fixed buffer in the reference, not a parameter.
                t = t.set_requires_grad(false);
            }
            params.insert(name, t);
        }
        Self {
            config,
            loss: crate::loss::Weights::default(),
            vs,
            params,
        }
    }

    /// Copies `weights` into the parameters.
    pub fn load(&mut self, weights: &Weights) -> Result<()> {
        if weights.config != self.config {
            bail!(
                "weights are for {:?}, the network is {:?}",
                weights.config,
                self.config
            );
        }
        self.copy_in(weights)
    }

    /// Copies every tensor of `weights` into the parameter of the same name, whatever the
    /// configurations (a shallower model's layers into a deeper one: [`crate::init::deepen`]).
    pub fn copy_in(&self, weights: &Weights) -> Result<()> {
        tch::no_grad(|| {
            for (name, t) in weights.tensors() {
                let dims: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
                let src = Tensor::from_slice(&t.data)
                    .view(dims.as_slice())
                    .to_device(self.vs.device());
                self.params
                    .get(name)
                    .context("unknown parameter")?
                    .shallow_clone()
                    .copy_(&src);
            }
            Ok(())
        })
    }

    /// The parameter called `name`.
    pub fn param(&self, name: &str) -> &Tensor {
        self.params
            .get(name)
            .unwrap_or_else(|| panic!("no parameter {name}"))
    }

    /// Every parameter by name.
    pub fn params(&self) -> &BTreeMap<String, Tensor> {
        &self.params
    }

    /// The output for `input` (B, 1, L), L a multiple of the stride.
    pub fn forward(&self, input: &Tensor) -> Tensor {
        tch::no_grad(|| self.run(input, None).0)
    }

    /// Output, L1 loss against `target`, and the loss's gradients accumulated into every
    /// parameter's `.grad()`, in eval mode (no dropout), as the reference gradients are.
    pub fn loss_and_backward(&self, input: &Tensor, target: &Tensor) -> (Tensor, f64) {
        self.train_step(input, target, 0.0)
    }

    /// As [`Net::loss_and_backward`] in training mode: `rnn_dropout` is the probability of
    /// dropping each feature of an SRU layer's normalised input, one mask per sequence for
    /// all time steps, as the `sru` package does (the skip path keeps the raw input). Seed
    /// LibTorch (`tch::manual_seed`) first for reproducible masks.
    pub fn train_step(&self, input: &Tensor, target: &Tensor, rnn_dropout: f64) -> (Tensor, f64) {
        let (output, loss) = self.run(input, Some((target, rnn_dropout)));
        (output, loss.unwrap_or(f64::NAN))
    }

    fn run(&self, input: &Tensor, target: Option<(&Tensor, f64)>) -> (Tensor, Option<f64>) {
        let cfg = &self.config;
        let stride = cfg.stride as i64;
        let p = |n: &str| self.param(n);
        let f = input.conv1d(p("conv.weight"), None::<Tensor>, [stride], [stride], [1], 1);
        let f_leaf = f.detach().set_requires_grad(target.is_some());
        let (batch, steps) = (f.size()[0] as usize, f.size()[2] as usize);
        let mut x = f_leaf.permute([2, 0, 1]);
        let mut tapes = vec![];
        for layer in 0..cfg.layers {
            let l = cfg.layer(layer);
            let name = |s: &str| format!("sru.rnn_lst.{layer}.{s}");
            let (i, d, h, k) = (
                l.input as i64,
                l.directions as i64,
                l.hidden as i64,
                l.k as i64,
            );
            let normed = x.layer_norm(
                [i],
                Some(p(&name("layer_norm.weight"))),
                Some(p(&name("layer_norm.bias"))),
                1e-5,
                false,
            );
            let normed = match target.filter(|(_, d)| *d > 0.0) {
                Some((_, drop)) => {
                    let keep = Tensor::ones([1, batch as i64, i], (Kind::Float, input.device()))
                        .bernoulli_float_(1.0 - drop)
                        / (1.0 - drop);
                    normed * keep
                }
                None => normed,
            };
            // The reference's [direction][unit][k] columns, reordered to [direction][k][unit].
            let w = p(&name("weight"))
                .view([i, d, h, k])
                .permute([0, 1, 3, 2])
                .reshape([i, d * k * h]);
            let u = normed.matmul(&w);
            let skip = (l.k == 3).then(|| &x * p(&name("scale_x")));
            let shape = Shape {
                steps,
                batch,
                hidden: l.hidden,
                directions: l.directions,
                k: l.k,
            };
            let (u_data, skip_data) = (to_vec(&u), skip.as_ref().map(to_vec));
            let (weight_c, bias) = (to_vec(p(&name("weight_c"))), to_vec(p(&name("bias"))));
            let mut out = vec![0.0; shape.h_len()];
            let mut c = vec![0.0; shape.h_len()];
            recurrence::forward(
                shape,
                Params {
                    weight_c: &weight_c,
                    bias: &bias,
                },
                &u_data,
                skip_data.as_deref(),
                &mut out,
                &mut c,
            );
            let h_leaf = Tensor::from_slice(&out)
                .view([steps as i64, batch as i64, d * h])
                .to_device(input.device())
                .set_requires_grad(target.is_some());
            x = h_leaf.shallow_clone();
            tapes.push(Tape {
                shape,
                u,
                skip,
                u_data,
                skip_data,
                c,
                weight_c,
                bias,
                h: h_leaf,
            });
        }
        let mask = x.matmul(&p("outfc.weight").tr());
        let mask = match cfg.mask {
            MaskKind::Linear => mask,
            MaskKind::Tanh => mask.tanh(),
        };
        let masked = mask.permute([1, 2, 0]) * &f_leaf;
        let output = masked
            .conv_transpose1d(
                p("deconv.weight"),
                None::<Tensor>,
                [stride],
                [stride],
                [0],
                1,
                [1],
            )
            .tanh();
        let Some((target, _)) = target else {
            return (output, None);
        };

        let loss = crate::loss::loss(&output, target, self.loss);
        loss.backward();
        for (layer, tape) in tapes.iter().enumerate().rev() {
            let name = |s: &str| format!("sru.rnn_lst.{layer}.{s}");
            let dh = to_vec(&tape.h.grad());
            let g = recurrence::backward(
                tape.shape,
                Params {
                    weight_c: &tape.weight_c,
                    bias: &tape.bias,
                },
                &tape.u_data,
                tape.skip_data.as_deref(),
                &tape.c,
                &dh,
            );
            let like = |v: &[f32], t: &Tensor| {
                Tensor::from_slice(v)
                    .view(t.size().as_slice())
                    .to_device(t.device())
            };
            let mut surrogate = (&tape.u * like(&g.u, &tape.u)).sum(Kind::Float);
            if let (Some(skip), Some(gs)) = (&tape.skip, &g.skip) {
                surrogate += (skip * like(gs, skip)).sum(Kind::Float);
            }
            let (pw, pb) = (p(&name("weight_c")), p(&name("bias")));
            surrogate += (pw * like(&g.weight_c, pw)).sum(Kind::Float)
                + (pb * like(&g.bias, pb)).sum(Kind::Float);
            surrogate.backward();
        }
        (f * f_leaf.grad()).sum(Kind::Float).backward();
        (output, Some(f64::try_from(&loss).unwrap_or(f64::NAN)))
    }
}
