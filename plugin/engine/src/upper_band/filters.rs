//! The filters the band above the model's reach is measured and shaped with: second-order
//! sections in direct form I (whose coefficients may change from one sample to the next, as
//! the shelves' do), fourth-order Butterworth high- and low-passes, and a high shelf whose gain
//! is set per sample.

use std::f64::consts::PI;

/// The two pole pairs of a fourth-order Butterworth filter, as the Q of each section.
const BUTTERWORTH_4_Q: [f64; 2] = [0.541_196_1, 1.306_563];

/// One second-order section, direct form I.
#[derive(Clone, Copy, Debug)]
pub(super) struct Biquad {
    b: [f32; 3],
    a: [f32; 2],
    x: [f32; 2],
    y: [f32; 2],
}

impl Biquad {
    /// Passes everything unchanged.
    const IDENTITY: Self = Self {
        b: [1.0, 0.0, 0.0],
        a: [0.0, 0.0],
        x: [0.0; 2],
        y: [0.0; 2],
    };

    /// From the coefficients of `b0 + b1 z^-1 + b2 z^-2` over `a0 + a1 z^-1 + a2 z^-2`.
    fn with(b: [f64; 3], a: [f64; 3]) -> Self {
        Self {
            b: b.map(|v| (v / a[0]) as f32),
            a: [(a[1] / a[0]) as f32, (a[2] / a[0]) as f32],
            ..Self::IDENTITY
        }
    }

    fn highpass(cutoff: f64, rate: f64, q: f64) -> Self {
        let w = 2.0 * PI * cutoff / rate;
        let (cos, alpha) = (w.cos(), w.sin() / (2.0 * q));
        let b = (1.0 + cos) / 2.0;
        Self::with([b, -2.0 * b, b], [1.0 + alpha, -2.0 * cos, 1.0 - alpha])
    }

    fn lowpass(cutoff: f64, rate: f64, q: f64) -> Self {
        let w = 2.0 * PI * cutoff / rate;
        let (cos, alpha) = (w.cos(), w.sin() / (2.0 * q));
        let b = (1.0 - cos) / 2.0;
        Self::with([b, 2.0 * b, b], [1.0 + alpha, -2.0 * cos, 1.0 - alpha])
    }

    pub(super) fn push(&mut self, x: f32) -> f32 {
        let y = self.b[0] * x + self.b[1] * self.x[0] + self.b[2] * self.x[1]
            - self.a[0] * self.y[0]
            - self.a[1] * self.y[1];
        self.x = [x, self.x[0]];
        // Flushed to zero below the audible floor, so silence never leaves denormals behind.
        self.y = [if y.abs() < 1e-20 { 0.0 } else { y }, self.y[0]];
        self.y[0]
    }

    /// Whether its memory holds only zeros.
    #[cfg(test)]
    pub(super) fn is_silent(&self) -> bool {
        self.x.iter().chain(&self.y).all(|v| *v == 0.0)
    }
}

/// A fourth-order Butterworth high- or low-pass: two sections.
#[derive(Clone, Copy, Debug)]
pub(super) struct Butterworth4(pub(super) [Biquad; 2]);

impl Butterworth4 {
    /// Passes everything unchanged.
    pub(super) const IDENTITY: Self = Self([Biquad::IDENTITY; 2]);

    pub(super) fn highpass(cutoff: f64, rate: f64) -> Self {
        Self(BUTTERWORTH_4_Q.map(|q| Biquad::highpass(cutoff, rate, q)))
    }

    pub(super) fn lowpass(cutoff: f64, rate: f64) -> Self {
        Self(BUTTERWORTH_4_Q.map(|q| Biquad::lowpass(cutoff, rate, q)))
    }

    pub(super) fn push(&mut self, x: f32) -> f32 {
        let first = self.0[0].push(x);
        self.0[1].push(first)
    }
}

/// A fourth-order Butterworth high shelf whose gain above its edge is given with each sample:
/// half its gain in dB at the edge, within 2 % of none or all of it an octave below or above. At a gain
/// of 1 it passes everything unchanged. (Its power response is
/// `G (1 + G w^8) / (G + w^8)` for gain `G` and `w` the frequency over the edge's; the
/// prototype of Holters and Zoelzer's higher-order shelves, centred on the edge.)
#[derive(Clone, Copy, Debug)]
pub(super) struct HighShelf {
    /// `1 / tan(pi edge / rate)` and its square: the bilinear transform's pre-warped edge.
    inv_k: f32,
    inv_k2: f32,
    sections: [Biquad; 2],
}

impl HighShelf {
    /// `2 sin` of the pole angles of a fourth-order Butterworth filter.
    const DAMPING: [f32; 2] = [1.847_759, 0.765_366_85];

    pub(super) fn new(edge: f64, rate: f64) -> Self {
        let inv_k = 1.0 / (PI * edge / rate).tan();
        Self {
            inv_k: inv_k as f32,
            inv_k2: (inv_k * inv_k) as f32,
            sections: [Biquad::IDENTITY; 2],
        }
    }

    /// One sample through the shelf with `gain` (amplitude, above 0) above its edge.
    pub(super) fn push(&mut self, x: f32, gain: f32) -> f32 {
        // Each section is (G^(1/2) s^2 + d G^(1/4) s + 1) / (s^2 + d s + 1) in s' = s / G^(1/8),
        // which centres the transition on the edge; bilinear, coefficients afresh per sample.
        let g8 = gain.sqrt().sqrt().sqrt();
        let g4 = g8 * g8;
        let (num2, den2) = (g4 * self.inv_k2, self.inv_k2 / g4);
        let mut y = x;
        for (s, d) in self.sections.iter_mut().zip(Self::DAMPING) {
            let (num1, den1) = (d * g8 * self.inv_k, d * self.inv_k / g8);
            let a0 = den2 + den1 + 1.0;
            s.b = [
                (num2 + num1 + 1.0) / a0,
                (2.0 - 2.0 * num2) / a0,
                (num2 - num1 + 1.0) / a0,
            ];
            s.a = [(2.0 - 2.0 * den2) / a0, (den2 - den1 + 1.0) / a0];
            y = s.push(y);
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The steady gain, in dB, of `f` for a tone at `freq` (48 kHz).
    fn gain_db(mut f: impl FnMut(f32) -> f32, freq: f64) -> f64 {
        let n = 48_000;
        let (mut p_in, mut p_out) = (0.0, 0.0);
        for t in 0..n {
            let x = (2.0 * PI * freq * t as f64 / 48_000.0).sin() as f32;
            let y = f(x);
            if t >= n / 2 {
                p_in += (x as f64).powi(2);
                p_out += (y as f64).powi(2);
            }
        }
        10.0 * (p_out / p_in).log10()
    }

    #[test]
    fn the_shelf_cuts_above_its_edge_and_not_below() {
        for gain in [0.063f32, 0.5, 1.0, 4.0] {
            let want = 20.0 * (gain as f64).log10();
            let mut shelf = HighShelf::new(12_000.0, 48_000.0);
            let below = gain_db(|x| shelf.push(x, gain), 3_000.0);
            let mut shelf = HighShelf::new(12_000.0, 48_000.0);
            let above = gain_db(|x| shelf.push(x, gain), 22_000.0);
            let mut shelf = HighShelf::new(12_000.0, 48_000.0);
            let edge = gain_db(|x| shelf.push(x, gain), 12_000.0);
            eprintln!("shelf at {want:.1} dB: {below:.2} / {edge:.2} / {above:.2} dB");
            assert!(below.abs() < 0.15 * want.abs() + 0.01, "below: {below:.2}");
            assert!(
                (above - want).abs() < 0.1 * want.abs() + 0.01,
                "above: {above:.2}"
            );
            assert!((edge - want / 2.0).abs() < 0.5, "edge: {edge:.2}");
            // An octave either side of an 8 kHz edge.
            let mut shelf = HighShelf::new(8_000.0, 48_000.0);
            let octave_below = gain_db(|x| shelf.push(x, gain), 4_000.0);
            let mut shelf = HighShelf::new(8_000.0, 48_000.0);
            let octave_above = gain_db(|x| shelf.push(x, gain), 16_000.0);
            assert!(
                octave_below.abs() <= 0.02 * want.abs() + 0.01,
                "{octave_below:.2}"
            );
            assert!(
                (octave_above - want).abs() <= 0.02 * want.abs() + 0.01,
                "{octave_above:.2}"
            );
        }
    }

    #[test]
    fn butterworth_filters_cross_at_their_cutoff() {
        let mut hp = Butterworth4::highpass(10_000.0, 48_000.0);
        let mut lp = Butterworth4::lowpass(10_000.0, 48_000.0);
        assert!((gain_db(|x| hp.push(x), 10_000.0) + 3.01).abs() < 0.05);
        assert!((gain_db(|x| lp.push(x), 10_000.0) + 3.01).abs() < 0.05);
        let mut hp = Butterworth4::highpass(10_000.0, 48_000.0);
        assert!(gain_db(|x| hp.push(x), 5_000.0) < -23.0);
    }
}
