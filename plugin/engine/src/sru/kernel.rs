//! Fused SRU recurrence kernels: a scalar reference and SIMD versions picked at run time.
//!
//! Units are independent of each other, so each kernel walks a block of units through all
//! time steps with the cell state held in registers, and interleaves several blocks so the
//! sigmoid's latency chain of one block overlaps the others'.

/// Which implementation runs the recurrence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Plain Rust, one unit at a time: the reference every other kernel is tested against.
    Scalar,
    /// 8 lanes with AVX2 and FMA.
    Avx2,
    /// 16 lanes with AVX-512F.
    Avx512,
}

impl Kernel {
    /// The fastest kernel this CPU supports.
    pub fn best() -> Self {
        Self::available()
            .into_iter()
            .last()
            .unwrap_or(Kernel::Scalar)
    }

    /// Every kernel this CPU can run, slowest first.
    pub fn available() -> Vec<Self> {
        [Kernel::Scalar, Kernel::Avx2, Kernel::Avx512]
            .into_iter()
            .filter(|k| k.is_supported())
            .collect()
    }

    /// Whether this CPU can run the kernel.
    pub fn is_supported(self) -> bool {
        match self {
            Kernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }
}

/// Where a time-major sequence's elements sit in a buffer: element `j` of batch item `b` at
/// step `t` is at `offset + t * t_stride + b * b_stride + j`. Lets the kernel read its gates
/// straight out of the layer's U matrix and write each direction into the joined output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub offset: usize,
    pub t_stride: usize,
    pub b_stride: usize,
}

impl Layout {
    /// A plain `(steps, batch, hidden)` array.
    pub fn contiguous(batch: usize, hidden: usize) -> Self {
        Self {
            offset: 0,
            t_stride: batch * hidden,
            b_stride: hidden,
        }
    }

    #[inline(always)]
    fn at(&self, t: usize, b: usize) -> usize {
        self.offset + t * self.t_stride + b * self.b_stride
    }

    /// Elements a buffer needs for `steps x batch x hidden` of this layout.
    fn span(&self, steps: usize, batch: usize, hidden: usize) -> usize {
        if steps == 0 || batch == 0 {
            0
        } else {
            self.at(steps - 1, batch - 1) + hidden
        }
    }
}

/// A time-major sequence in a buffer.
#[derive(Clone, Copy, Debug)]
pub struct Seq<'a> {
    pub data: &'a [f32],
    pub layout: Layout,
}

/// One direction of one SRU layer over a whole sequence.
///
/// The weights are `(hidden)`. With `reverse` the recurrence runs from the last step to the
/// first, and `h` at step `t` still belongs to step `t`.
#[derive(Clone, Copy, Debug)]
pub struct Recurrence<'a> {
    pub steps: usize,
    pub batch: usize,
    pub hidden: usize,
    pub reverse: bool,
    /// Candidate cell value.
    pub u0: Seq<'a>,
    /// Forget-gate input.
    pub u1: Seq<'a>,
    /// Reset-gate input.
    pub u2: Seq<'a>,
    /// Highway (skip) input.
    pub skip: Seq<'a>,
    pub v_f: &'a [f32],
    pub v_r: &'a [f32],
    pub b_f: &'a [f32],
    pub b_r: &'a [f32],
}

impl Recurrence<'_> {
    /// Runs the recurrence. `c` is `(batch, hidden)`: the initial state on entry, the state
    /// after the last processed step on return. The hidden outputs go to `h` at `h_layout`.
    ///
    /// Panics if a buffer is too short for its layout, or if the kernel is not supported by
    /// this CPU.
    pub fn run(&self, kernel: Kernel, c: &mut [f32], h: &mut [f32], h_layout: Layout) {
        let (steps, batch, hidden) = (self.steps, self.batch, self.hidden);
        for (name, s) in [
            ("u0", &self.u0),
            ("u1", &self.u1),
            ("u2", &self.u2),
            ("skip", &self.skip),
        ] {
            assert!(
                s.data.len() >= s.layout.span(steps, batch, hidden),
                "{name} is too short for its layout"
            );
        }
        assert!(
            h.len() >= h_layout.span(steps, batch, hidden),
            "h is too short for its layout"
        );
        for (name, len) in [
            ("v_f", self.v_f.len()),
            ("v_r", self.v_r.len()),
            ("b_f", self.b_f.len()),
            ("b_r", self.b_r.len()),
        ] {
            assert_eq!(len, hidden, "{name} must hold hidden values");
        }
        assert_eq!(c.len(), batch * hidden, "c must hold batch * hidden values");
        assert!(
            kernel.is_supported(),
            "{kernel:?} is not supported by this CPU"
        );
        for b in 0..batch {
            let c = &mut c[b * hidden..(b + 1) * hidden];
            let out = Out {
                data: h,
                layout: h_layout,
            };
            match kernel {
                Kernel::Scalar => scalar(self, b, 0, hidden, c, out),
                // SAFETY: support and every buffer's extent were checked above.
                #[cfg(target_arch = "x86_64")]
                Kernel::Avx2 => unsafe { x86::avx2(self, b, c, out) },
                #[cfg(target_arch = "x86_64")]
                Kernel::Avx512 => unsafe { x86::avx512(self, b, c, out) },
                #[cfg(not(target_arch = "x86_64"))]
                _ => unreachable!(),
            }
        }
    }

    /// Index of step `i` of the walk (which runs backwards in time when reversed).
    #[inline(always)]
    fn step(&self, i: usize) -> usize {
        if self.reverse {
            self.steps - 1 - i
        } else {
            i
        }
    }
}

/// The output buffer and its layout.
struct Out<'a> {
    data: &'a mut [f32],
    layout: Layout,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Units `from..to` of batch item `b`, one at a time. `c` holds this batch item's state.
#[allow(clippy::needless_range_loop)] // several arrays share each index
fn scalar(r: &Recurrence, b: usize, from: usize, to: usize, c: &mut [f32], h: Out) {
    let get = |s: &Seq, t: usize, j: usize| s.data[s.layout.at(t, b) + j];
    for j in from..to {
        let mut cj = c[j];
        for i in 0..r.steps {
            let t = r.step(i);
            let u0 = get(&r.u0, t, j);
            let f = sigmoid(get(&r.u1, t, j) + r.b_f[j] + r.v_f[j] * cj);
            let g = sigmoid(get(&r.u2, t, j) + r.b_r[j] + r.v_r[j] * cj);
            cj = u0 + (cj - u0) * f;
            let s = get(&r.skip, t, j);
            h.data[h.layout.at(t, b) + j] = s + (cj - s) * g;
        }
        c[j] = cj;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::lanes::{sigmoid, Avx2, Avx512, Lanes};
    use super::{scalar, Out, Recurrence};

    /// Blocks of this many vectors run interleaved.
    const GROUP: usize = 4;

    /// Batch item `b`, all units: groups of GROUP vectors, then single vectors, then scalars.
    #[inline(always)]
    unsafe fn run<V: Lanes>(r: &Recurrence, b: usize, c: &mut [f32], mut h: Out) {
        let mut j = 0;
        while j + GROUP * V::N <= r.hidden {
            block::<V, GROUP>(r, b, j, c, &mut h);
            j += GROUP * V::N;
        }
        while j + V::N <= r.hidden {
            block::<V, 1>(r, b, j, c, &mut h);
            j += V::N;
        }
        scalar(r, b, j, r.hidden, c, h);
    }

    /// Units `j0 .. j0 + G * N` of batch item `b` through every step.
    #[allow(clippy::needless_range_loop)] // several arrays share each index
    #[inline(always)]
    unsafe fn block<V: Lanes, const G: usize>(
        r: &Recurrence,
        b: usize,
        j0: usize,
        c: &mut [f32],
        h: &mut Out,
    ) {
        let lane = |g: usize| g * V::N;
        let mut cs = [V::splat(0.0); G];
        let (mut vf, mut vr, mut bf, mut br) = (
            [V::splat(0.0); G],
            [V::splat(0.0); G],
            [V::splat(0.0); G],
            [V::splat(0.0); G],
        );
        for g in 0..G {
            cs[g] = V::load(c.as_ptr().add(j0 + lane(g)));
            vf[g] = V::load(r.v_f.as_ptr().add(j0 + lane(g)));
            vr[g] = V::load(r.v_r.as_ptr().add(j0 + lane(g)));
            bf[g] = V::load(r.b_f.as_ptr().add(j0 + lane(g)));
            br[g] = V::load(r.b_r.as_ptr().add(j0 + lane(g)));
        }
        let base = |s: &super::Seq| s.data.as_ptr().add(j0);
        let (u0, u1, u2, s) = (base(&r.u0), base(&r.u1), base(&r.u2), base(&r.skip));
        let out = h.data.as_mut_ptr().add(j0);
        for i in 0..r.steps {
            let t = r.step(i);
            let (a0, a1, a2, a3) = (
                r.u0.layout.at(t, b),
                r.u1.layout.at(t, b),
                r.u2.layout.at(t, b),
                r.skip.layout.at(t, b),
            );
            let ao = h.layout.at(t, b);
            for g in 0..G {
                let l = lane(g);
                let x0 = V::load(u0.add(a0 + l));
                let f = sigmoid(vf[g].mul_add(cs[g], V::load(u1.add(a1 + l)).add(bf[g])));
                let rr = sigmoid(vr[g].mul_add(cs[g], V::load(u2.add(a2 + l)).add(br[g])));
                cs[g] = cs[g].sub(x0).mul_add(f, x0);
                let sk = V::load(s.add(a3 + l));
                cs[g].sub(sk).mul_add(rr, sk).store(out.add(ao + l));
            }
        }
        for g in 0..G {
            cs[g].store(c.as_mut_ptr().add(j0 + lane(g)));
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2(r: &Recurrence, b: usize, c: &mut [f32], h: Out) {
        run::<Avx2>(r, b, c, h)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn avx512(r: &Recurrence, b: usize, c: &mut [f32], h: Out) {
        run::<Avx512>(r, b, c, h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    struct Case {
        steps: usize,
        batch: usize,
        hidden: usize,
        data: [Vec<f32>; 8],
    }

    fn case(steps: usize, batch: usize, hidden: usize, seed: u64) -> Case {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let seq = steps * batch * hidden;
        let mut v = |n: usize, scale: f32| {
            (0..n)
                .map(|_| rng.random_range(-scale..scale))
                .collect::<Vec<_>>()
        };
        Case {
            steps,
            batch,
            hidden,
            data: [
                v(seq, 2.0),
                v(seq, 3.0),
                v(seq, 3.0),
                v(seq, 1.0),
                v(hidden, 1.0),
                v(hidden, 1.0),
                v(hidden, 0.5),
                v(hidden, 0.5),
            ],
        }
    }

    fn run(case: &Case, kernel: Kernel, reverse: bool) -> (Vec<f32>, Vec<f32>) {
        let [u0, u1, u2, skip, v_f, v_r, b_f, b_r] = &case.data;
        let layout = Layout::contiguous(case.batch, case.hidden);
        let seq = |data| Seq { data, layout };
        let r = Recurrence {
            steps: case.steps,
            batch: case.batch,
            hidden: case.hidden,
            reverse,
            u0: seq(u0),
            u1: seq(u1),
            u2: seq(u2),
            skip: seq(skip),
            v_f,
            v_r,
            b_f,
            b_r,
        };
        let mut c: Vec<f32> = (0..case.batch * case.hidden)
            .map(|i| (i % 7) as f32 * 0.1 - 0.3)
            .collect();
        let mut h = vec![f32::NAN; case.steps * case.batch * case.hidden];
        r.run(kernel, &mut c, &mut h, layout);
        (c, h)
    }

    /// The same sequences packed side by side, gate-major as in a layer's U matrix, with the
    /// output written into every other slot of a wider buffer.
    fn run_strided(case: &Case, kernel: Kernel, reverse: bool) -> (Vec<f32>, Vec<f32>) {
        let (t, b, n) = (case.steps, case.batch, case.hidden);
        let mut packed = vec![0.0; t * b * 4 * n];
        for (k, src) in case.data[..4].iter().enumerate() {
            for row in 0..t * b {
                packed[row * 4 * n + k * n..][..n].copy_from_slice(&src[row * n..][..n]);
            }
        }
        let at = |k: usize| Seq {
            data: &packed,
            layout: Layout {
                offset: k * n,
                t_stride: b * 4 * n,
                b_stride: 4 * n,
            },
        };
        let [_, _, _, _, v_f, v_r, b_f, b_r] = &case.data;
        let r = Recurrence {
            steps: t,
            batch: b,
            hidden: n,
            reverse,
            u0: at(0),
            u1: at(1),
            u2: at(2),
            skip: at(3),
            v_f,
            v_r,
            b_f,
            b_r,
        };
        let mut c: Vec<f32> = (0..b * n).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect();
        let mut wide = vec![f32::NAN; t * b * 2 * n];
        r.run(
            kernel,
            &mut c,
            &mut wide,
            Layout {
                offset: n,
                t_stride: b * 2 * n,
                b_stride: 2 * n,
            },
        );
        let h = (0..t * b)
            .flat_map(|row| wide[row * 2 * n + n..][..n].to_vec())
            .collect();
        assert!(
            (0..t * b).all(|row| wide[row * 2 * n..][..n].iter().all(|v| v.is_nan())),
            "wrote outside its slots"
        );
        (c, h)
    }

    #[test]
    fn strided_layouts_give_the_same_result() {
        let case = case(11, 3, 21, 4);
        for k in Kernel::available() {
            for reverse in [false, true] {
                assert_eq!(
                    run(&case, k, reverse),
                    run_strided(&case, k, reverse),
                    "{k:?}"
                );
            }
        }
    }

    /// One step by hand, straight from the SRU equations.
    #[test]
    fn scalar_kernel_follows_the_sru_equations() {
        let case = case(1, 1, 1, 1);
        let [u0, u1, u2, s, vf, vr, bf, br] = case.data.clone().map(|v| v[0]);
        let c0 = -0.3f32;
        let f = 1.0 / (1.0 + (-(u1 + bf + vf * c0)).exp());
        let r = 1.0 / (1.0 + (-(u2 + br + vr * c0)).exp());
        let c1 = u0 + (c0 - u0) * f;
        let h1 = s + (c1 - s) * r;
        let (c, h) = run(&case, Kernel::Scalar, false);
        assert!((c[0] - c1).abs() < 1e-7 && (h[0] - h1).abs() < 1e-7);
    }

    #[test]
    fn reverse_runs_backwards_in_time() {
        // Reversing the sequence and running forwards equals running reversed.
        let case = case(9, 2, 5, 2);
        let flip = |v: &Vec<f32>| {
            v.chunks(case.batch * case.hidden)
                .rev()
                .flatten()
                .copied()
                .collect::<Vec<_>>()
        };
        let mut flipped = Case {
            data: case.data.clone(),
            ..case
        };
        for i in 0..4 {
            flipped.data[i] = flip(&case.data[i]);
        }
        let (c_rev, h_rev) = run(&case, Kernel::Scalar, true);
        let (c_fwd, h_fwd) = run(&flipped, Kernel::Scalar, false);
        assert_eq!(c_rev, c_fwd);
        assert_eq!(h_rev, flip(&h_fwd));
    }

    #[test]
    fn every_kernel_equals_the_scalar_one() {
        let kernels = Kernel::available();
        eprintln!("kernels on this CPU: {kernels:?}");
        // Sizes around the vector widths and group sizes, odd ones included.
        for (seed, &(steps, batch, hidden)) in [
            (1, 1, 1),
            (7, 1, 3),
            (13, 2, 8),
            (5, 3, 17),
            (21, 2, 31),
            (8, 1, 64),
            (17, 2, 100),
            (6, 2, 257),
            (40, 1, 512),
        ]
        .iter()
        .enumerate()
        {
            let case = case(steps, batch, hidden, seed as u64 + 10);
            for reverse in [false, true] {
                let (c_ref, h_ref) = run(&case, Kernel::Scalar, reverse);
                for &k in &kernels {
                    let (c, h) = run(&case, k, reverse);
                    for (a, b) in c.iter().zip(&c_ref).chain(h.iter().zip(&h_ref)) {
                        assert!(
                            (a - b).abs() <= 2e-6 * (1.0 + b.abs()),
                            "{k:?} {steps}x{batch}x{hidden} reverse={reverse}: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn extreme_inputs_stay_finite() {
        let mut case = case(4, 1, 40, 3);
        for (i, v) in case.data[1].iter_mut().enumerate() {
            *v = if i % 2 == 0 { 1e4 } else { -1e4 };
        }
        for k in Kernel::available() {
            let (c, h) = run(&case, k, false);
            assert!(c.iter().chain(&h).all(|v| v.is_finite()), "{k:?}");
        }
    }
}
