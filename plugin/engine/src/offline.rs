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

/// Window sizes, in model-rate samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunking {
    /// Samples each window contributes (the part between the crossfades).
    pub chunk: usize,
    /// Audio on each side of the chunk that the model sees but whose output is discarded.
    pub context: usize,
    /// Length of the crossfade between neighbouring chunks.
    pub fade: usize,
}

impl Chunking {
    /// 30 s chunks with 3 s of context each side and a 0.25 s crossfade, at `rate`, rounded to
    /// the hop.
    pub fn for_model(model: &Model) -> Self {
        let cfg = model.config();
        let r = cfg.sample_rate as usize;
        let hop = cfg.stride;
        let snap = |n: usize| n.div_ceil(2 * hop) * 2 * hop;
        Self {
            chunk: snap(30 * r),
            context: snap(3 * r),
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
}

impl<'m> ChunkedDenoiser<'m> {
    /// A denoiser for `channels` channels at the model's sample rate.
    pub fn new(model: &'m Model, channels: usize, sizes: Chunking) -> Result<Self> {
        let hop = model.config().stride;
        let fits = sizes.chunk > 0
            && sizes.chunk.is_multiple_of(hop)
            && sizes.context.is_multiple_of(hop)
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
        })
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
        while self.pushed >= self.kept_end(self.next) + self.sizes.context {
            self.run_window(false, output)?;
        }
        Ok(())
    }

    /// Processes what is left; afterwards the output is exactly as long as the input.
    pub fn finish(&mut self, output: &mut [Vec<f32>]) -> Result<()> {
        while self.kept_start(self.next) < self.pushed {
            let last = self.kept_end(self.next) + self.sizes.context > self.pushed;
            self.run_window(last, output)?;
            if last {
                break;
            }
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

    fn run_window(&mut self, last: bool, output: &mut [Vec<f32>]) -> Result<()> {
        let k = self.next;
        let (fade, ctx) = (self.sizes.fade, self.sizes.context);
        let start = self.kept_start(k);
        let end = if last { self.pushed } else { self.kept_end(k) };
        let from = start.saturating_sub(ctx);
        let to = (end + ctx).min(self.pushed);
        let len = to - from;
        let mut batch = Vec::with_capacity(len * self.channels);
        for buf in &self.input {
            batch.extend_from_slice(&buf[from - self.buffer_start..to - self.buffer_start]);
        }
        let out = self.model.denoise(&batch, self.channels)?;
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
        // Drop input no later window needs.
        let keep_from = self
            .kept_start(self.next)
            .saturating_sub(ctx)
            .min(self.pushed);
        if keep_from > self.buffer_start {
            for buf in &mut self.input {
                buf.drain(..keep_from - self.buffer_start);
            }
            self.buffer_start = keep_from;
        }
        Ok(())
    }

    /// Samples currently buffered per channel (for checking that memory stays bounded).
    pub fn buffered(&self) -> usize {
        self.input[0].len()
    }
}
