//! The audio thread's half of a stream. It hands the host's block to the chain (through a ring
//! to the worker thread, or to the chain itself when the stream runs inline), takes the
//! processed audio that is due, and delays the dry signal to match. Nothing here allocates,
//! locks, waits (unless asked to, for offline renders) or makes a system call: every buffer is
//! sized when the stream is made, and an inline chain is warmed up then.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringbuf::traits::{Consumer, Observer, Producer};
use ringbuf::{HeapCons, HeapProd};

use super::chain::Chain;
use super::Shared;

/// The largest input magnitude the chain sees (+36 dBFS): anything louder is garbage, and
/// its square must stay far from overflowing a float.
pub const INPUT_LIMIT: f32 = 64.0;

/// How long an offline render waits for the worker in one block by default before it gives up
/// and renders on as real time would: far more than any model takes for one window.
pub const OFFLINE_PATIENCE: Duration = Duration::from_secs(10);

/// Non-finite input becomes silence, and finite input is limited to +36 dBFS, so no square of
/// it overflows the chain's power trackers.
fn sanitise(x: f32) -> f32 {
    if x.is_finite() {
        x.clamp(-INPUT_LIMIT, INPUT_LIMIT)
    } else {
        0.0
    }
}

/// How an audio side is dimensioned.
pub(super) struct Sizes {
    pub channels: usize,
    pub max_block: usize,
    pub latency: usize,
    /// Frames over which the processed signal fades in and out when the worker falls behind.
    pub fade: usize,
    pub host_rate: f64,
}

/// Where a stream's blocks are processed.
pub(super) enum Processing {
    /// On a worker thread: blocks go to it through one ring and come back through another.
    Worker {
        input: HeapProd<f32>,
        output: HeapCons<f32>,
    },
    /// Here, on the audio thread, block by block (Low latency).
    Inline(Box<Inline>),
}

/// A chain run on the audio thread, and its output waiting to be due.
pub(super) struct Inline {
    chain: Chain,
    planar: Vec<Vec<f32>>,
    /// Processed frames, interleaved, oldest first.
    ready: VecDeque<f32>,
}

impl Inline {
    pub(super) fn new(chain: Chain, channels: usize) -> Self {
        Self {
            chain,
            planar: vec![Vec::new(); channels],
            ready: VecDeque::new(),
        }
    }
}

impl Processing {
    /// Processed samples (interleaved) waiting to be taken.
    fn queued(&self) -> usize {
        match self {
            Processing::Worker { output, .. } => output.occupied_len(),
            Processing::Inline(inline) => inline.ready.len(),
        }
    }

    /// Drops the oldest `samples` processed samples.
    fn skip(&mut self, samples: usize) {
        match self {
            Processing::Worker { output, .. } => {
                output.skip(samples);
            }
            Processing::Inline(inline) => {
                inline.ready.drain(..samples);
            }
        }
    }

    /// Takes the oldest processed samples into `into`, filling it.
    fn pop_into(&mut self, into: &mut [f32]) {
        match self {
            Processing::Worker { output, .. } => {
                output.pop_slice(into);
            }
            Processing::Inline(inline) => {
                let n = into.len();
                for (slot, v) in into.iter_mut().zip(inline.ready.drain(..n)) {
                    *slot = v;
                }
            }
        }
    }

    fn is_inline(&self) -> bool {
        matches!(self, Processing::Inline(_))
    }
}

/// The audio thread's end of one stream.
pub struct AudioSide {
    processing: Processing,
    shared: Arc<Shared>,
    channels: usize,
    max_block: usize,
    latency: usize,
    /// Frames over which the processed signal fades in and out when the worker falls behind.
    fade: usize,
    /// Per channel: the dry signal's delay line, `latency` frames long.
    delay: Vec<Vec<f32>>,
    delay_at: usize,
    /// Output frames still due from before the stream (re)started: nothing processed exists
    /// for them.
    gap: usize,
    /// Processed frames that were due but had not arrived: they are dropped when they do.
    debt: usize,
    /// Weight of the processed signal in `wet`, moving between 0 and 1.
    presence: f32,
    /// Whether the last block ran out of processed audio (counted once per shortfall).
    starved: bool,
    /// Frames in the last block.
    last: usize,
    /// Epoch the worker must acknowledge before this side feeds it again.
    awaiting: Option<u64>,
    interleaved: Vec<f32>,
    dry: Vec<Vec<f32>>,
    wet: Vec<Vec<f32>>,
    /// How long one offline block may wait for the worker.
    patience: Duration,
    /// An offline wait ran out: until the worker has caught up, a block waits no longer than
    /// it lasts, so a stalled worker costs a render one long wait, then holds it to real time
    /// (a worker that is only slow catches up; one that is gone leaves the rest dry).
    gave_up: bool,
    host_rate: f64,
}

impl AudioSide {
    pub(super) fn new(processing: Processing, shared: Arc<Shared>, sizes: Sizes) -> Self {
        let Sizes {
            channels,
            max_block,
            latency,
            fade,
            host_rate,
        } = sizes;
        Self {
            processing,
            shared,
            channels,
            max_block,
            latency,
            fade: fade.max(1),
            delay: vec![vec![0.0; latency.max(1)]; channels],
            delay_at: 0,
            gap: latency,
            debt: 0,
            presence: 0.0,
            starved: false,
            last: 0,
            awaiting: None,
            interleaved: vec![0.0; max_block * channels],
            dry: vec![vec![0.0; max_block]; channels],
            wet: vec![vec![0.0; max_block]; channels],
            patience: OFFLINE_PATIENCE,
            gave_up: false,
            host_rate,
        }
    }

    /// For an inline stream: runs a few of the largest blocks of silence through, so every
    /// buffer of the chain has grown to what it will ever need, then starts over (in place).
    pub(super) fn warm_up(&mut self) {
        if !self.processing.is_inline() {
            return;
        }
        let silence = vec![0.0f32; self.max_block];
        let block = vec![&silence[..]; self.channels];
        // Room for the most any buffer on the chain holds (frames wait up to the latency for
        // their processed selves, and arrive in bursts), then a run through to size the rest.
        // Sizing by warm-up alone missed bursts at small host blocks (64 frames).
        let room = 2 * self.latency + 4 * self.max_block + 4096;
        if let Processing::Inline(inline) = &mut self.processing {
            inline.chain.reserve(room);
            for v in &mut inline.planar {
                v.reserve(room);
            }
            inline.ready.reserve(room * self.channels);
        }
        let blocks = room.div_ceil(self.max_block);
        for _ in 0..blocks.max(4) {
            self.process(&block, false);
        }
        self.reset();
        // An empty block: the chain starts over now rather than in the host's first block.
        self.process(&vec![&silence[..0]; self.channels], false);
        self.shared.fallbacks.store(0, Ordering::Relaxed);
    }

    /// Runs an inline chain over the block in `interleaved` (`frames` frames). A failure
    /// counts as a fallback and starts the stream over.
    fn run_inline(&mut self, frames: usize) {
        let Processing::Inline(inline) = &mut self.processing else {
            return;
        };
        if frames == 0 {
            return;
        }
        let ch = self.channels;
        for (c, p) in inline.planar.iter_mut().enumerate() {
            p.clear();
            p.extend(self.interleaved[..frames * ch].iter().skip(c).step_by(ch));
        }
        let ready = &mut inline.ready;
        if inline
            .chain
            .run_into(&inline.planar, |v| ready.push_back(v))
            .is_err()
        {
            self.shared.fallbacks.fetch_add(1, Ordering::Relaxed);
            self.request_restart();
        }
    }

    /// How long one block of an offline render may wait for the worker
    /// ([`OFFLINE_PATIENCE`] unless set). After a wait that runs out, a block waits only as
    /// long as it lasts until the worker has caught up again, and what it missed falls back to
    /// the dry signal.
    pub fn set_offline_patience(&mut self, patience: Duration) {
        self.patience = patience;
    }

    /// Waits, for an offline render of a block of `frames`, until `ready` holds or the
    /// patience runs out (after which, until the worker catches up, a block waits only as
    /// long as it lasts). Sleeps between checks: on a machine with fewer free cores than
    /// threads a spinning wait would take the worker's.
    fn wait_for(&mut self, frames: usize, mut ready: impl FnMut(&mut Self) -> bool) {
        let limit = if self.gave_up {
            Duration::from_secs_f64(frames as f64 / self.host_rate)
        } else {
            self.patience
        };
        let started = Instant::now();
        while !ready(self) {
            if started.elapsed() >= limit {
                self.gave_up = true;
                return;
            }
            if started.elapsed() < Duration::from_millis(1) {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(100));
            }
        }
    }

    /// The stream's latency in host frames: output frame `n` is input frame `n - latency`.
    pub fn latency(&self) -> usize {
        self.latency
    }

    /// The most frames one call to [`process`](Self::process) takes.
    pub fn max_block(&self) -> usize {
        self.max_block
    }

    /// Starts the stream over: the delay line is cleared and the worker is told to drop what it
    /// holds. Until it has, the output is the dry signal.
    pub fn reset(&mut self) {
        for d in &mut self.delay {
            d.fill(0.0);
        }
        self.request_restart();
    }

    /// Starts the stream over, as [`reset`](Self::reset) does, with the dry path's delay line
    /// holding the input that came just before: per channel, `recent` gives it in two pieces
    /// (a ring's older then newer part), the newest frame last. A stream switched in
    /// mid-signal then plays on from the signal instead of from a latency's worth of silence
    /// (the processed signal fades in once the worker has caught up).
    pub fn reset_after(&mut self, recent: &[[&[f32]; 2]]) {
        for (c, line) in self.delay.iter_mut().enumerate() {
            line.fill(0.0);
            let Some([older, newer]) = recent.get(c) else {
                continue;
            };
            // The delay line plays from index 0 next: its last frame is the newest input.
            let len = line.len();
            let pieces = older.iter().chain(newer.iter());
            let have = older.len() + newer.len();
            let kept = have.min(len);
            for (slot, &x) in line[len - kept..].iter_mut().zip(pieces.skip(have - kept)) {
                *slot = sanitise(x);
            }
        }
        self.delay_at = 0;
        self.request_restart();
    }

    fn request_restart(&mut self) {
        let epoch = self.shared.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        self.awaiting = Some(epoch);
        self.presence = 0.0;
    }

    /// Takes one block (one slice per channel, at most [`max_block`](Self::max_block) frames,
    /// equal lengths). Afterwards [`dry`](Self::dry) and [`wet`](Self::wet) hold the block's
    /// output: the input delayed by the latency, and the processed signal at the same time.
    /// Non-finite input is replaced by silence here, so it can reach neither the model nor
    /// the output.
    ///
    /// With `wait`, the call waits for the worker rather than falling back to the dry signal
    /// (for offline renders, never for real-time ones).
    pub fn process(&mut self, block: &[&[f32]], wait: bool) {
        let ch = self.channels;
        let n = block.first().map_or(0, |b| b.len());
        assert!(
            n <= self.max_block,
            "block longer than the stream was made for"
        );
        assert_eq!(block.len(), ch, "wrong number of channels");
        self.last = n;

        // Dry path: sanitise, delay.
        for (c, b) in block.iter().enumerate() {
            let line = &mut self.delay[c];
            let len = line.len();
            let mut at = self.delay_at;
            for (i, &x) in b.iter().enumerate() {
                let x = sanitise(x);
                self.interleaved[i * ch + c] = x;
                if self.latency == 0 {
                    self.dry[c][i] = x;
                } else {
                    self.dry[c][i] = line[at];
                    line[at] = x;
                    at = (at + 1) % len;
                }
            }
        }
        self.delay_at = (self.delay_at + n) % self.delay[0].len();

        self.check_restart();
        if wait {
            // Offline: wait for the worker to have started over, rather than run dry.
            self.wait_for(n, |s| {
                s.check_restart();
                s.awaiting.is_none()
            });
        }
        if self.awaiting.is_none() {
            match &mut self.processing {
                Processing::Worker { input, .. } if input.vacant_len() < n * ch => {
                    // The worker has stalled for seconds: start the stream over.
                    self.shared.fallbacks.fetch_add(1, Ordering::Relaxed);
                    self.request_restart();
                }
                Processing::Worker { input, .. } => {
                    input.push_slice(&self.interleaved[..n * ch]);
                }
                Processing::Inline(_) => self.run_inline(n),
            }
        }
        if self.awaiting.is_some() {
            for c in 0..ch {
                self.wet[c][..n].copy_from_slice(&self.dry[c][..n]);
            }
            return;
        }

        let gap = self.gap.min(n);
        self.gap -= gap;
        let due = n - gap;
        let want = (self.debt + due + self.fade) * ch;
        // (An inline chain has already delivered all it can.)
        if wait && due > 0 && !self.processing.is_inline() {
            self.wait_for(due, |s| s.processing.queued() >= want);
        }
        if self.processing.queued() >= want {
            // The worker is keeping up: offline blocks may wait for it in full again.
            self.gave_up = false;
        }
        let mut available = self.processing.queued() / ch;
        let drop = self.debt.min(available);
        self.processing.skip(drop * ch);
        self.debt -= drop;
        available -= drop;

        for c in 0..ch {
            self.wet[c][..gap].copy_from_slice(&self.dry[c][..gap]);
        }
        let take = available.min(due);
        if take < due && !self.starved {
            self.starved = true;
            self.shared.fallbacks.fetch_add(1, Ordering::Relaxed);
        } else if take == due && due > 0 {
            self.starved = false;
        }
        self.processing.pop_into(&mut self.interleaved[..take * ch]);
        let step = 1.0 / self.fade as f32;
        let mut lost = false;
        for i in 0..take {
            // Fade out over the last `fade` frames the worker has delivered, so running dry
            // never clicks; fade back in once it is ahead again.
            // (Inline, the chain delivers exactly what is due: nothing to anticipate.)
            let ahead = self.processing.is_inline() || available - i > self.fade;
            let target = if ahead { 1.0 } else { 0.0 };
            self.presence = step_toward(self.presence, target, step);
            let at = gap + i;
            for c in 0..ch {
                let d = self.dry[c][at];
                let y = self.interleaved[i * ch + c];
                let y = if y.is_finite() {
                    y
                } else {
                    // The chain lost this sample (a model state that went bad and was
                    // reset): the dry signal stands in, and the event is counted.
                    lost = true;
                    d
                };
                self.wet[c][at] = d + self.presence * (y - d);
            }
        }
        if lost {
            self.shared.fallbacks.fetch_add(1, Ordering::Relaxed);
        }
        for c in 0..ch {
            self.wet[c][gap + take..n].copy_from_slice(&self.dry[c][gap + take..n]);
        }
        if take < due {
            self.presence = 0.0;
            self.debt += due - take;
        }
    }

    /// Ends a restart once the chain has started over: at once inline (it starts over here),
    /// once the worker has said so otherwise.
    fn check_restart(&mut self) {
        if let Some(epoch) = self.awaiting {
            let started_over = match &mut self.processing {
                Processing::Inline(inline) => {
                    inline.chain.reset();
                    true
                }
                Processing::Worker { .. } => self.shared.acked.load(Ordering::Acquire) == epoch,
            };
            if started_over {
                // Whatever the chain made before it started over is stale.
                let stale = self.processing.queued();
                self.processing.skip(stale);
                self.awaiting = None;
                self.gap = self.latency;
                self.debt = 0;
                // The worker is alive: offline blocks may wait for it again.
                self.gave_up = false;
            }
        }
    }

    /// Channel `c` of the last block's dry output.
    pub fn dry(&self, c: usize) -> &[f32] {
        &self.dry[c][..self.last]
    }

    /// Channel `c` of the last block's processed output (the dry signal where the worker had
    /// nothing yet).
    pub fn wet(&self, c: usize) -> &[f32] {
        &self.wet[c][..self.last]
    }

    /// How often the output fell back to the dry signal because the worker was late.
    pub fn fallbacks(&self) -> u64 {
        self.shared.fallbacks.load(Ordering::Relaxed)
    }
}

/// `value` moved `step` toward `target`, stopping there: a linear fade one frame at a time.
pub fn step_toward(value: f32, target: f32, step: f32) -> f32 {
    if value < target {
        (value + step).min(target)
    } else {
        (value - step).max(target)
    }
}
