//! The filters the band above the model's reach is measured and shaped with: second-order
//! sections in direct form I (whose coefficients may change while they run, as the shelves'
//! do), fourth-order Butterworth high-passes, and a fourth-order high shelf whose gain is
//! retuned as it runs.

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

/// A fourth-order Butterworth high-pass: two sections.
#[derive(Clone, Copy, Debug)]
pub(super) struct Butterworth4(pub(super) [Biquad; 2]);

impl Butterworth4 {
    pub(super) fn highpass(cutoff: f64, rate: f64) -> Self {
        Self(BUTTERWORTH_4_Q.map(|q| Biquad::highpass(cutoff, rate, q)))
    }

    pub(super) fn push(&mut self, x: f32) -> f32 {
        let first = self.0[0].push(x);
        self.0[1].push(first)
    }
}

/// Lanes of a [`HighpassBank`]: enough for one high-pass per band edge.
pub(super) const LANES: usize = 8;

/// One second-order section per lane, its state and coefficients stored lane by lane.
#[derive(Clone, Copy, Debug)]
struct SectionLanes {
    b: [[f32; LANES]; 3],
    a: [[f32; LANES]; 2],
    x: [[f32; LANES]; 2],
    y: [[f32; LANES]; 2],
}

/// Fourth-order Butterworth high-passes at up to `LANES` cutoffs, all fed the same signal:
/// lane by lane in arrays, so the compiler runs them side by side in vector registers (the
/// per-sample cost of the band above is mostly these filters).
#[derive(Clone, Copy, Debug)]
pub(super) struct HighpassBank([SectionLanes; 2]);

impl HighpassBank {
    /// High-passes at `cutoffs` (at most `LANES`); the lanes beyond them put out silence.
    pub(super) fn new(cutoffs: &[f64], rate: f64) -> Self {
        assert!(
            cutoffs.len() <= LANES,
            "{} cutoffs for {LANES} lanes",
            cutoffs.len()
        );
        let mut bank = Self(
            [SectionLanes {
                b: [[0.0; LANES]; 3],
                a: [[0.0; LANES]; 2],
                x: [[0.0; LANES]; 2],
                y: [[0.0; LANES]; 2],
            }; 2],
        );
        for (lane, &cutoff) in cutoffs.iter().enumerate() {
            let filter = Butterworth4::highpass(cutoff, rate);
            for (lanes, section) in bank.0.iter_mut().zip(filter.0) {
                for i in 0..3 {
                    lanes.b[i][lane] = section.b[i];
                }
                for i in 0..2 {
                    lanes.a[i][lane] = section.a[i];
                }
            }
        }
        bank
    }

    /// One sample through every lane.
    pub(super) fn push(&mut self, x: f32) -> [f32; LANES] {
        let mut input = [x; LANES];
        for s in &mut self.0 {
            let mut y = [0.0; LANES];
            for l in 0..LANES {
                let v = s.b[0][l] * input[l] + s.b[1][l] * s.x[0][l] + s.b[2][l] * s.x[1][l]
                    - s.a[0][l] * s.y[0][l]
                    - s.a[1][l] * s.y[1][l];
                // Flushed below the audible floor, as `Biquad` does.
                y[l] = if v.abs() < 1e-20 { 0.0 } else { v };
            }
            s.x = [input, s.x[0]];
            s.y = [y, s.y[0]];
            input = y;
        }
        input
    }
}

/// A fourth-order Butterworth high shelf whose gain above its edge is retuned as it runs:
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

    /// Sets the gain (amplitude, above 0) above the edge.
    pub(super) fn tune(&mut self, gain: f32) {
        // Each section is (G^(1/2) s^2 + d G^(1/4) s + 1) / (s^2 + d s + 1) in s' = s / G^(1/8),
        // which centres the transition on the edge; bilinear, no trigonometry, three roots.
        let g8 = gain.sqrt().sqrt().sqrt();
        let g4 = g8 * g8;
        let (num2, den2) = (g4 * self.inv_k2, self.inv_k2 / g4);
        for (s, d) in self.sections.iter_mut().zip(Self::DAMPING) {
            let (num1, den1) = (d * g8 * self.inv_k, d * self.inv_k / g8);
            let scale = 1.0 / (den2 + den1 + 1.0);
            s.b = [
                (num2 + num1 + 1.0) * scale,
                (2.0 - 2.0 * num2) * scale,
                (num2 - num1 + 1.0) * scale,
            ];
            s.a = [(2.0 - 2.0 * den2) * scale, (den2 - den1 + 1.0) * scale];
        }
    }

    pub(super) fn push(&mut self, x: f32) -> f32 {
        let first = self.sections[0].push(x);
        self.sections[1].push(first)
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
            let shelf_db = |edge: f64, freq: f64| {
                let mut shelf = HighShelf::new(edge, 48_000.0);
                shelf.tune(gain);
                gain_db(|x| shelf.push(x), freq)
            };
            let (below, edge, above) = (
                shelf_db(12_000.0, 3_000.0),
                shelf_db(12_000.0, 12_000.0),
                shelf_db(12_000.0, 22_000.0),
            );
            eprintln!("shelf at {want:.1} dB: {below:.2} / {edge:.2} / {above:.2} dB");
            assert!(below.abs() < 0.02 * want.abs() + 0.01, "below: {below:.2}");
            assert!(
                (above - want).abs() < 0.05 * want.abs() + 0.01,
                "above: {above:.2}"
            );
            assert!((edge - want / 2.0).abs() < 0.5, "edge: {edge:.2}");
            // An octave either side of an 8 kHz edge.
            let (octave_below, octave_above) =
                (shelf_db(8_000.0, 4_000.0), shelf_db(8_000.0, 16_000.0));
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
    fn a_bank_lane_is_its_own_high_pass() {
        let cutoffs = [8_000.0, 12_500.0, 20_000.0];
        let mut bank = HighpassBank::new(&cutoffs, 48_000.0);
        let mut alone = cutoffs.map(|c| Butterworth4::highpass(c, 48_000.0));
        for t in 0..4_800 {
            let x = ((t * 7919) % 1000) as f32 / 500.0 - 1.0;
            let lanes = bank.push(x);
            for (lane, f) in alone.iter_mut().enumerate() {
                assert_eq!(lanes[lane], f.push(x), "lane {lane} at {t}");
            }
            assert!(lanes[cutoffs.len()..].iter().all(|v| *v == 0.0));
        }
    }

    #[test]
    fn the_high_pass_is_a_fourth_order_butterworth() {
        let mut hp = Butterworth4::highpass(10_000.0, 48_000.0);
        assert!((gain_db(|x| hp.push(x), 10_000.0) + 3.01).abs() < 0.05);
        let mut hp = Butterworth4::highpass(10_000.0, 48_000.0);
        assert!(gain_db(|x| hp.push(x), 5_000.0) < -23.0);
    }
}
