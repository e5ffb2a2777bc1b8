//! The SRU recurrence's forward (keeping every cell state) and its backward, over plain
//! slices: one direction, all batch items, all units.
//!
//! Layout: U is time-major `(steps, batch, directions * k * hidden)` with columns in
//! [direction][k][unit] order (the engine's layout); the skip input and the hidden output are
//! `(steps, batch, directions * hidden)`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Nanoseconds spent in [`forward`] and [`backward`] since start, for the training benchmark.
pub static NANOS: AtomicU64 = AtomicU64::new(0);

fn timed<T>(f: impl FnOnce() -> T) -> T {
    let t = std::time::Instant::now();
    let out = f();
    NANOS.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
    out
}

/// Shape of one layer's recurrence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub steps: usize,
    pub batch: usize,
    pub hidden: usize,
    pub directions: usize,
    /// 3: skip is the layer input; 4: skip is U's fourth slice.
    pub k: usize,
}

impl Shape {
    fn u_at(&self, t: usize, b: usize, dir: usize, slot: usize) -> usize {
        ((t * self.batch + b) * self.directions * self.k + dir * self.k + slot) * self.hidden
    }

    fn h_at(&self, t: usize, b: usize, dir: usize) -> usize {
        ((t * self.batch + b) * self.directions + dir) * self.hidden
    }

    /// Step `i` of direction `dir`'s walk (direction 1 runs backwards in time).
    fn step(&self, dir: usize, i: usize) -> usize {
        if dir == 1 {
            self.steps - 1 - i
        } else {
            i
        }
    }

    pub fn u_len(&self) -> usize {
        self.steps * self.batch * self.directions * self.k * self.hidden
    }

    pub fn h_len(&self) -> usize {
        self.steps * self.batch * self.directions * self.hidden
    }
}

/// Recurrent weights and biases, each `(2 * directions * hidden)` in the reference layout
/// [gate][direction][unit] (gate 0 = forget, 1 = reset).
#[derive(Clone, Copy, Debug)]
pub struct Params<'a> {
    pub weight_c: &'a [f32],
    pub bias: &'a [f32],
}

impl<'a> Params<'a> {
    /// Direction `dir`'s forget and reset weights, then biases, each `n` long.
    fn direction(&self, dir: usize, d: usize, n: usize) -> [&'a [f32]; 4] {
        let gate = |v: &'a [f32], g: usize| &v[(g * d + dir) * n..][..n];
        [
            gate(self.weight_c, 0),
            gate(self.weight_c, 1),
            gate(self.bias, 0),
            gate(self.bias, 1),
        ]
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The per-unit values of one step, shared by forward and backward.
struct Gates {
    f: f32,
    r: f32,
}

/// Runs the forward pass; fills `h` (the output) and `c` (every step's cell state, same
/// shape as `h`), starting from zero state.
pub fn forward(s: Shape, p: Params, u: &[f32], skip: Option<&[f32]>, h: &mut [f32], c: &mut [f32]) {
    timed(|| forward_untimed(s, p, u, skip, h, c))
}

fn forward_untimed(
    s: Shape,
    p: Params,
    u: &[f32],
    skip: Option<&[f32]>,
    h: &mut [f32],
    c: &mut [f32],
) {
    assert_eq!(u.len(), s.u_len());
    assert_eq!((h.len(), c.len()), (s.h_len(), s.h_len()));
    assert_eq!(skip.is_some(), s.k == 3);
    let (n, d) = (s.hidden, s.directions);
    for dir in 0..d {
        let [vf, vr, bf, br] = p.direction(dir, d, n);
        for b in 0..s.batch {
            let mut prev = vec![0.0f32; n];
            for i in 0..s.steps {
                let t = s.step(dir, i);
                let (u0, u1, u2) = (
                    s.u_at(t, b, dir, 0),
                    s.u_at(t, b, dir, 1),
                    s.u_at(t, b, dir, 2),
                );
                let at = s.h_at(t, b, dir);
                for j in 0..n {
                    let g = gates(u[u1 + j], u[u2 + j], prev[j], vf[j], vr[j], bf[j], br[j]);
                    let cj = u[u0 + j] + (prev[j] - u[u0 + j]) * g.f;
                    let sk = match skip {
                        Some(x) => x[at + j],
                        None => u[s.u_at(t, b, dir, 3) + j],
                    };
                    c[at + j] = cj;
                    h[at + j] = sk + (cj - sk) * g.r;
                    prev[j] = cj;
                }
            }
        }
    }
}

#[inline(always)]
fn gates(u1: f32, u2: f32, prev: f32, vf: f32, vr: f32, bf: f32, br: f32) -> Gates {
    Gates {
        f: sigmoid(u1 + bf + vf * prev),
        r: sigmoid(u2 + br + vr * prev),
    }
}

/// Gradients of the recurrence's inputs.
pub struct Grads {
    /// Same layout as U (the fourth slice holds the skip's gradient when k == 4).
    pub u: Vec<f32>,
    /// The skip input's gradient (k == 3), same layout as `h`.
    pub skip: Option<Vec<f32>>,
    pub weight_c: Vec<f32>,
    pub bias: Vec<f32>,
}

/// Backpropagates `dh` (the gradient of the loss with respect to `h`) through the recurrence,
/// given the forward's inputs and its saved cell states `c`. The final state is not an
/// output, so no gradient flows into it.
pub fn backward(
    s: Shape,
    p: Params,
    u: &[f32],
    skip: Option<&[f32]>,
    c: &[f32],
    dh: &[f32],
) -> Grads {
    assert_eq!((dh.len(), c.len()), (s.h_len(), s.h_len()));
    let (n, d) = (s.hidden, s.directions);
    let mut g = Grads {
        u: vec![0.0; s.u_len()],
        skip: skip.map(|_| vec![0.0; s.h_len()]),
        weight_c: vec![0.0; 2 * d * n],
        bias: vec![0.0; 2 * d * n],
    };
    for dir in 0..d {
        let [vf, vr, bf, br] = p.direction(dir, d, n);
        for b in 0..s.batch {
            // Gradient reaching c_t from later steps.
            let mut dc_next = vec![0.0f32; n];
            for i in (0..s.steps).rev() {
                let t = s.step(dir, i);
                let (u0, u1, u2) = (
                    s.u_at(t, b, dir, 0),
                    s.u_at(t, b, dir, 1),
                    s.u_at(t, b, dir, 2),
                );
                let at = s.h_at(t, b, dir);
                let prev_at = (i > 0).then(|| s.h_at(s.step(dir, i - 1), b, dir));
                for j in 0..n {
                    let prev = prev_at.map_or(0.0, |pa| c[pa + j]);
                    let gt = gates(u[u1 + j], u[u2 + j], prev, vf[j], vr[j], bf[j], br[j]);
                    let cj = c[at + j];
                    let (sk, sk_grad) = match skip {
                        Some(x) => (x[at + j], at + j),
                        None => (u[s.u_at(t, b, dir, 3) + j], s.u_at(t, b, dir, 3) + j),
                    };
                    let dhj = dh[at + j];
                    // h = s + (c - s) r
                    let dc = dc_next[j] + dhj * gt.r;
                    let dr_pre = dhj * (cj - sk) * gt.r * (1.0 - gt.r);
                    let ds = dhj * (1.0 - gt.r);
                    // c = u0 + (prev - u0) f
                    let df_pre = dc * (prev - u[u0 + j]) * gt.f * (1.0 - gt.f);
                    g.u[u0 + j] = dc * (1.0 - gt.f);
                    g.u[u1 + j] = df_pre;
                    g.u[u2 + j] = dr_pre;
                    match &mut g.skip {
                        Some(gs) => gs[sk_grad] = ds,
                        None => g.u[sk_grad] = ds,
                    }
                    g.weight_c[dir * n + j] += df_pre * prev;
                    g.weight_c[(d + dir) * n + j] += dr_pre * prev;
                    g.bias[dir * n + j] += df_pre;
                    g.bias[(d + dir) * n + j] += dr_pre;
                    dc_next[j] = dc * gt.f + df_pre * vf[j] + dr_pre * vr[j];
                }
            }
        }
    }
    g
}
