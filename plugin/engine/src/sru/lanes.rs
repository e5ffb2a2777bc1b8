//! Vector arithmetic shared by the recurrence kernels: the inference kernel here and the
//! training kernels (forward with saved states, and backward) in the trainer.
//!
//! Each kernel is written once over [`Lanes`] and instantiated for a SIMD type inside a
//! `#[target_feature]` function; `f32` is the one-lane instance that handles leftover units.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// The vector operations the recurrence kernels need, over `N` lanes of f32.
///
/// # Safety
/// Every method of a SIMD type may only run on a CPU with that type's instruction set (see
/// [`super::Kernel::is_supported`]); pointers must be valid for `N` values.
#[allow(clippy::missing_safety_doc)] // the trait's Safety section covers every method
pub trait Lanes: Copy {
    const N: usize;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn store(self, p: *mut f32);
    unsafe fn splat(v: f32) -> Self;
    unsafe fn add(self, o: Self) -> Self;
    unsafe fn sub(self, o: Self) -> Self;
    unsafe fn mul(self, o: Self) -> Self;
    /// self * a + b
    unsafe fn mul_add(self, a: Self, b: Self) -> Self;
    unsafe fn div(self, o: Self) -> Self;
    unsafe fn max(self, o: Self) -> Self;
    unsafe fn min(self, o: Self) -> Self;
    unsafe fn round(self) -> Self;
    /// 2^n for integral n in the normal exponent range.
    unsafe fn pow2i(self) -> Self;
}

/// exp(x) to about 2 ulp (Cephes' polynomial after a two-part ln 2 range reduction).
///
/// # Safety
/// As for [`Lanes`]: the CPU must support `V`.
#[inline(always)]
pub unsafe fn exp<V: Lanes>(x: V) -> V {
    let x = x.min(V::splat(88.0)).max(V::splat(-87.0));
    let n = x.mul(V::splat(std::f32::consts::LOG2_E)).round();
    let r = n.mul_add(V::splat(-0.693_359_4), x);
    let r = n.mul_add(V::splat(2.121_944_4e-4), r);
    let mut p = V::splat(1.987_569_1e-4);
    p = p.mul_add(r, V::splat(1.398_199_9e-3));
    p = p.mul_add(r, V::splat(8.333_452e-3));
    p = p.mul_add(r, V::splat(4.166_579_6e-2));
    p = p.mul_add(r, V::splat(1.666_666_5e-1));
    p = p.mul_add(r, V::splat(0.5));
    let r2 = r.mul(r);
    let e = p.mul_add(r2, r.add(V::splat(1.0)));
    e.mul(n.pow2i())
}

/// 1 / (1 + exp(-x)).
///
/// # Safety
/// As for [`Lanes`]: the CPU must support `V`.
#[inline(always)]
pub unsafe fn sigmoid<V: Lanes>(x: V) -> V {
    let one = V::splat(1.0);
    one.div(one.add(exp(V::splat(0.0).sub(x))))
}

/// One lane: leftover units, and CPUs without the SIMD kernels. Rounds and exponentiates
/// exactly as the SIMD types do, so every instance gives the same numbers up to FMA rounding.
impl Lanes for f32 {
    const N: usize = 1;
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        *p
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        *p = self
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        v
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        self + o
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        self - o
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        self * o
    }
    #[inline(always)]
    unsafe fn mul_add(self, a: Self, b: Self) -> Self {
        // Not f32::mul_add: without FMA hardware that is a slow library call.
        self * a + b
    }
    #[inline(always)]
    unsafe fn div(self, o: Self) -> Self {
        self / o
    }
    #[inline(always)]
    unsafe fn max(self, o: Self) -> Self {
        self.max(o)
    }
    #[inline(always)]
    unsafe fn min(self, o: Self) -> Self {
        self.min(o)
    }
    #[inline(always)]
    unsafe fn round(self) -> Self {
        // Ties to even by the FPU's own rounding (exact for |x| < 2^22, which exp's clamp
        // guarantees); round_ties_even is a library call on CPUs without SSE4.1.
        const SHIFT: f32 = 12_582_912.0; // 1.5 * 2^23
        (self + SHIFT) - SHIFT
    }
    #[inline(always)]
    unsafe fn pow2i(self) -> Self {
        f32::from_bits(((self as i32 + 127) << 23) as u32)
    }
}

#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
/// 8 lanes with AVX2 and FMA.
pub struct Avx2(__m256);

#[cfg(target_arch = "x86_64")]
impl Lanes for Avx2 {
    const N: usize = 8;
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Self(_mm256_loadu_ps(p))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        _mm256_storeu_ps(p, self.0)
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        Self(_mm256_set1_ps(v))
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        Self(_mm256_add_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        Self(_mm256_sub_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        Self(_mm256_mul_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn mul_add(self, a: Self, b: Self) -> Self {
        Self(_mm256_fmadd_ps(self.0, a.0, b.0))
    }
    #[inline(always)]
    unsafe fn div(self, o: Self) -> Self {
        Self(_mm256_div_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn max(self, o: Self) -> Self {
        Self(_mm256_max_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn min(self, o: Self) -> Self {
        Self(_mm256_min_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn round(self) -> Self {
        Self(_mm256_round_ps::<
            { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
        >(self.0))
    }
    #[inline(always)]
    unsafe fn pow2i(self) -> Self {
        let n = _mm256_cvtps_epi32(self.0);
        Self(_mm256_castsi256_ps(_mm256_slli_epi32::<23>(
            _mm256_add_epi32(n, _mm256_set1_epi32(127)),
        )))
    }
}

#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
/// 16 lanes with AVX-512F.
pub struct Avx512(__m512);

#[cfg(target_arch = "x86_64")]
impl Lanes for Avx512 {
    const N: usize = 16;
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Self(_mm512_loadu_ps(p))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        _mm512_storeu_ps(p, self.0)
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        Self(_mm512_set1_ps(v))
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        Self(_mm512_add_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        Self(_mm512_sub_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        Self(_mm512_mul_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn mul_add(self, a: Self, b: Self) -> Self {
        Self(_mm512_fmadd_ps(self.0, a.0, b.0))
    }
    #[inline(always)]
    unsafe fn div(self, o: Self) -> Self {
        Self(_mm512_div_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn max(self, o: Self) -> Self {
        Self(_mm512_max_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn min(self, o: Self) -> Self {
        Self(_mm512_min_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn round(self) -> Self {
        Self(_mm512_roundscale_ps::<
            { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
        >(self.0))
    }
    #[inline(always)]
    unsafe fn pow2i(self) -> Self {
        let n = _mm512_cvtps_epi32(self.0);
        Self(_mm512_castsi512_ps(_mm512_slli_epi32::<23>(
            _mm512_add_epi32(n, _mm512_set1_epi32(127)),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sigmoid_all<V: Lanes>(xs: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; xs.len()];
        for (x, o) in xs.chunks_exact(V::N).zip(out.chunks_exact_mut(V::N)) {
            // SAFETY: callers pass a type this CPU supports; chunks hold N values.
            unsafe { sigmoid(V::load(x.as_ptr())).store(o.as_mut_ptr()) }
        }
        out
    }

    #[test]
    fn one_lane_sigmoid_matches_libm() {
        let xs: Vec<f32> = (-4000..4000).map(|i| i as f32 * 0.01).collect();
        for (x, s) in xs.iter().zip(sigmoid_all::<f32>(&xs)) {
            let want = 1.0 / (1.0 + (-x).exp());
            assert!(
                (s - want).abs() <= 1e-6 * want.max(1e-3),
                "{x}: {s} vs {want}"
            );
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_sigmoid_matches_one_lane() {
        if !super::super::Kernel::Avx2.is_supported() {
            return;
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(xs: &[f32]) -> Vec<f32> {
            sigmoid_all::<Avx2>(xs)
        }
        let xs: Vec<f32> = (-4000..4000).map(|i| i as f32 * 0.0123).collect();
        // SAFETY: support checked above.
        let v = unsafe { avx2(&xs) };
        for ((x, a), b) in xs.iter().zip(v).zip(sigmoid_all::<f32>(&xs)) {
            // FMA rounds the polynomial differently: a few ulp.
            assert!((a - b).abs() <= 5e-7 * b.max(1e-3), "{x}: {a} vs {b}");
        }
    }
}
