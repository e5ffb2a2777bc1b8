//! Denoising signals of any length in bounded memory.
//!
//! A one-hour file must not need one-hour buffers: the signal is cut into 30 s chunks, each
//! run with real audio as context on both sides, neighbouring chunks crossfaded over 0.25 s
//! ([`crate::windowed`], the same stage the stream's windowed modes use). With a few seconds
//! of context, the result is within a whisker of running the whole file at once (a test
//! measures how close), and memory stays at a few windows whatever the length.

use crate::error::Result;
use crate::model::Model;
use crate::windowed::{Window, WindowStage};

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

/// Streams a multichannel signal through a model in overlapping windows (the stream's
/// [`WindowStage`], in long chunks with centred crossfades). Channels run as one batch.
pub struct ChunkedDenoiser {
    stage: WindowStage,
}

impl ChunkedDenoiser {
    /// A denoiser for `channels` channels at the model's sample rate.
    pub fn new(model: &Model, channels: usize, sizes: Chunking) -> Result<Self> {
        let window = Window {
            context: sizes.context,
            chunk: sizes.chunk,
            lookahead: sizes.lookahead,
        };
        Ok(Self {
            stage: WindowStage::centred(model.clone(), window, sizes.fade, channels)?,
        })
    }

    /// Runs up to `jobs` windows at once, on as many threads. The output is the same, bit for
    /// bit, as one at a time (every window is computed alone either way); the input held grows
    /// to `jobs` windows.
    pub fn with_jobs(self, jobs: usize) -> Self {
        Self {
            stage: self.stage.with_jobs(jobs),
        }
    }

    /// Adds input (one slice per channel, equal lengths) and appends the output that is
    /// ready to `output` (one vector per channel).
    pub fn push(&mut self, input: &[&[f32]], output: &mut [Vec<f32>]) -> Result<()> {
        self.stage.push(input, output)
    }

    /// Processes what is left; afterwards the output is exactly as long as the input.
    pub fn finish(&mut self, output: &mut [Vec<f32>]) -> Result<()> {
        self.stage.finish(output)
    }

    /// Samples currently buffered per channel (for checking that memory stays bounded).
    pub fn buffered(&self) -> usize {
        self.stage.buffered()
    }
}
