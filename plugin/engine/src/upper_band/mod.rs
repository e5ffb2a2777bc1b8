//! The band above the model's reach. At host rates above the model's (16 kHz), the model
//! never sees what lies above 8 kHz; that band is taken from the input and shaped by two
//! judges, the stricter of them winning, in five bands of about a third of an octave:
//! - how much the model kept of the top of its own band (6-8 kHz), where the same hiss and air
//!   are: if the model removed a noise up there, the band above goes down with it; if it kept
//!   sibilants and breath, they stay;
//! - how far each band stands above its own noise floor (the lowest level it has had over the
//!   last 1.5 s): steady hiss is cut by up to 24 dB even while the talker speaks below 8 kHz,
//!   so it does not pump with the voice, and a sibilant that rises above the hiss passes.
//!
//! The bands are measured through Butterworth high-passes at their edges and shaped with a
//! chain of high shelves (one overall gain, then one shelf per band edge for the step to the
//! next band's gain), so nothing is split and summed back: at equal gains the band is only
//! scaled, and the chain adds no latency. The file path and the plugin's stream share this, so a file sounds the same
//! through either.

mod filters;

use filters::{Butterworth4, HighShelf, HighpassBank};

/// The lower edge of the model's top band that steers the gain, in Hz.
const STEER_FROM: f64 = 6_000.0;
/// How long the steering powers are smoothed over, in seconds.
const SMOOTHING_S: f64 = 0.05;
/// Band powers below this are digital silence (and never left to sink into denormals).
const SILENT: f32 = 1e-14;
/// Edges of the bands above 8 kHz that get gains of their own, Hz (those the host rate holds):
/// fine enough that a sibilant at 9 kHz does not open the hiss at 20 kHz.
const BAND_EDGES: [f64; 5] = [8_000.0, 10_000.0, 12_500.0, 16_000.0, 20_000.0];
const BANDS: usize = BAND_EDGES.len();
const _: () = assert!(BANDS <= filters::LANES);
/// How long each band's power is averaged over for the noise judge, in seconds.
const BAND_SMOOTHING_S: f64 = 0.02;
/// The noise floor is the lowest band power over this many sub-windows of `SUB_WINDOW_S`.
const SUB_WINDOWS: usize = 6;
const SUB_WINDOW_S: f64 = 0.25;
/// How much of the floor's power is taken off: the lowest of a smoothed power lies below its
/// mean, so steady hiss needs more than its floor removed; twice takes it to the deepest cut
/// (test `steady_hiss_is_removed_and_sibilants_pass`).
const OVER_SUBTRACTION: f32 = 2.0;
/// The most the noise judge cuts a band (-24 dB): a residual, not a hole above 8 kHz.
const DEEPEST_CUT: f32 = 0.063;
/// How fast a band's gain follows its judges: quicker up (a sibilant's onset) than down.
const GAIN_ATTACK_S: f64 = 0.002;
const GAIN_RELEASE_S: f64 = 0.04;
/// How often the judges are asked and the shelves retuned, in seconds: the gains move over
/// milliseconds, and retuning per sample would cost more than all the filtering.
const UPDATE_S: f64 = 0.000_333;
/// The largest step between neighbouring bands' gains a shelf is asked for.
const LARGEST_STEP: f32 = 64.0;

/// The lowest of a band's power over the last `SUB_WINDOWS` sub-windows (minimum statistics).
#[derive(Clone, Copy, Debug)]
struct NoiseFloor {
    minima: [f32; SUB_WINDOWS],
    next: usize,
    /// The lowest of `minima`, and of the sub-window under way.
    lowest: f32,
    current: f32,
    counted: u32,
}

impl NoiseFloor {
    const UNKNOWN: Self = Self {
        minima: [f32::MAX; SUB_WINDOWS],
        next: 0,
        lowest: f32::MAX,
        current: f32::MAX,
        counted: 0,
    };

    /// Takes the next power (of `sub_window` per sub-window) and returns the floor.
    fn push(&mut self, power: f32, sub_window: u32) -> f32 {
        self.current = self.current.min(power);
        self.counted += 1;
        if self.counted >= sub_window {
            self.minima[self.next] = self.current;
            self.next = (self.next + 1) % SUB_WINDOWS;
            self.lowest = self.minima.iter().fold(f32::MAX, |a, &b| a.min(b));
            self.current = f32::MAX;
            self.counted = 0;
        }
        self.lowest.min(self.current)
    }
}

/// One band above 8 kHz, as its judges see it.
#[derive(Clone, Copy, Debug)]
struct Band {
    /// Energy through the high-pass at the band's lower edge since the last update.
    energy: f32,
    power: f32,
    floor: NoiseFloor,
    gain: f32,
}

#[derive(Clone, Copy, Debug)]
struct Channel {
    wet: Butterworth4,
    low: Butterworth4,
    /// Smoothed power of the model's output and of its input in the top band.
    wet_power: f32,
    low_power: f32,
    /// A high-pass at each band's lower edge: a band's power is what its edge lets through
    /// less what the next edge lets through.
    edges: HighpassBank,
    bands: [Band; BANDS],
    /// At the upper edge of every band but the last.
    shelves: [HighShelf; BANDS - 1],
    /// Samples since the last update, and updates since the start (up to the warm-up's).
    counted: u32,
    updates: u32,
}

/// Factors worked out once for the host rate: per sample for the steering powers, per update
/// for the rest.
#[derive(Clone, Copy, Debug)]
struct Rates {
    smoothing: f32,
    /// Samples per update.
    update: u32,
    band_smoothing: f32,
    /// Updates in the band smoothing's warm-up (plain averages, no slow rise from zero that
    /// the floor would take for silence) and in a noise-floor sub-window.
    warm_up: u32,
    sub_window: u32,
    attack: f32,
    release: f32,
    /// Bands the host rate holds (those whose lower edge is below 0.45 of it).
    bands: usize,
}

/// Restores the band above the model's reach, per channel, sample by sample. Allocates only
/// when made; each sample costs the same (filters), plus an update every third of a
/// millisecond.
#[derive(Clone, Debug)]
pub struct UpperBand {
    fresh: Channel,
    channels: Vec<Channel>,
    rates: Rates,
}

impl UpperBand {
    /// For `channels` channels at the host's `rate`.
    pub fn new(rate: f64, channels: usize) -> Self {
        let update = (UPDATE_S * rate).round().max(1.0);
        let per_update = |seconds: f64| (-update / (seconds * rate)).exp() as f32;
        let in_updates = |seconds: f64| (seconds * rate / update).ceil() as u32;
        let below_nyquist = |edge: f64| edge.min(0.45 * rate);
        // At host rates too low to hold 6 kHz there is no band above the model's anyway.
        let steer = Butterworth4::highpass(STEER_FROM.min(0.4 * rate), rate);
        let band = Band {
            energy: 0.0,
            power: 0.0,
            floor: NoiseFloor::UNKNOWN,
            gain: 1.0,
        };
        let fresh = Channel {
            wet: steer,
            low: steer,
            wet_power: 0.0,
            low_power: 0.0,
            edges: HighpassBank::new(&BAND_EDGES.map(below_nyquist), rate),
            bands: [band; BANDS],
            shelves: std::array::from_fn(|i| {
                HighShelf::new(below_nyquist(BAND_EDGES[i + 1]), rate)
            }),
            counted: 0,
            updates: 0,
        };
        let rates = Rates {
            smoothing: (-1.0 / (SMOOTHING_S * rate)).exp() as f32,
            update: update as u32,
            band_smoothing: per_update(BAND_SMOOTHING_S),
            warm_up: in_updates(BAND_SMOOTHING_S),
            sub_window: in_updates(SUB_WINDOW_S),
            attack: per_update(GAIN_ATTACK_S),
            release: per_update(GAIN_RELEASE_S),
            bands: BAND_EDGES
                .iter()
                .filter(|&&e| e < 0.45 * rate)
                .count()
                .max(1),
        };
        Self {
            fresh,
            channels: vec![fresh; channels],
            rates,
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
        if !self.track(k, wet, low) {
            return wet;
        }
        let r = self.rates;
        let c = &mut self.channels[k];
        let above = dry - low;
        for (x, b) in c.edges.push(above).iter().zip(&mut c.bands) {
            b.energy += x * x;
        }
        c.counted += 1;
        if c.counted >= r.update {
            c.counted = 0;
            if !c.update(&r) {
                // Whatever reached the bands, they start over rather than stick.
                *c = self.fresh;
                return wet;
            }
        }
        // The first band's gain for all, then a step at each edge to the next band's.
        let mut shaped = c.bands[0].gain * above;
        for shelf in &mut c.shelves[..r.bands - 1] {
            shaped = shelf.push(shaped);
        }
        wet + shaped
    }

    /// How much of the band above the model's judgement lets through: as much as the model
    /// let through of the top of its own band, judged by power.
    pub fn gain(&mut self, k: usize, wet: f32, low: f32) -> f32 {
        if self.track(k, wet, low) {
            self.channels[k].steer()
        } else {
            0.0
        }
    }

    /// Follows the top of the model's band, in its output and its input. Returns false (the
    /// channel started over) if something non-finite reached the trackers.
    fn track(&mut self, k: usize, wet: f32, low: f32) -> bool {
        let a = self.rates.smoothing;
        let c = &mut self.channels[k];
        let (w, l) = (c.wet.push(wet), c.low.push(low));
        c.wet_power = a * c.wet_power + (1.0 - a) * w * w;
        c.low_power = a * c.low_power + (1.0 - a) * l * l;
        if !(c.wet_power.is_finite() && c.low_power.is_finite()) {
            *c = self.fresh;
            return false;
        }
        if c.wet_power < SILENT {
            c.wet_power = 0.0;
        }
        if c.low_power < SILENT {
            c.low_power = 0.0;
        }
        true
    }
}

impl Channel {
    /// The model's judgement: its output's power over its input's in its top band.
    fn steer(&self) -> f32 {
        if self.low_power == 0.0 {
            0.0
        } else {
            (self.wet_power / self.low_power).sqrt().min(1.0)
        }
    }

    /// Asks both judges for every band's gain and retunes the shelves. Returns false if a
    /// band's power is not finite.
    fn update(&mut self, r: &Rates) -> bool {
        let steer = self.steer();
        let warming = self.updates < r.warm_up;
        if warming {
            self.updates += 1;
        }
        let n = r.update as f32;
        for i in 0..r.bands {
            let above = self.bands.get(i + 1).filter(|_| i + 1 < r.bands);
            let mean = (self.bands[i].energy - above.map_or(0.0, |b| b.energy)).max(0.0) / n;
            let b = &mut self.bands[i];
            b.power = if warming {
                b.power + (mean - b.power) / self.updates as f32
            } else {
                r.band_smoothing * b.power + (1.0 - r.band_smoothing) * mean
            };
            if !b.power.is_finite() {
                return false;
            }
            let noise = if b.power < SILENT {
                b.power = 0.0;
                1.0
            } else if warming {
                // No floor yet: the model's judgement alone.
                1.0
            } else {
                let floor = b.floor.push(b.power, r.sub_window);
                (1.0 - OVER_SUBTRACTION * floor / b.power)
                    .max(DEEPEST_CUT * DEEPEST_CUT)
                    .sqrt()
            };
            let target = steer.min(noise);
            let follow = if target > b.gain { r.attack } else { r.release };
            b.gain = follow * b.gain + (1.0 - follow) * target;
        }
        for b in &mut self.bands {
            b.energy = 0.0;
        }
        for i in 1..r.bands {
            let step = (self.bands[i].gain / self.bands[i - 1].gain.max(SILENT))
                .clamp(1.0 / LARGEST_STEP, LARGEST_STEP);
            self.shelves[i - 1].tune(step);
        }
        true
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

    /// White noise at 48 kHz from a fixed seed.
    fn white(n: usize, seed: u64, amp: f32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                amp * ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0)
            })
            .collect()
    }

    /// `x` through sixteenth-order high-passes at `cutoff`.
    fn above(x: &[f32], cutoff: f64) -> Vec<f32> {
        let mut f = [Butterworth4::highpass(cutoff, 48_000.0); 4];
        x.iter()
            .map(|&v| f.iter_mut().fold(v, |v, f| f.push(v)))
            .collect()
    }

    fn level_db(x: &[f32]) -> f64 {
        let p = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len() as f64;
        10.0 * p.max(1e-30).log10()
    }

    /// Steady hiss above 8 kHz is removed even where the model keeps everything of its own top
    /// band (as it does in speech), and by as much while a sibilant sounds as between them
    /// (no pumping); the sibilant, well above the hiss, passes.
    #[test]
    fn steady_hiss_is_removed_and_sibilants_pass() {
        let (rate, n) = (48_000.0, 4 * 48_000);
        // Hiss at 17-24 kHz; a 9 kHz "sibilant" 20 dB above it for 0.15 s of every 0.5 s; the
        // model's band holds a 7 kHz tone it keeps whole.
        let hiss = above(&white(n, 7, 0.1), 17_000.0);
        let sibilant: Vec<f32> = tone(9_000.0, rate, 1.0, n)
            .iter()
            .enumerate()
            .map(|(t, v)| if t % 24_000 < 7_200 { v * 0.3 } else { 0.0 })
            .collect();
        let kept = tone(7_000.0, rate, 0.2, n);
        let mut band = UpperBand::new(rate, 1);
        let out: Vec<f32> = (0..n)
            .map(|t| band.mix(0, kept[t], kept[t], kept[t] + hiss[t] + sibilant[t]) - kept[t])
            .collect();
        // After the first 1.5 s (the noise floor's memory), hiss between sibilants and during
        // them (the last 0.1 s of each), and the sibilant itself.
        let settled = 72_000..n;
        let (mut pauses, mut during, mut sib_in, mut sib_out) = (vec![], vec![], vec![], vec![]);
        let out_hiss = above(&out, 16_000.0);
        let in_hiss = above(&hiss, 16_000.0);
        for t in settled {
            let phase = t % 24_000;
            if (12_000..22_000).contains(&phase) {
                pauses.push(t);
            } else if (2_400..7_200).contains(&phase) {
                during.push(t);
                sib_in.push(sibilant[t]);
                sib_out.push(out[t] - out_hiss[t]);
            }
        }
        let at = |x: &[f32], idx: &[usize]| idx.iter().map(|&t| x[t]).collect::<Vec<_>>();
        let input = level_db(&at(&in_hiss, &pauses));
        let in_pauses = level_db(&at(&out_hiss, &pauses)) - input;
        let in_speech = level_db(&at(&out_hiss, &during)) - input;
        let sibilant_db = level_db(&sib_out) - level_db(&sib_in);
        eprintln!(
            "hiss: {in_pauses:.1} dB in pauses, {in_speech:.1} dB during sibilants; \
             sibilant {sibilant_db:.2} dB"
        );
        assert!(in_pauses < -20.0, "hiss in pauses: {in_pauses:.1} dB");
        assert!(
            in_speech < -20.0,
            "hiss during sibilants: {in_speech:.1} dB"
        );
        assert!((in_pauses - in_speech).abs() < 3.0, "the hiss pumps");
        assert!(sibilant_db.abs() < 1.0, "sibilant: {sibilant_db:.2} dB");
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
        assert!(c.wet.0.iter().chain(&c.low.0).all(|h| h.is_silent()));
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
