//! The model as a stream stage at its own rate: audio in, the same audio denoised out, sample
//! for sample (no signal delay), released as soon as the model can finish it.

use crate::error::Result;
use crate::model::Model;

/// A model run on a stream of model-rate audio, one sequence per channel.
pub trait ModelStage: Send {
    /// How long a sample may wait inside the stage: output sample `s` is released by the time
    /// input sample `s + lag - 1` has arrived.
    fn lag(&self) -> usize;

    /// Takes the next input samples (one slice per channel, equal lengths) and appends every
    /// output sample that is now final to `output` (one vector per channel).
    fn process(&mut self, input: &[Vec<f32>], output: &mut [Vec<f32>]) -> Result<()>;

    /// Back to the start of a stream (silence before it), keeping every buffer's capacity, so
    /// a stage that runs on the audio thread can start over there.
    fn reset(&mut self);
}

/// How a bidirectional model sees a stream: windows of [context | chunk | lookahead], of which
/// it keeps the chunk. In model samples, each a multiple of the stride.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub context: usize,
    pub chunk: usize,
    pub lookahead: usize,
}

/// How long the join between two windows' outputs is crossfaded: 10 ms at 16 kHz. The fade
/// runs over the first samples of a chunk, where the window before it computed the same
/// samples as look-ahead, so it costs no latency.
pub const JOIN_FADE: usize = 160;

/// A bidirectional model run on overlapping windows. Neighbouring windows are separate model
/// runs whose outputs differ a little where they meet; each chunk's start is crossfaded from
/// the previous window's output so the join does not step.
pub struct WindowStage {
    model: Model,
    window: Window,
    /// Per channel: the previous window's output over the next chunk's first samples.
    overlap: Vec<Vec<f32>>,
    /// Per channel: input from absolute sample `start` on.
    history: Vec<Vec<f32>>,
    start: usize,
    /// Absolute index of the first sample of the next chunk to release.
    next: usize,
    batch_input: Vec<f32>,
}

impl WindowStage {
    pub fn new(model: Model, window: Window, channels: usize) -> Self {
        Self {
            model,
            window,
            overlap: vec![Vec::with_capacity(JOIN_FADE); channels],
            history: vec![Vec::new(); channels],
            start: 0,
            next: 0,
            batch_input: Vec::new(),
        }
    }
}

impl ModelStage for WindowStage {
    fn lag(&self) -> usize {
        self.window.chunk + self.window.lookahead
    }

    fn reset(&mut self) {
        for h in &mut self.history {
            h.clear();
        }
        for o in &mut self.overlap {
            o.clear();
        }
        self.start = 0;
        self.next = 0;
    }

    fn process(&mut self, input: &[Vec<f32>], output: &mut [Vec<f32>]) -> Result<()> {
        for (h, i) in self.history.iter_mut().zip(input) {
            h.extend_from_slice(i);
        }
        let Window {
            context,
            chunk,
            lookahead,
        } = self.window;
        while self.start + self.history[0].len() >= self.next + chunk + lookahead {
            let from = self.next.saturating_sub(context);
            let to = self.next + chunk + lookahead;
            let len = to - from;
            self.batch_input.clear();
            for h in &self.history {
                self.batch_input
                    .extend_from_slice(&h[from - self.start..to - self.start]);
            }
            let out = self.model.run_raw(&self.batch_input, self.history.len())?;
            let y = &out[0].1;
            let keep = self.next - from;
            let fade = JOIN_FADE.min(lookahead).min(chunk);
            for (c, (o, overlap)) in output.iter_mut().zip(&mut self.overlap).enumerate() {
                let kept = &y[c * len + keep..c * len + keep + chunk];
                let first = o.len();
                o.extend_from_slice(kept);
                // Raised-cosine weights that sum to one: the two outputs estimate the same
                // signal, so the fade keeps its level.
                for (i, prev) in overlap.iter().enumerate() {
                    let fade_in =
                        0.5 - 0.5 * (std::f32::consts::PI * (i as f32 + 0.5) / fade as f32).cos();
                    o[first + i] = prev * (1.0 - fade_in) + kept[i] * fade_in;
                }
                overlap.clear();
                overlap
                    .extend_from_slice(&y[c * len + keep + chunk..c * len + keep + chunk + fade]);
            }
            self.next += chunk;
            // Keep only what the next window's context needs.
            let drop = self.next.saturating_sub(context) - self.start;
            for h in &mut self.history {
                h.drain(..drop);
            }
            self.start += drop;
        }
        Ok(())
    }
}
