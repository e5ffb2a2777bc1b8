//! The SRU recurrence's forward (keeping every cell state) and its backward, over plain
//! slices: all directions, batch items and units.
//!
//! Layout: U is time-major `(steps, batch, directions * k * hidden)` with columns in
//! [direction][k][unit] order (the engine's layout); the skip input and the hidden output are
//! `(steps, batch, directions * hidden)`.
//!
//! Each (direction, batch item) pair is an independent walk through time, and units are
//! independent within a walk: the kernels take a block of units through every step with its
//! state in vector registers (the engine's [`Lanes`] arithmetic, AVX2 where the CPU has it),
//! and the walks are shared out over LibTorch's thread count, which sits idle meanwhile.

use std::sync::atomic::{AtomicU64, Ordering};

use wavecrn_engine::sru::lanes::{sigmoid, Lanes};
use wavecrn_engine::sru::Kernel;

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
    fn u_at(&self, t: usize, b: usize, dir: usize) -> usize {
        ((t * self.batch + b) * self.directions + dir) * self.k * self.hidden
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

/// Gradients of the recurrence's inputs.
pub struct Grads {
    /// Same layout as U (the fourth slice holds the skip's gradient when k == 4).
    pub u: Vec<f32>,
    /// The skip input's gradient (k == 3), same layout as `h`.
    pub skip: Option<Vec<f32>>,
    pub weight_c: Vec<f32>,
    pub bias: Vec<f32>,
}

/// Runs the forward pass; fills `h` (the output) and `c` (every step's cell state, same
/// shape as `h`), starting from zero state.
pub fn forward(s: Shape, p: Params, u: &[f32], skip: Option<&[f32]>, h: &mut [f32], c: &mut [f32]) {
    forward_with(best_kernel(), threads(), s, p, u, skip, h, c)
}

/// [`forward`] with a chosen kernel and thread count (for tests and comparisons).
#[allow(clippy::too_many_arguments)]
pub fn forward_with(
    kernel: Kernel,
    threads: usize,
    s: Shape,
    p: Params,
    u: &[f32],
    skip: Option<&[f32]>,
    h: &mut [f32],
    c: &mut [f32],
) {
    let walk = Walk::new(kernel, s, p, u, skip);
    assert_eq!((h.len(), c.len()), (s.h_len(), s.h_len()));
    let (h, c) = (Out(h.as_mut_ptr()), Out(c.as_mut_ptr()));
    timed(|| {
        // SAFETY: `Walk::new` checked every input's length and the kernel's support, the
        // outputs were checked above, and each walk writes only its own (direction, batch
        // item) slots.
        walk.share_out(threads, |dir, b| unsafe { walk.forward(dir, b, h, c) })
    })
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
    backward_with(best_kernel(), threads(), s, p, u, skip, c, dh)
}

/// [`backward`] with a chosen kernel and thread count (for tests and comparisons).
#[allow(clippy::too_many_arguments)]
pub fn backward_with(
    kernel: Kernel,
    threads: usize,
    s: Shape,
    p: Params,
    u: &[f32],
    skip: Option<&[f32]>,
    c: &[f32],
    dh: &[f32],
) -> Grads {
    let walk = Walk::new(kernel, s, p, u, skip);
    assert_eq!((dh.len(), c.len()), (s.h_len(), s.h_len()));
    let (n, d) = (s.hidden, s.directions);
    let mut g = Grads {
        u: vec![0.0; s.u_len()],
        skip: skip.map(|_| vec![0.0; s.h_len()]),
        weight_c: vec![0.0; 2 * d * n],
        bias: vec![0.0; 2 * d * n],
    };
    // Each walk's parameter gradients land in its own slot (forget weight, reset weight,
    // forget bias, reset bias), summed below in a fixed order: the result does not depend
    // on the thread count.
    let mut per_walk = vec![0.0f32; d * s.batch * 4 * n];
    let outs = BackwardOut {
        u: Out(g.u.as_mut_ptr()),
        skip: g.skip.as_mut().map(|v| Out(v.as_mut_ptr())),
        params: Out(per_walk.as_mut_ptr()),
    };
    timed(|| {
        // SAFETY: as in `forward_with`; each walk writes its own slots of U's gradient, the
        // skip's gradient and `per_walk`.
        walk.share_out(threads, |dir, b| unsafe {
            walk.backward(dir, b, c, dh, &outs)
        })
    });
    for dir in 0..d {
        for b in 0..s.batch {
            let slot = &per_walk[(dir * s.batch + b) * 4 * n..][..4 * n];
            for j in 0..n {
                g.weight_c[dir * n + j] += slot[j];
                g.weight_c[(d + dir) * n + j] += slot[n + j];
                g.bias[dir * n + j] += slot[2 * n + j];
                g.bias[(d + dir) * n + j] += slot[3 * n + j];
            }
        }
    }
    g
}

/// The fastest kernel this CPU runs, found once (the CPU feature probe is not free).
fn best_kernel() -> Kernel {
    static BEST: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
    *BEST.get_or_init(Kernel::best)
}

/// LibTorch's thread count: the cores the matrix products use, idle during the recurrence.
fn threads() -> usize {
    tch::get_num_threads().max(1) as usize
}

/// A raw output pointer that walks on different threads write through, each into its own
/// elements.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: only ever written at disjoint indices by concurrent walks.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

struct BackwardOut {
    u: Out,
    skip: Option<Out>,
    params: Out,
}

/// One layer's recurrence inputs, checked, with the kernel to run them.
struct Walk<'a> {
    kernel: Kernel,
    s: Shape,
    p: Params<'a>,
    u: &'a [f32],
    skip: Option<&'a [f32]>,
}

impl<'a> Walk<'a> {
    fn new(kernel: Kernel, s: Shape, p: Params<'a>, u: &'a [f32], skip: Option<&'a [f32]>) -> Self {
        assert!(kernel.is_supported(), "{kernel:?} is not supported here");
        assert_eq!(u.len(), s.u_len());
        assert_eq!(skip.is_some(), s.k == 3);
        if let Some(x) = skip {
            assert_eq!(x.len(), s.h_len());
        }
        let params = 2 * s.directions * s.hidden;
        assert_eq!((p.weight_c.len(), p.bias.len()), (params, params));
        Walk {
            kernel,
            s,
            p,
            u,
            skip,
        }
    }

    /// Runs `walk(direction, batch item)` for every pair, in contiguous runs over up to
    /// `threads` threads (with two directions and two threads: one direction each).
    fn share_out(&self, threads: usize, walk: impl Fn(usize, usize) + Sync) {
        let items = self.s.directions * self.s.batch;
        let threads = threads.clamp(1, items.max(1));
        let run = |range: std::ops::Range<usize>| {
            for item in range {
                walk(item / self.s.batch, item % self.s.batch);
            }
        };
        if threads == 1 {
            return run(0..items);
        }
        let per = items.div_ceil(threads);
        std::thread::scope(|scope| {
            for t in 1..threads {
                let run = &run;
                scope.spawn(move || run(t * per..((t + 1) * per).min(items)));
            }
            run(0..per.min(items));
        });
    }

    /// Direction `dir`'s forget and reset weights, then biases, each `hidden` long.
    fn direction_params(&self, dir: usize) -> [&'a [f32]; 4] {
        let (n, d) = (self.s.hidden, self.s.directions);
        let gate = |v: &'a [f32], g: usize| &v[(g * d + dir) * n..][..n];
        [
            gate(self.p.weight_c, 0),
            gate(self.p.weight_c, 1),
            gate(self.p.bias, 0),
            gate(self.p.bias, 1),
        ]
    }

    /// Where the skip value of unit 0 at (t, b, dir) sits: in `skip`, or U's fourth slot.
    fn skip_ptr(&self, t: usize, b: usize, dir: usize) -> *const f32 {
        match self.skip {
            Some(x) => x[self.s.h_at(t, b, dir)..].as_ptr(),
            None => self.u[self.s.u_at(t, b, dir) + 3 * self.s.hidden..].as_ptr(),
        }
    }

    /// # Safety
    /// `h` and `c` must hold `h_len` values; no other walk may write (dir, b)'s slots.
    unsafe fn forward(&self, dir: usize, b: usize, h: Out, c: Out) {
        match self.kernel {
            Kernel::Scalar => self.forward_units::<f32>(dir, b, 0, h, c),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => simd::forward_avx2(self, dir, b, h, c),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => simd::forward_avx512(self, dir, b, h, c),
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!(),
        }
    }

    /// # Safety
    /// As [`Walk::forward`], for U's and the skip's gradients and (dir, b)'s `params` slot.
    unsafe fn backward(&self, dir: usize, b: usize, c: &[f32], dh: &[f32], out: &BackwardOut) {
        match self.kernel {
            Kernel::Scalar => self.backward_units::<f32>(dir, b, 0, c, dh, out),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => simd::backward_avx2(self, dir, b, c, dh, out),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => simd::backward_avx512(self, dir, b, c, dh, out),
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!(),
        }
    }

    /// Units from `j` to the end, in blocks of four vectors (sixteen units with one lane),
    /// then single vectors, then one lane at a time.
    #[inline(always)]
    unsafe fn forward_units<V: Lanes>(&self, dir: usize, b: usize, mut j: usize, h: Out, c: Out) {
        let n = self.s.hidden;
        if V::N == 1 {
            // One lane: a cache line of units per block, so each line is fetched once.
            while j + 16 <= n {
                self.forward_block::<V, 16>(dir, b, j, h, c);
                j += 16;
            }
        }
        while j + 4 * V::N <= n {
            self.forward_block::<V, 4>(dir, b, j, h, c);
            j += 4 * V::N;
        }
        while j + V::N <= n {
            self.forward_block::<V, 1>(dir, b, j, h, c);
            j += V::N;
        }
        while j < n {
            self.forward_block::<f32, 1>(dir, b, j, h, c);
            j += 1;
        }
    }

    #[inline(always)]
    unsafe fn backward_units<V: Lanes>(
        &self,
        dir: usize,
        b: usize,
        mut j: usize,
        c: &[f32],
        dh: &[f32],
        out: &BackwardOut,
    ) {
        let n = self.s.hidden;
        if V::N == 1 {
            // One lane: a cache line of units per block, so each line is fetched once.
            while j + 16 <= n {
                self.backward_block::<V, 16>(dir, b, j, c, dh, out);
                j += 16;
            }
        }
        while j + 4 * V::N <= n {
            self.backward_block::<V, 4>(dir, b, j, c, dh, out);
            j += 4 * V::N;
        }
        while j + V::N <= n {
            self.backward_block::<V, 1>(dir, b, j, c, dh, out);
            j += V::N;
        }
        while j < n {
            self.backward_block::<f32, 1>(dir, b, j, c, dh, out);
            j += 1;
        }
    }

    /// Units `j0 .. j0 + G * N` of walk (dir, b), forward through every step.
    #[allow(clippy::needless_range_loop)] // several arrays share each index
    #[inline(always)]
    unsafe fn forward_block<V: Lanes, const G: usize>(
        &self,
        dir: usize,
        b: usize,
        j0: usize,
        h: Out,
        c: Out,
    ) {
        let (s, n) = (self.s, self.s.hidden);
        let [vf, vr, bf, br] = self.direction_params(dir).map(|v| lanes::<V, G>(&v[j0..]));
        let mut cs = [V::splat(0.0); G];
        let u = self.u.as_ptr().add(j0);
        for i in 0..s.steps {
            let t = s.step(dir, i);
            let (ua, ha) = (s.u_at(t, b, dir), s.h_at(t, b, dir) + j0);
            let sk = self.skip_ptr(t, b, dir).add(j0);
            for g in 0..G {
                let l = g * V::N;
                let x0 = V::load(u.add(ua + l));
                let f = sigmoid(vf[g].mul_add(cs[g], V::load(u.add(ua + n + l)).add(bf[g])));
                let r = sigmoid(vr[g].mul_add(cs[g], V::load(u.add(ua + 2 * n + l)).add(br[g])));
                cs[g] = cs[g].sub(x0).mul_add(f, x0);
                cs[g].store(c.0.add(ha + l));
                let x = V::load(sk.add(l));
                cs[g].sub(x).mul_add(r, x).store(h.0.add(ha + l));
            }
        }
    }

    /// Units `j0 .. j0 + G * N` of walk (dir, b), backward through every step.
    #[allow(clippy::needless_range_loop)] // several arrays share each index
    #[inline(always)]
    unsafe fn backward_block<V: Lanes, const G: usize>(
        &self,
        dir: usize,
        b: usize,
        j0: usize,
        c: &[f32],
        dh: &[f32],
        out: &BackwardOut,
    ) {
        let (s, n) = (self.s, self.s.hidden);
        let [vf, vr, bf, br] = self.direction_params(dir).map(|v| lanes::<V, G>(&v[j0..]));
        let (zero, one) = (V::splat(0.0), V::splat(1.0));
        // Gradient reaching c_t from later steps, and the parameter gradients' running sums.
        let mut dc_next = [zero; G];
        let mut sums = [[zero; G]; 4];
        let u = self.u.as_ptr().add(j0);
        let du = out.u.0.add(j0);
        for i in (0..s.steps).rev() {
            let t = s.step(dir, i);
            let (ua, ha) = (s.u_at(t, b, dir), s.h_at(t, b, dir) + j0);
            let prev_at = (i > 0).then(|| s.h_at(s.step(dir, i - 1), b, dir) + j0);
            let sk = self.skip_ptr(t, b, dir).add(j0);
            let dsk = match out.skip {
                Some(gs) => gs.0.add(ha),
                None => du.add(ua + 3 * n),
            };
            for g in 0..G {
                let l = g * V::N;
                let prev = prev_at.map_or(zero, |pa| V::load(c.as_ptr().add(pa + l)));
                let x0 = V::load(u.add(ua + l));
                let f = sigmoid(vf[g].mul_add(prev, V::load(u.add(ua + n + l)).add(bf[g])));
                let r = sigmoid(vr[g].mul_add(prev, V::load(u.add(ua + 2 * n + l)).add(br[g])));
                let (cj, x, dhj) = (
                    V::load(c.as_ptr().add(ha + l)),
                    V::load(sk.add(l)),
                    V::load(dh.as_ptr().add(ha + l)),
                );
                // h = s + (c - s) r
                let dc = dhj.mul_add(r, dc_next[g]);
                let dr_pre = dhj.mul(cj.sub(x)).mul(r).mul(one.sub(r));
                dhj.mul(one.sub(r)).store(dsk.add(l));
                // c = u0 + (prev - u0) f
                let df_pre = dc.mul(prev.sub(x0)).mul(f).mul(one.sub(f));
                dc.mul(one.sub(f)).store(du.add(ua + l));
                df_pre.store(du.add(ua + n + l));
                dr_pre.store(du.add(ua + 2 * n + l));
                sums[0][g] = df_pre.mul_add(prev, sums[0][g]);
                sums[1][g] = dr_pre.mul_add(prev, sums[1][g]);
                sums[2][g] = sums[2][g].add(df_pre);
                sums[3][g] = sums[3][g].add(dr_pre);
                dc_next[g] = dr_pre.mul_add(vr[g], df_pre.mul_add(vf[g], dc.mul(f)));
            }
        }
        let slot = out.params.0.add((dir * s.batch + b) * 4 * n + j0);
        for (k, sum) in sums.iter().enumerate() {
            for g in 0..G {
                sum[g].store(slot.add(k * n + g * V::N));
            }
        }
    }
}

/// `G` vectors loaded from the start of `v`.
#[inline(always)]
unsafe fn lanes<V: Lanes, const G: usize>(v: &[f32]) -> [V; G] {
    std::array::from_fn(|g| V::load(v[g * V::N..][..V::N].as_ptr()))
}

/// The kernels compiled for each instruction set.
#[cfg(target_arch = "x86_64")]
mod simd {
    use super::{BackwardOut, Out, Walk};
    use wavecrn_engine::sru::lanes::{Avx2, Avx512};

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn forward_avx2(w: &Walk, dir: usize, b: usize, h: Out, c: Out) {
        w.forward_units::<Avx2>(dir, b, 0, h, c)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn forward_avx512(w: &Walk, dir: usize, b: usize, h: Out, c: Out) {
        w.forward_units::<Avx512>(dir, b, 0, h, c)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn backward_avx2(
        w: &Walk,
        dir: usize,
        b: usize,
        c: &[f32],
        dh: &[f32],
        out: &BackwardOut,
    ) {
        w.backward_units::<Avx2>(dir, b, 0, c, dh, out)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn backward_avx512(
        w: &Walk,
        dir: usize,
        b: usize,
        c: &[f32],
        dh: &[f32],
        out: &BackwardOut,
    ) {
        w.backward_units::<Avx512>(dir, b, 0, c, dh, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize, scale: f32, seed: &mut u64) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((*seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    type Run = (
        Vec<f32>,
        Vec<f32>,
        Vec<f32>,
        Option<Vec<f32>>,
        Vec<f32>,
        Vec<f32>,
    );

    fn run(kernel: Kernel, threads: usize, s: Shape, seed: u64) -> Run {
        let mut seed = seed;
        let u = random(s.u_len(), 2.0, &mut seed);
        let skip = (s.k == 3).then(|| random(s.h_len(), 1.0, &mut seed));
        let wc = random(2 * s.directions * s.hidden, 1.0, &mut seed);
        let bias = random(2 * s.directions * s.hidden, 0.5, &mut seed);
        let dh = random(s.h_len(), 1.0, &mut seed);
        let p = Params {
            weight_c: &wc,
            bias: &bias,
        };
        let (mut h, mut c) = (vec![f32::NAN; s.h_len()], vec![f32::NAN; s.h_len()]);
        forward_with(kernel, threads, s, p, &u, skip.as_deref(), &mut h, &mut c);
        let g = backward_with(kernel, threads, s, p, &u, skip.as_deref(), &c, &dh);
        (h, c, g.u, g.skip, g.weight_c, g.bias)
    }

    fn shapes() -> Vec<Shape> {
        [
            (5, 1, 3, 1, 3),
            (7, 3, 17, 2, 3),
            (6, 2, 40, 2, 4),
            (9, 3, 33, 1, 4),
            (4, 2, 256, 2, 3),
        ]
        .map(|(steps, batch, hidden, directions, k)| Shape {
            steps,
            batch,
            hidden,
            directions,
            k,
        })
        .to_vec()
    }

    /// The thread count changes nothing, to the bit (training resumes exactly).
    #[test]
    fn threads_do_not_change_the_result() {
        for (i, s) in shapes().into_iter().enumerate() {
            let one = run(Kernel::best(), 1, s, i as u64);
            for threads in [2, 3, 7] {
                assert!(run(Kernel::best(), threads, s, i as u64) == one, "{s:?}");
            }
        }
    }

    /// Every SIMD kernel gives the one-lane kernel's numbers up to FMA rounding (the one-lane
    /// kernel is checked against LibTorch autograd in tests/gradcheck.rs).
    #[test]
    fn simd_kernels_equal_the_one_lane_kernel() {
        for (i, s) in shapes().into_iter().enumerate() {
            let want = run(Kernel::Scalar, 1, s, i as u64);
            for kernel in Kernel::available() {
                let got = run(kernel, 2, s, i as u64);
                let pairs = [
                    (&got.0, &want.0),
                    (&got.1, &want.1),
                    (&got.2, &want.2),
                    (&got.4, &want.4),
                    (&got.5, &want.5),
                ];
                for (name, (a, b)) in ["h", "c", "dU", "dweight_c", "dbias"].iter().zip(pairs) {
                    let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
                    let err = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                    assert!(err <= 1e-5 * scale, "{kernel:?} {s:?} {name}: {err}");
                }
                assert_eq!(got.3.is_some(), want.3.is_some());
            }
        }
    }
}
