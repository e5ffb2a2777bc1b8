//! The band above the model's reach. At host rates above the model's (16 kHz), the model
//! never sees what lies above 8 kHz; that band is taken from the input and scaled by how much
//! the model kept of the top of its own band (6-8 kHz), where the same hiss and air are: if
//! the model removed the hiss up there, the band above goes down with it; if it kept sibilants
//! and breath, the band above stays. The file path and the plugin's stream share this, so a
//! file sounds the same through either.

/// The lower edge of the model's top band that steers the gain, in Hz.
const STEER_FROM: f64 = 6_000.0;
/// How long the band powers are smoothed over, in seconds.
const SMOOTHING_S: f64 = 0.05;
/// Band powers below this are digital silence (and never left to sink into denormals).
const SILENT: f32 = 1e-14;

/// A second-order high-pass section (Butterworth pole pair), direct form I.
#[derive(Clone, Copy, Debug)]
struct Highpass {
    b: [f32; 3],
    a: [f32; 2],
    x: [f32; 2],
    y: [f32; 2],
}

impl Highpass {
    fn new(cutoff: f64, rate: f64, q: f64) -> Self {
        let w = 2.0 * std::f64::consts::PI * cutoff / rate;
        let (cos, alpha) = (w.cos(), w.sin() / (2.0 * q));
        let a0 = 1.0 + alpha;
        let b = [(1.0 + cos) / 2.0, -(1.0 + cos), (1.0 + cos) / 2.0];
        Self {
            b: b.map(|v| (v / a0) as f32),
            a: [(-2.0 * cos / a0) as f32, ((1.0 - alpha) / a0) as f32],
            x: [0.0; 2],
            y: [0.0; 2],
        }
    }

    fn push(&mut self, x: f32) -> f32 {
        let y = self.b[0] * x + self.b[1] * self.x[0] + self.b[2] * self.x[1]
            - self.a[0] * self.y[0]
            - self.a[1] * self.y[1];
        self.x = [x, self.x[0]];
        // Flushed to zero below the audible floor, so silence never leaves denormals behind.
        self.y = [if y.abs() < 1e-20 { 0.0 } else { y }, self.y[0]];
        self.y[0]
    }
}

/// A fourth-order Butterworth high-pass: two sections.
#[derive(Clone, Copy, Debug)]
struct TopBand([Highpass; 2]);

impl TopBand {
    fn new(rate: f64) -> Self {
        // At host rates too low to hold 6 kHz there is no band above the model's anyway.
        let cutoff = STEER_FROM.min(0.4 * rate);
        Self([
            Highpass::new(cutoff, rate, 0.541_196_1),
            Highpass::new(cutoff, rate, 1.306_563),
        ])
    }

    fn push(&mut self, x: f32) -> f32 {
        let first = self.0[0].push(x);
        self.0[1].push(first)
    }
}

#[derive(Clone, Copy, Debug)]
struct Channel {
    wet: TopBand,
    low: TopBand,
    /// Smoothed power of the model's output and of its input in the top band.
    wet_power: f32,
    low_power: f32,
}

/// Restores the band above the model's reach, per channel, sample by sample. Allocates only
/// when made.
#[derive(Clone, Debug)]
pub struct UpperBand {
    fresh: Channel,
    channels: Vec<Channel>,
    /// Per-sample factor of the power smoothing.
    smoothing: f32,
}

impl UpperBand {
    /// For `channels` channels at the host's `rate`.
    pub fn new(rate: f64, channels: usize) -> Self {
        let fresh = Channel {
            wet: TopBand::new(rate),
            low: TopBand::new(rate),
            wet_power: 0.0,
            low_power: 0.0,
        };
        Self {
            fresh,
            channels: vec![fresh; channels],
            smoothing: (-1.0 / (SMOOTHING_S * rate)).exp() as f32,
        }
    }

    /// Back to the state it was made in.
    pub fn reset(&mut self) {
        self.channels.fill(self.fresh);
    }

    /// One output sample of channel `k`, all at the host rate and aligned: `wet` is the
    /// model's output, `low` the model's input (the input as the model's band limits it), and
    /// `dry` the input itself, so `dry - low` is the band the model never saw.
    pub fn mix(&mut self, k: usize, wet: f32, low: f32, dry: f32) -> f32 {
        wet + self.gain(k, wet, low) * (dry - low)
    }

    /// How much of the band above to let through: as much as the model let through of the
    /// top of its own band, judged by power.
    pub fn gain(&mut self, k: usize, wet: f32, low: f32) -> f32 {
        let a = self.smoothing;
        let c = &mut self.channels[k];
        let (w, l) = (c.wet.push(wet), c.low.push(low));
        c.wet_power = a * c.wet_power + (1.0 - a) * w * w;
        c.low_power = a * c.low_power + (1.0 - a) * l * l;
        if !(c.wet_power.is_finite() && c.low_power.is_finite()) {
            // Whatever reached the trackers, they start over rather than stick.
            *c = self.fresh;
            return 0.0;
        }
        if c.wet_power < SILENT {
            c.wet_power = 0.0;
        }
        if c.low_power < SILENT {
            c.low_power = 0.0;
            return 0.0;
        }
        (c.wet_power / c.low_power).sqrt().min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: f64, amp: f32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|t| amp * (2.0 * std::f64::consts::PI * freq * t as f64 / rate).sin() as f32)
            .collect()
    }

    /// The gain at the end of a second of `wet` and `low` at 48 kHz.
    fn settled_gain(wet: &[f32], low: &[f32]) -> f32 {
        let mut band = UpperBand::new(48_000.0, 1);
        let mut g = 0.0;
        for (w, l) in wet.iter().zip(low) {
            g = band.gain(0, *w, *l);
        }
        g
    }

    /// The gain follows the top of the model's band, not its loudest part: a model that
    /// removes a loud hum and keeps the hiss at 7 kHz keeps the band above too, and one that
    /// removes the hiss and keeps the hum takes the band above down with the hiss.
    #[test]
    fn the_gain_follows_the_top_of_the_models_band() {
        let n = 48_000;
        let (hum, hiss) = (
            tone(300.0, 48_000.0, 0.5, n),
            tone(7_000.0, 48_000.0, 0.05, n),
        );
        let input: Vec<f32> = hum.iter().zip(&hiss).map(|(a, b)| a + b).collect();
        let hum_removed = settled_gain(&hiss, &input);
        let hiss_removed = settled_gain(&hum, &input);
        assert!(hum_removed > 0.95, "{hum_removed}");
        assert!(hiss_removed < 0.05, "{hiss_removed}");
        // Half the hiss kept: half the band above.
        let half: Vec<f32> = hum.iter().zip(&hiss).map(|(a, b)| a + 0.5 * b).collect();
        let g = settled_gain(&half, &input);
        assert!((g - 0.5).abs() < 0.05, "{g}");
    }

    /// Silence leaves no denormals and mutes the band; a non-finite sample resets the
    /// trackers instead of sticking them.
    #[test]
    fn silence_and_garbage_do_not_stick() {
        let mut band = UpperBand::new(48_000.0, 2);
        for _ in 0..48_000 {
            assert_eq!(band.gain(1, 0.0, 0.0), 0.0);
        }
        let c = band.channels[1];
        assert!(c.wet_power == 0.0 && c.low_power == 0.0);
        assert!(c
            .wet
            .0
            .iter()
            .chain(&c.low.0)
            .all(|h| h.y.iter().all(|v| *v == 0.0)));
        assert_eq!(band.gain(0, f32::MAX, f32::MAX), 0.0);
        let hiss = tone(7_000.0, 48_000.0, 0.1, 48_000);
        let mut g = 0.0;
        for v in &hiss {
            g = band.gain(0, *v, *v);
        }
        assert!(g > 0.99, "recovered: {g}");
        let mixed = band.mix(0, 0.25, 0.5, 0.75);
        assert!((mixed - (0.25 + g * 0.25)).abs() < 0.01, "{mixed}");
    }
}
