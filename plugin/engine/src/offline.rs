//! Denoising signals of any length in bounded memory.
//!
//! The bidirectional model wants the whole signal, but a one-hour file must not need one-hour
//! buffers. The signal is cut into chunks; each chunk is run with real audio as context on
//! both sides, and neighbouring chunks overlap by a short crossfade. With a few seconds of
//! context, the result is within a whisker of running the whole file at once (a test
//! measures how close), and memory stays at a few windows whatever the length.
//!
//! Every window starts on the model's hop grid, so its frames are the whole-file frames.

use crate::error::{Error, Result};
use crate::model::Model;

/// The cores this process may use (1 where the system cannot say): how many chunks the batch
/// tools run at once by default.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Window sizes, in model-rate samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunking {
    /// Samples each window contributes (the part between the crossfades).
    pub chunk: usize,
    /// Audio before the chunk that the model sees but whose output is discarded.
    pub context: usize,
    /// Audio after the chunk that the model sees, output discarded: the context again for a
    /// bidirectional model; a causal one needs only what its encoder frames reach.
    pub lookahead: usize,
    /// Length of the crossfade between neighbouring chunks.
    pub fade: usize,
}

impl Chunking {
    /// 30 s chunks with 3 s of context before and a 0.25 s crossfade, at `rate`, rounded to
    /// the hop; after the chunk, 3 s for a bidirectional model and, for a causal one, four
    /// hops: an output sample depends on input up to one kernel (two hops) ahead, through the
    /// encoder's frame and the decoder's overlap, so the rest would be work thrown away (3 s
    /// of each 36 s window).
    pub fn for_model(model: &Model) -> Self {
        let cfg = model.config();
        let r = cfg.sample_rate as usize;
        let hop = cfg.stride;
        let snap = |n: usize| n.div_ceil(2 * hop) * 2 * hop;
        let context = snap(3 * r);
        Self {
            chunk: snap(30 * r),
            context,
            lookahead: if cfg.directions == 1 {
                4 * hop
            } else {
                context
            },
            fade: snap(r / 4),
        }
    }
}

/// Streams a multichannel signal through a model in overlapping windows. Channels run as one
/// batch.
pub struct ChunkedDenoiser<'m> {
    model: &'m Model,
    sizes: Chunking,
    channels: usize,
    /// Buffered input, from absolute sample `buffer_start`.
    input: Vec<Vec<f32>>,
    buffer_start: usize,
    /// Total input samples pushed so far.
    pushed: usize,
    /// Index of the next window to run.
    next: usize,
    /// The faded-out end of the previous window, waiting for the next window's fade-in.
    tail: Vec<Vec<f32>>,
    /// Windows run at once, each on a thread of its own.
    jobs: usize,
}

impl<'m> ChunkedDenoiser<'m> {
    /// A denoiser for `channels` channels at the model's sample rate.
    pub fn new(model: &'m Model, channels: usize, sizes: Chunking) -> Result<Self> {
        let hop = model.config().stride;
        let fits = sizes.chunk > 0
            && sizes.chunk.is_multiple_of(hop)
            && sizes.context.is_multiple_of(hop)
            && sizes.lookahead.is_multiple_of(hop)
            && sizes.fade.is_multiple_of(2 * hop);
        if !fits || sizes.fade > sizes.chunk {
            return Err(Error::Input(format!("chunk sizes {sizes:?} must be multiples of the hop {hop} (the fade of twice it) and the fade no longer than the chunk")));
        }
        if channels == 0 {
            return Err(Error::Input("no channels".into()));
        }
        Ok(Self {
            model,
            sizes,
            channels,
            input: vec![vec![]; channels],
            buffer_start: 0,
            pushed: 0,
            next: 0,
            tail: vec![vec![]; channels],
            jobs: 1,
        })
    }

    /// Runs up to `jobs` windows at once, on as many threads. The output is the same, bit for
    /// bit, as one at a time (every window is computed alone either way); the input held grows
    /// to `jobs` windows.
    pub fn with_jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs.max(1);
        self
    }

    /// Adds input (one slice per channel, equal lengths) and appends the output that is
    /// ready to `output` (one vector per channel).
    pub fn push(&mut self, input: &[&[f32]], output: &mut [Vec<f32>]) -> Result<()> {
        if input.len() != self.channels || output.len() != self.channels {
            return Err(Error::Input(format!("expected {} channels", self.channels)));
        }
        let n = input[0].len();
        if input.iter().any(|c| c.len() != n) {
            return Err(Error::Input("channels differ in length".into()));
        }
        for (buf, x) in self.input.iter_mut().zip(input) {
            buf.extend_from_slice(x);
        }
        self.pushed += n;
        loop {
            let ready: Vec<(usize, bool)> = (self.next..self.next + self.jobs)
                .take_while(|&k| self.pushed >= self.kept_end(k) + self.sizes.lookahead)
                .map(|k| (k, false))
                .collect();
            // Wait for a full group: what is read arrives in order, one window at a time.
            if ready.len() < self.jobs {
                return Ok(());
            }
            self.run_windows(&ready, output)?;
        }
    }

    /// Processes what is left; afterwards the output is exactly as long as the input.
    pub fn finish(&mut self, output: &mut [Vec<f32>]) -> Result<()> {
        let mut rest = Vec::new();
        let mut k = self.next;
        while self.kept_start(k) < self.pushed {
            let last = self.kept_end(k) + self.sizes.lookahead > self.pushed;
            rest.push((k, last));
            if last {
                break;
            }
            k += 1;
        }
        for group in rest.chunks(self.jobs) {
            self.run_windows(group, output)?;
        }
        // A signal ending exactly at a chunk boundary leaves a tail with no successor.
        for (o, t) in output.iter_mut().zip(&mut self.tail) {
            o.append(t);
        }
        Ok(())
    }

    fn kept_start(&self, k: usize) -> usize {
        (k * self.sizes.chunk).saturating_sub(self.sizes.fade / 2)
    }

    fn kept_end(&self, k: usize) -> usize {
        (k + 1) * self.sizes.chunk + self.sizes.fade / 2
    }

    /// Where window `k` keeps its output (`start..end`) and what it reads (`from..to`).
    fn span(&self, k: usize, last: bool) -> (usize, usize, usize, usize) {
        let start = self.kept_start(k);
        let end = if last { self.pushed } else { self.kept_end(k) };
        (
            start,
            end,
            start.saturating_sub(self.sizes.context),
            (end + self.sizes.lookahead).min(self.pushed),
        )
    }

    /// Runs the windows `group` (consecutive, from `self.next`) through the model, at once
    /// when there are several, and appends their output in order.
    fn run_windows(&mut self, group: &[(usize, bool)], output: &mut [Vec<f32>]) -> Result<()> {
        let batches: Vec<Vec<f32>> = group
            .iter()
            .map(|&(k, last)| {
                let (_, _, from, to) = self.span(k, last);
                let mut batch = Vec::with_capacity((to - from) * self.channels);
                for buf in &self.input {
                    batch.extend_from_slice(&buf[from - self.buffer_start..to - self.buffer_start]);
                }
                batch
            })
            .collect();
        let (model, channels) = (self.model, self.channels);
        let outputs: Vec<Result<Vec<f32>>> = if batches.len() == 1 {
            vec![model.denoise(&batches[0], channels)]
        } else {
            std::thread::scope(|scope| {
                let running: Vec<_> = batches
                    .iter()
                    .map(|b| scope.spawn(move || model.denoise(b, channels)))
                    .collect();
                running
                    .into_iter()
                    .map(|r| {
                        r.join().unwrap_or_else(|_| {
                            Err(Error::Inference("a window's thread panicked".into()))
                        })
                    })
                    .collect()
            })
        };
        for (&(k, last), out) in group.iter().zip(outputs) {
            self.assemble(k, last, &out?, output);
        }
        // Drop input no later window needs.
        let keep_from = self
            .kept_start(self.next)
            .saturating_sub(self.sizes.context)
            .min(self.pushed);
        if keep_from > self.buffer_start {
            for buf in &mut self.input {
                buf.drain(..keep_from - self.buffer_start);
            }
            self.buffer_start = keep_from;
        }
        Ok(())
    }

    /// Appends window `k`'s kept output (`out`, the model's output for its whole span),
    /// crossfaded into the previous window's tail.
    fn assemble(&mut self, k: usize, last: bool, out: &[f32], output: &mut [Vec<f32>]) {
        debug_assert_eq!(k, self.next);
        let fade = self.sizes.fade;
        let (start, end, from, to) = self.span(k, last);
        let len = to - from;
        let fade_in = if k == 0 { 0 } else { fade };
        for (ch, o) in output.iter_mut().enumerate() {
            let y = &out[ch * len + (start - from)..ch * len + (end - from)];
            let tail = std::mem::take(&mut self.tail[ch]);
            debug_assert_eq!(tail.len(), fade_in);
            // Raised-cosine crossfade: the two gains sum to one.
            o.extend(tail.iter().zip(y).enumerate().map(|(i, (t, v))| {
                let g = 0.5 - 0.5 * (std::f32::consts::PI * (i as f32 + 0.5) / fade as f32).cos();
                t * (1.0 - g) + v * g
            }));
            if last {
                o.extend_from_slice(&y[fade_in..]);
            } else {
                o.extend_from_slice(&y[fade_in..y.len() - fade]);
                self.tail[ch] = y[y.len() - fade..].to_vec();
            }
        }
        self.next += 1;
    }

    /// Samples currently buffered per channel (for checking that memory stays bounded).
    pub fn buffered(&self) -> usize {
        self.input[0].len()
    }
}
