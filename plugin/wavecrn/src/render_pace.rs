//! Whether the host is rendering offline, judged by the pace at which audio arrives.
//!
//! Offline, the stream waits for its worker; in real time it must never wait and falls back
//! to the dry signal instead. The host's word for it cannot be relied on for VST3: nice-plug
//! 0.4.2 hands `activate` the process mode of the host's *previous* `setupProcessing` call, so
//! in Ardour (which calls `setupProcessing` with `kOffline` and reactivates when an export
//! starts, and again with `kRealtime` after it) every export ran as real time and came out
//! mostly dry, and playback after an export waited for the worker. The pace cannot be wrong
//! that way: a real-time host delivers audio no faster than its device plays it, so audio that
//! runs ahead of the wall clock by more than a few blocks is an offline render.

use std::time::{Duration, Instant};

/// How far ahead of the wall clock audio may arrive, beyond two blocks, before the host
/// counts as rendering offline: more than any real-time host's start-up burst.
const LEAD: f64 = 0.25;
/// How much wall-clock time each pace measurement spans.
const WINDOW: Duration = Duration::from_secs(1);
/// Below this share of real time over a window, an offline render has ended (the host has
/// stopped rendering, or the machine cannot keep up even waiting). At real time it has not:
/// waiting for the model may hold a render to that pace, and hosts reactivate a plugin
/// between a render and playback, which starts the measurement afresh.
const REAL_TIME_AGAIN: f64 = 0.9;

/// The pace of the audio the host delivers, measured on the audio thread (reading the clock
/// allocates nothing and makes no system call where the clock is in the vDSO).
#[derive(Debug)]
pub struct RenderPace {
    rate: f64,
    /// Frames the host may deliver ahead of the wall clock in real time.
    margin: f64,
    /// The current window: when it began and the frames delivered since.
    since: Option<Instant>,
    frames: u64,
    offline: bool,
}

impl RenderPace {
    /// For a host at `sample_rate` Hz with blocks of at most `max_block` frames.
    pub fn new(sample_rate: f64, max_block: usize) -> Self {
        Self {
            rate: sample_rate,
            margin: LEAD * sample_rate + 2.0 * max_block as f64,
            since: None,
            frames: 0,
            offline: false,
        }
    }

    /// Takes a block of `frames` delivered at `now`; returns whether to render it as an
    /// offline render (waiting for the model) or in real time.
    pub fn block(&mut self, frames: usize, now: Instant) -> bool {
        let since = *self.since.get_or_insert(now);
        self.frames += frames as u64;
        let wall = now.saturating_duration_since(since);
        let ahead = self.frames as f64 - wall.as_secs_f64() * self.rate;
        if ahead > self.margin {
            self.offline = true;
        }
        if wall >= WINDOW {
            let pace = self.frames as f64 / (wall.as_secs_f64() * self.rate);
            if pace < REAL_TIME_AGAIN {
                self.offline = false;
            }
            self.since = Some(now);
            self.frames = 0;
        }
        self.offline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `blocks` blocks of `frames` at `speed` times real time; returns the verdicts.
    fn feed(
        pace: &mut RenderPace,
        start: Instant,
        blocks: usize,
        frames: usize,
        speed: f64,
    ) -> Vec<bool> {
        let mut t = start;
        let step = Duration::from_secs_f64(frames as f64 / pace.rate / speed);
        (0..blocks)
            .map(|_| {
                let verdict = pace.block(frames, t);
                t += step;
                verdict
            })
            .collect()
    }

    #[test]
    fn real_time_hosts_never_count_as_offline() {
        let mut pace = RenderPace::new(48_000.0, 8192);
        // Ten minutes of 64-frame blocks, then a burst of 3 large blocks at once.
        let start = Instant::now();
        assert!(feed(&mut pace, start, 450_000, 64, 1.0).iter().all(|o| !o));
        let later = start + Duration::from_secs(700);
        for _ in 0..3 {
            assert!(!pace.block(8192, later));
        }
    }

    #[test]
    fn a_render_faster_than_real_time_is_seen_within_a_quarter_second_of_audio() {
        let mut pace = RenderPace::new(48_000.0, 512);
        let verdicts = feed(&mut pace, Instant::now(), 200, 512, 20.0);
        let first = verdicts.iter().position(|o| *o).unwrap();
        // 0.25 s + 2 blocks of lead at 20x: about 26 blocks of 512 frames.
        assert!(first * 512 < 48_000 / 2, "{first}");
        assert!(verdicts[first..].iter().all(|o| *o));
    }

    #[test]
    fn a_render_held_back_by_the_model_stays_offline_until_the_host_slows_down() {
        let mut pace = RenderPace::new(48_000.0, 512);
        let start = Instant::now();
        assert!(*feed(&mut pace, start, 100, 512, 20.0).last().unwrap());
        // Waiting for the model holds the render to real time or a little above: still
        // offline (hosts reactivate a plugin between a render and playback).
        let later = start + Duration::from_millis(100);
        assert!(feed(&mut pace, later, 1000, 512, 1.0).iter().all(|o| *o));
        // A host that delivers audio at half real time is not rendering: real time again
        // within two windows.
        let after = later + Duration::from_secs_f64(1000.0 * 512.0 / 48_000.0);
        let verdicts = feed(&mut pace, after, 400, 512, 0.5);
        assert!(verdicts[2 * (48_000 / 512 / 2 + 1)..].iter().all(|o| !o));
    }
}
