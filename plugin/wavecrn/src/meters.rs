//! What the audio thread tells the editor: levels, a short history of the removed level, the
//! reported latency and how often the worker fell behind. Everything is a fixed set of
//! atomics written with relaxed stores, so `process` gains no lock, allocation or system call,
//! and the editor reads whatever was last published.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use nice_plug::prelude::Enum;

use crate::params::Mode;

/// Length of one meter reading (and one point of the history).
pub const READING_SECONDS: f32 = 0.025;
/// Points in the history of the removed level: 6 s at one point per reading.
pub const HISTORY_POINTS: usize = 240;
/// The floor of every level, in dBFS: silence reads as this.
pub const FLOOR_DB: f32 = -90.0;
/// How long the audio thread's peak load is gathered over before it is published.
pub const LOAD_SECONDS: f32 = 1.0;
/// A peak load above this share of a buffer's time leaves too little for the host and other
/// plugins: the editor warns (Low latency at small buffers runs a whole model hop in one).
pub const LOAD_WARNING: f32 = 0.7;

/// An `f32` in an atomic.
struct AtomicLevel(AtomicU32);

impl AtomicLevel {
    fn new(v: f32) -> Self {
        Self(AtomicU32::new(v.to_bits()))
    }
    fn get(&self) -> f32 {
        f32::from_bits(self.0.load(Ordering::Relaxed))
    }
    fn set(&self, v: f32) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
}

/// Levels of one reading, in dBFS (RMS over the reading, all channels together).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Levels {
    /// What came in, as it arrived.
    pub input: f32,
    /// What went out, gain and bypass included.
    pub output: f32,
    /// What the denoiser took away at the current Reduction (input minus denoised, aligned).
    pub removed: f32,
}

/// Shared between the plugin (writer) and its editor (reader).
pub struct Meters {
    input: AtomicLevel,
    output: AtomicLevel,
    removed: AtomicLevel,
    history: [AtomicLevel; HISTORY_POINTS],
    /// Readings published so far; the newest is at `(published - 1) % HISTORY_POINTS`.
    published: AtomicUsize,
    fallbacks: AtomicU64,
    latency_frames: AtomicU32,
    sample_rate: AtomicLevel,
    /// The mode running now ([`Enum::to_index`]), which can lag the Mode parameter.
    active_mode: AtomicUsize,
    restart_pending: AtomicBool,
    active: AtomicBool,
    /// The largest share of a buffer's duration that `process` took, over the last
    /// [`LOAD_SECONDS`].
    load_peak: AtomicLevel,
}

impl Default for Meters {
    fn default() -> Self {
        Self {
            input: AtomicLevel::new(FLOOR_DB),
            output: AtomicLevel::new(FLOOR_DB),
            removed: AtomicLevel::new(FLOOR_DB),
            history: std::array::from_fn(|_| AtomicLevel::new(FLOOR_DB)),
            published: AtomicUsize::new(0),
            fallbacks: AtomicU64::new(0),
            latency_frames: AtomicU32::new(0),
            sample_rate: AtomicLevel::new(0.0),
            active_mode: AtomicUsize::new(0),
            restart_pending: AtomicBool::new(false),
            active: AtomicBool::new(false),
            load_peak: AtomicLevel::new(0.0),
        }
    }
}

/// How the plugin stands, as the editor shows it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Status {
    /// Activated by the host (or running in the standalone app).
    pub active: bool,
    /// The latency reported to the host, in its frames, and its rate.
    pub latency_frames: u32,
    pub sample_rate: f32,
    pub active_mode: Mode,
    /// A Mode change waits for the host to restart the plugin.
    pub restart_pending: bool,
    /// Times the output fell back to the dry signal since activation.
    pub fallbacks: u64,
    /// The largest share of a buffer's duration the audio thread spent in the plugin over
    /// the last [`LOAD_SECONDS`] (1: all of it).
    pub load_peak: f32,
}

impl Status {
    /// The reported latency in milliseconds.
    pub fn latency_ms(&self) -> f32 {
        if self.sample_rate > 0.0 {
            self.latency_frames as f32 * 1000.0 / self.sample_rate
        } else {
            0.0
        }
    }
}

impl Meters {
    /// The latest reading.
    pub fn levels(&self) -> Levels {
        Levels {
            input: self.input.get(),
            output: self.output.get(),
            removed: self.removed.get(),
        }
    }

    /// Readings published since the plugin was made (the editor redraws when it moves).
    pub fn published(&self) -> usize {
        self.published.load(Ordering::Acquire)
    }

    /// The removed level's history, oldest first, into `out` (cleared first; at most
    /// [`HISTORY_POINTS`]).
    pub fn history(&self, out: &mut Vec<f32>) {
        out.clear();
        let end = self.published();
        let start = end.saturating_sub(HISTORY_POINTS);
        out.extend((start..end).map(|i| self.history[i % HISTORY_POINTS].get()));
    }

    pub fn status(&self) -> Status {
        Status {
            active: self.active.load(Ordering::Relaxed),
            latency_frames: self.latency_frames.load(Ordering::Relaxed),
            sample_rate: self.sample_rate.get(),
            active_mode: Mode::from_index(self.active_mode.load(Ordering::Relaxed)),
            restart_pending: self.restart_pending.load(Ordering::Relaxed),
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
            load_peak: self.load_peak.get(),
        }
    }

    /// Called at activation (main thread).
    pub fn activated(&self, latency_frames: u32, sample_rate: f32, mode: Mode) {
        self.latency_frames.store(latency_frames, Ordering::Relaxed);
        self.sample_rate.set(sample_rate);
        self.active_mode.store(mode.to_index(), Ordering::Relaxed);
        self.restart_pending.store(false, Ordering::Relaxed);
        self.fallbacks.store(0, Ordering::Relaxed);
        self.load_peak.set(0.0);
        self.active.store(true, Ordering::Relaxed);
    }

    pub fn deactivated(&self) {
        self.active.store(false, Ordering::Relaxed);
    }

    /// The mode switched without a restart (VST3 and the standalone app).
    pub fn switched(&self, latency_frames: u32, mode: Mode) {
        self.latency_frames.store(latency_frames, Ordering::Relaxed);
        self.active_mode.store(mode.to_index(), Ordering::Relaxed);
    }

    pub fn set_restart_pending(&self, pending: bool) {
        self.restart_pending.store(pending, Ordering::Relaxed);
    }

    pub fn set_fallbacks(&self, count: u64) {
        self.fallbacks.store(count, Ordering::Relaxed);
    }

    fn publish(&self, levels: Levels) {
        self.input.set(levels.input);
        self.output.set(levels.output);
        self.removed.set(levels.removed);
        let n = self.published.load(Ordering::Relaxed);
        self.history[n % HISTORY_POINTS].set(levels.removed);
        self.published.store(n + 1, Ordering::Release);
    }
}

/// Sums of squares over the reading in progress: the audio thread's own, never shared.
#[derive(Default)]
pub struct Reading {
    /// Frames in one reading at the host's rate.
    length: usize,
    frames: usize,
    channels: usize,
    input: f64,
    output: f64,
    removed: f64,
    /// The host's rate; frames and the peak load of the load window in progress.
    rate: f32,
    load_frames: usize,
    load_peak: f32,
}

fn sum_of_squares(x: &[f32]) -> f64 {
    x.iter().map(|&v| (v as f64) * (v as f64)).sum()
}

fn db(sum: f64, count: usize) -> f32 {
    let mean = sum / count.max(1) as f64;
    if mean.is_finite() && mean > 0.0 {
        ((10.0 * mean.log10()) as f32).max(FLOOR_DB)
    } else {
        FLOOR_DB
    }
}

impl Reading {
    /// A reading every [`READING_SECONDS`] at `sample_rate`.
    pub fn new(sample_rate: f32) -> Self {
        Self {
            length: ((sample_rate * READING_SECONDS).round() as usize).max(1),
            rate: sample_rate,
            ..Self::default()
        }
    }

    /// Adds one channel's block of input (as it arrived).
    pub fn add_input(&mut self, input: &[f32]) {
        self.input += sum_of_squares(input);
    }

    /// Adds one channel's block of output and of what was removed from it.
    pub fn add_output(&mut self, output: &[f32], removed: impl Iterator<Item = f32>) {
        self.output += sum_of_squares(output);
        self.removed += removed.map(|v| (v as f64) * (v as f64)).sum::<f64>();
    }

    /// Adds one `process` call that took `spent` for `frames` frames; publishes the peak share
    /// of a buffer's time every [`LOAD_SECONDS`].
    pub fn add_call(&mut self, spent: std::time::Duration, frames: usize, meters: &Meters) {
        if frames == 0 || self.rate <= 0.0 {
            return;
        }
        let share = spent.as_secs_f32() * self.rate / frames as f32;
        self.load_peak = self.load_peak.max(share);
        self.load_frames += frames;
        if self.load_frames as f32 >= LOAD_SECONDS * self.rate {
            meters.load_peak.set(self.load_peak);
            self.load_frames = 0;
            self.load_peak = 0.0;
        }
    }

    /// Closes a block of `frames` frames over `channels` channels, and publishes the reading
    /// once it is [`READING_SECONDS`] long (then returns true).
    pub fn end_block(&mut self, frames: usize, channels: usize, meters: &Meters) -> bool {
        self.frames += frames;
        self.channels = channels.max(1);
        if self.frames >= self.length {
            let count = self.frames * self.channels;
            meters.publish(Levels {
                input: db(self.input, count),
                output: db(self.output, count),
                removed: db(self.removed, count),
            });
            self.frames = 0;
            self.input = 0.0;
            self.output = 0.0;
            self.removed = 0.0;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_publish_rms_levels_every_reading_and_keep_a_history() {
        let meters = Meters::default();
        let rate = 48_000.0;
        let mut reading = Reading::new(rate);
        let len = (rate * READING_SECONDS) as usize;
        // A full-scale square wave (0 dBFS RMS) in, half of it out, half removed.
        let input = vec![1.0f32; 100];
        let output = vec![0.5f32; 100];
        let mut blocks = 0;
        while meters.published() == 0 {
            for _ in 0..2 {
                reading.add_input(&input);
                reading.add_output(&output, output.iter().copied());
            }
            reading.end_block(100, 2, &meters);
            blocks += 1;
        }
        assert_eq!(blocks, len.div_ceil(100));
        let l = meters.levels();
        assert!(l.input.abs() < 1e-4, "{l:?}");
        assert!((l.output + 6.0206).abs() < 1e-3, "{l:?}");
        assert!((l.removed + 6.0206).abs() < 1e-3, "{l:?}");
        // Silence reads as the floor; the history runs oldest first and keeps the last points.
        for _ in 0..(HISTORY_POINTS + 5) * len / 100 + 10 {
            reading.add_input(&[0.0; 100]);
            reading.add_output(&[0.0; 100], [0.0f32; 100].into_iter());
            reading.end_block(100, 1, &meters);
        }
        let mut h = Vec::new();
        meters.history(&mut h);
        assert_eq!(h.len(), HISTORY_POINTS);
        assert!(h.iter().all(|&v| v == FLOOR_DB));
        assert_eq!(meters.levels().input, FLOOR_DB);
    }

    #[test]
    fn the_peak_load_is_published_every_second() {
        let meters = Meters::default();
        let mut reading = Reading::new(1_000.0);
        let ms = std::time::Duration::from_millis;
        // 100-frame buffers last 100 ms at 1 kHz: 10 ms is 10 %, one of 60 ms is 60 %.
        for k in 0..9 {
            reading.add_call(ms(if k == 4 { 60 } else { 10 }), 100, &meters);
        }
        assert_eq!(meters.status().load_peak, 0.0, "published before a second");
        reading.add_call(ms(10), 100, &meters);
        assert!((meters.status().load_peak - 0.6).abs() < 1e-6);
        // The next second starts afresh.
        for _ in 0..10 {
            reading.add_call(ms(20), 100, &meters);
        }
        assert!((meters.status().load_peak - 0.2).abs() < 1e-6);
    }

    #[test]
    fn status_reports_latency_in_milliseconds() {
        let meters = Meters::default();
        meters.activated(480, 48_000.0, Mode::LowLatency);
        meters.set_fallbacks(3);
        let s = meters.status();
        assert!(s.active && !s.restart_pending);
        assert_eq!((s.active_mode, s.fallbacks), (Mode::LowLatency, 3));
        assert!((s.latency_ms() - 10.0).abs() < 1e-6);
        meters.set_restart_pending(true);
        assert!(meters.status().restart_pending);
        meters.deactivated();
        assert!(!meters.status().active);
    }
}
