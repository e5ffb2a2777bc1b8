//! A one-direction (causal) model run hop by hop, its recurrent state carried from one hop to
//! the next: the low-latency path. It reads the weights out of the same ONNX file the tract
//! engine runs, in the exporter's layouts, and computes what that graph computes.

use super::stage::ModelStage;
use crate::config::{MaskKind, ModelConfig};
use crate::error::{Error, Result};
use crate::model_file::StoredWeights;
use crate::sru::kernel::{Kernel, Layout, Recurrence, Seq};

struct Layer {
    input: usize,
    k: usize,
    norm_weight: Vec<f32>,
    norm_bias: Vec<f32>,
    /// (input, k * hidden), columns gate by gate.
    project: Vec<f32>,
    /// The skip connection's scale (one value for all units), when the layer has one.
    scale_x: Option<f32>,
    v_f: Vec<f32>,
    v_r: Vec<f32>,
    b_f: Vec<f32>,
    b_r: Vec<f32>,
}

/// The causal model as a hop-by-hop stream stage.
pub struct CausalStage {
    config: ModelConfig,
    kernel: Kernel,
    encoder: Vec<f32>,
    decoder: Vec<f32>,
    /// (hidden, channels).
    mask: Vec<f32>,
    layers: Vec<Layer>,
    channels: usize,
    /// Per channel: input not yet part of a finished frame (the last hop is kept, as frames
    /// overlap by one hop).
    pending: Vec<Vec<f32>>,
    /// Per layer: the recurrent state, (channels, hidden).
    state: Vec<Vec<f32>>,
    /// Per channel: the second half of the last frame's decoder output.
    tail: Vec<Vec<f32>>,
    frames_done: usize,
    scratch: Scratch,
}

#[derive(Default)]
struct Scratch {
    windows: Vec<f32>,
    features: Vec<f32>,
    h: Vec<f32>,
    normed: Vec<f32>,
    u: Vec<f32>,
    skip: Vec<f32>,
    next: Vec<f32>,
    masked: Vec<f32>,
    decoded: Vec<f32>,
}

impl CausalStage {
    /// Reads a causal model from ONNX bytes written by `wavecrn`'s exporter.
    pub fn from_onnx(bytes: &[u8], channels: usize) -> Result<Self> {
        let bad = |why: String| Error::Model(why);
        let mut stored = StoredWeights::parse(bytes)?;
        let config = stored.config.clone();
        if config.directions != 1 {
            return Err(bad(
                "hop-by-hop streaming needs a one-direction (causal) model".into(),
            ));
        }
        if config.kernel != 2 * config.stride {
            return Err(bad("hop-by-hop streaming needs kernel = 2 x stride".into()));
        }
        let mut take = |name: &str, len: usize| stored.take(name, len);
        let (c, kernel) = (config.channels, config.kernel);
        let encoder = take("conv.weight", c * kernel)?;
        let decoder = take("deconv.weight", c * kernel)?;
        let hidden = config.hidden();
        let mask = take("outfc.weight.transposed", hidden * c)?;
        let mut layers = Vec::new();
        for i in 0..config.layers {
            let shape = config.layer(i);
            let p = |s: &str| format!("sru.rnn_lst.{i}.{s}");
            layers.push(Layer {
                input: shape.input,
                k: shape.k,
                norm_weight: take(&p("layer_norm.weight"), shape.input)?,
                norm_bias: take(&p("layer_norm.bias"), shape.input)?,
                project: take(&p("weight.gate_major"), shape.input * shape.k * hidden)?,
                scale_x: if shape.k == 3 {
                    Some(take(&p("scale_x"), 1)?[0])
                } else {
                    None
                },
                v_f: take(&p("v_f.d0"), hidden)?,
                v_r: take(&p("v_r.d0"), hidden)?,
                b_f: take(&p("b_f.d0"), hidden)?,
                b_r: take(&p("b_r.d0"), hidden)?,
            });
        }
        let mut stage = Self {
            kernel: Kernel::best(),
            encoder,
            decoder,
            mask,
            state: vec![vec![0.0; channels * hidden]; layers.len()],
            layers,
            channels,
            pending: vec![Vec::new(); channels],
            tail: vec![Vec::new(); channels],
            frames_done: 0,
            scratch: Scratch::default(),
            config,
        };
        stage.start_over();
        Ok(stage)
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Silence before the stream, zero state; buffers keep their capacity.
    fn start_over(&mut self) {
        let hop = self.config.stride;
        // The encoder pads the signal's start with one hop of zeros.
        for v in self.pending.iter_mut().chain(&mut self.tail) {
            v.clear();
            v.resize(hop, 0.0);
        }
        for s in &mut self.state {
            s.fill(0.0);
        }
        self.frames_done = 0;
    }

    /// Runs `frames` complete frames (all channels) through the network and appends each
    /// finished hop of output.
    fn run_frames(&mut self, frames: usize, output: &mut [Vec<f32>]) {
        let cfg = &self.config;
        let (hop, kernel, c, hidden, ch) = (
            cfg.stride,
            cfg.kernel,
            cfg.channels,
            cfg.hidden(),
            self.channels,
        );
        let rows = frames * ch; // time-major: row = frame * channels + channel
        let s = &mut self.scratch;
        s.windows.clear();
        for f in 0..frames {
            for p in &self.pending {
                s.windows.extend_from_slice(&p[f * hop..f * hop + kernel]);
            }
        }
        // Encoder: one dot product per output channel and frame.
        s.features.resize(rows * c, 0.0);
        for r in 0..rows {
            let w = &s.windows[r * kernel..(r + 1) * kernel];
            for o in 0..c {
                s.features[r * c + o] = dot(&self.encoder[o * kernel..(o + 1) * kernel], w);
            }
        }
        s.h.clear();
        s.h.extend_from_slice(&s.features);
        for (layer, state) in self.layers.iter().zip(&mut self.state) {
            let (n, k) = (layer.input, layer.k);
            s.normed.resize(rows * n, 0.0);
            for r in 0..rows {
                layer_norm(
                    &s.h[r * n..(r + 1) * n],
                    &layer.norm_weight,
                    &layer.norm_bias,
                    &mut s.normed[r * n..(r + 1) * n],
                );
            }
            matmul(&s.normed, &layer.project, rows, n, k * hidden, &mut s.u);
            let cols = k * hidden;
            let gate = |g: usize| Layout {
                offset: g * hidden,
                t_stride: ch * cols,
                b_stride: cols,
            };
            let skip = match &layer.scale_x {
                Some(scale) => {
                    let scale = *scale;
                    s.skip.resize(rows * n, 0.0);
                    for r in 0..rows {
                        for j in 0..n {
                            s.skip[r * n + j] = s.h[r * n + j] * scale;
                        }
                    }
                    Seq {
                        data: &s.skip,
                        layout: Layout::contiguous(ch, hidden),
                    }
                }
                None => Seq {
                    data: &s.u,
                    layout: gate(3),
                },
            };
            let recurrence = Recurrence {
                steps: frames,
                batch: ch,
                hidden,
                reverse: false,
                u0: Seq {
                    data: &s.u,
                    layout: gate(0),
                },
                u1: Seq {
                    data: &s.u,
                    layout: gate(1),
                },
                u2: Seq {
                    data: &s.u,
                    layout: gate(2),
                },
                skip,
                v_f: &layer.v_f,
                v_r: &layer.v_r,
                b_f: &layer.b_f,
                b_r: &layer.b_r,
            };
            s.next.resize(rows * hidden, 0.0);
            recurrence.run(
                self.kernel,
                state,
                &mut s.next,
                Layout::contiguous(ch, hidden),
            );
            std::mem::swap(&mut s.h, &mut s.next);
        }
        matmul(&s.h, &self.mask, rows, hidden, c, &mut s.masked);
        for (m, f) in s.masked.iter_mut().zip(&s.features) {
            let gain = match cfg.mask {
                MaskKind::Linear => *m,
                MaskKind::Tanh => m.tanh(),
            };
            *m = gain * f;
        }
        matmul(&s.masked, &self.decoder, rows, c, kernel, &mut s.decoded);
        for f in 0..frames {
            let frame = self.frames_done + f;
            for (chan, (tail, out)) in self.tail.iter_mut().zip(output.iter_mut()).enumerate() {
                let y = &s.decoded[(f * ch + chan) * kernel..(f * ch + chan + 1) * kernel];
                // Frame 0 finishes the hop before the signal starts: nothing to release.
                if frame > 0 {
                    out.extend(tail.iter().zip(&y[..hop]).map(|(a, b)| (a + b).tanh()));
                }
                tail.copy_from_slice(&y[hop..]);
            }
        }
        self.frames_done += frames;
        for p in &mut self.pending {
            p.drain(..frames * hop);
        }
        // A non-finite value in the recurrent state would never leave it: the output would
        // stay non-finite (dry, at the audio side) for good. Start the state over instead;
        // the hops already out show as non-finite and fall back to dry there, counted.
        if self.state.iter().flatten().any(|v| !v.is_finite()) {
            for s in &mut self.state {
                s.fill(0.0);
            }
            for t in &mut self.tail {
                t.fill(0.0);
            }
        }
    }
}

impl ModelStage for CausalStage {
    fn lag(&self) -> usize {
        self.config.kernel
    }

    fn reset(&mut self) {
        self.start_over();
    }

    fn process(&mut self, input: &[Vec<f32>], output: &mut [Vec<f32>]) -> Result<()> {
        for (p, i) in self.pending.iter_mut().zip(input) {
            p.extend_from_slice(i);
        }
        let hop = self.config.stride;
        let frames = (self.pending[0].len() / hop).saturating_sub(1);
        if frames > 0 {
            self.run_frames(frames, output);
        }
        Ok(())
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums let the compiler vectorise the loop.
    let mut acc = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let rest: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + rest
}

/// `out` (rows x n) = `a` (rows x k) times `b` (k x n), row-major.
fn matmul(a: &[f32], b: &[f32], rows: usize, k: usize, n: usize, out: &mut Vec<f32>) {
    out.clear();
    out.resize(rows * n, 0.0);
    // Each row of `b` is read once for all rows of `a`, while it sits in cache.
    for kk in 0..k {
        let brow = &b[kk * n..(kk + 1) * n];
        for r in 0..rows {
            let s = a[r * k + kk];
            for (o, w) in out[r * n..(r + 1) * n].iter_mut().zip(brow) {
                *o += s * w;
            }
        }
    }
}

fn layer_norm(x: &[f32], weight: &[f32], bias: &[f32], out: &mut [f32]) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / (var + 1e-5).sqrt();
    for (((o, v), w), b) in out.iter_mut().zip(x).zip(weight).zip(bias) {
        *o = (v - mean) * inv * w + b;
    }
}
