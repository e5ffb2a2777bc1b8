//! A bidirectional model on overlapping windows, for files and streams alike.
//!
//! The bidirectional model wants the whole signal, but neither a stream nor a one-hour file
//! can wait for it. So the signal is cut into chunks, and each chunk is run with real audio
//! around it: `context` before, `lookahead` after, whose outputs are discarded.
//!
//! ```text
//!  window k:   [ context | chunk k | lookahead ............ ]
//!  window k+1:           [ context | chunk k+1 | lookahead ... ]
//!                                  |<-fade->|
//! ```
//!
//! Neighbouring windows are separate model runs whose outputs differ a little where they
//! meet, so each chunk's first `fade` samples are crossfaded from what the window before
//! computed for them in its look-ahead. The stream fades over 10 ms; the file path over
//! 0.25 s, centred on the boundary between its 30 s chunks (its first chunk is shorter by half
//! a fade). Every window starts on the model's hop grid, so its frames are the whole signal's.

use crate::error::{Error, Result};
use crate::model::Model;

/// How a bidirectional model sees a stream: windows of [context | chunk | lookahead], of which
/// it keeps the chunk. In model samples, each a multiple of the stride.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub context: usize,
    pub chunk: usize,
    pub lookahead: usize,
}

/// How long the join between two windows' outputs is crossfaded in a stream: 10 ms at
/// 16 kHz. The fade runs over the first samples of a chunk, where the window before it
/// computed the same samples as look-ahead, so it costs no latency.
pub const JOIN_FADE: usize = 160;

/// A bidirectional model run on overlapping windows, crossfaded where they join.
pub struct WindowStage {
    model: Model,
    window: Window,
    /// Samples crossfaded at each join (at most the look-ahead and the chunk).
    fade: usize,
    /// The first window's chunk (the others' is `window.chunk`).
    first_chunk: usize,
    /// Windows run at once, each on a thread of its own.
    jobs: usize,
    /// Per channel: the previous window's output over the next chunk's first samples.
    overlap: Vec<Vec<f32>>,
    /// Per channel: input from absolute sample `start` on.
    history: Vec<Vec<f32>>,
    start: usize,
    /// Absolute index of the first sample of the next chunk to release.
    next: usize,
}

/// One window to run: where its chunk starts, how long it is, and what it reads.
#[derive(Clone, Copy, Debug)]
struct Span {
    next: usize,
    chunk: usize,
    from: usize,
    to: usize,
    /// The last window of a finished signal: it keeps everything to the end, and leaves no
    /// overlap behind.
    last: bool,
}

impl WindowStage {
    /// For a stream: chunks of equal length, joins faded over [`JOIN_FADE`] samples of the
    /// look-ahead.
    pub fn new(model: Model, window: Window, channels: usize) -> Self {
        let fade = JOIN_FADE.min(window.lookahead).min(window.chunk);
        Self::with_fade(model, window, fade, window.chunk, channels)
    }

    /// For a signal in long chunks with a crossfade of `fade` samples centred on every
    /// boundary: the look-ahead is the context again for a bidirectional model (for a causal
    /// one, a few hops), and the model sees `fade / 2` more on each side of a chunk.
    pub fn centred(model: Model, window: Window, fade: usize, channels: usize) -> Result<Self> {
        let hop = model.config().stride;
        let fits = window.chunk > 0
            && window.chunk.is_multiple_of(hop)
            && window.context.is_multiple_of(hop)
            && window.lookahead.is_multiple_of(hop)
            && fade.is_multiple_of(2 * hop);
        if !fits || fade > window.chunk {
            return Err(Error::Input(format!(
                "chunk sizes {window:?}, fade {fade} must be multiples of the hop {hop} (the \
                 fade of twice it) and the fade no longer than the chunk"
            )));
        }
        if channels == 0 {
            return Err(Error::Input("no channels".into()));
        }
        let seen = Window {
            lookahead: window.lookahead + fade,
            ..window
        };
        Ok(Self::with_fade(
            model,
            seen,
            fade,
            window.chunk - fade / 2,
            channels,
        ))
    }

    fn with_fade(
        model: Model,
        window: Window,
        fade: usize,
        first_chunk: usize,
        channels: usize,
    ) -> Self {
        Self {
            model,
            window,
            fade,
            first_chunk,
            jobs: 1,
            overlap: vec![Vec::with_capacity(fade); channels],
            history: vec![Vec::new(); channels],
            start: 0,
            next: 0,
        }
    }

    /// Runs up to `jobs` windows at once, on as many threads. The output is the same, bit for
    /// bit, as one at a time (every window is computed alone either way); the input held grows
    /// to `jobs` windows.
    pub fn with_jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs.max(1);
        self
    }

    /// How long a sample may wait: output sample `s` is released by the time input sample
    /// `s + lag - 1` has arrived.
    pub fn lag(&self) -> usize {
        self.window.chunk + self.window.lookahead
    }

    /// Back to the start of a signal, keeping every buffer's capacity.
    pub fn reset(&mut self) {
        for v in self.history.iter_mut().chain(&mut self.overlap) {
            v.clear();
        }
        self.start = 0;
        self.next = 0;
    }

    /// Samples currently buffered per channel (for checking that memory stays bounded).
    pub fn buffered(&self) -> usize {
        self.history[0].len()
    }

    fn pushed(&self) -> usize {
        self.start + self.history[0].len()
    }

    /// Window `k` after the next one to run: its span, or `None` if it cannot run yet (with
    /// `finishing`, the input is complete and it runs with what there is).
    fn span(&self, k: usize, finishing: bool) -> Option<Span> {
        let next = if self.next == 0 && k > 0 {
            self.first_chunk + (k - 1) * self.window.chunk
        } else {
            self.next + k * self.window.chunk
        };
        let chunk = if next == 0 {
            self.first_chunk
        } else {
            self.window.chunk
        };
        let to = next + chunk + self.window.lookahead;
        let pushed = self.pushed();
        let from = next.saturating_sub(self.window.context);
        if to <= pushed {
            Some(Span {
                next,
                chunk,
                from,
                to,
                last: false,
            })
        } else if finishing && next < pushed {
            Some(Span {
                next,
                chunk: pushed - next,
                from,
                to: pushed,
                last: true,
            })
        } else {
            None
        }
    }

    /// Takes the next input samples (one slice per channel, equal lengths) and appends every
    /// output sample that is now final to `output` (one vector per channel).
    pub fn push<S: AsRef<[f32]>>(&mut self, input: &[S], output: &mut [Vec<f32>]) -> Result<()> {
        let channels = self.history.len();
        if input.len() != channels || output.len() != channels {
            return Err(Error::Input(format!("expected {channels} channels")));
        }
        let n = input[0].as_ref().len();
        if input.iter().any(|c| c.as_ref().len() != n) {
            return Err(Error::Input("channels differ in length".into()));
        }
        for (h, i) in self.history.iter_mut().zip(input) {
            h.extend_from_slice(i.as_ref());
        }
        loop {
            let group: Vec<Span> = (0..self.jobs).map_while(|k| self.span(k, false)).collect();
            // Wait for a full group: what is read arrives in order, one window at a time.
            if group.len() < self.jobs {
                return Ok(());
            }
            self.run(&group, output)?;
        }
    }

    /// Processes what is left; afterwards the output is exactly as long as the input.
    pub fn finish(&mut self, output: &mut [Vec<f32>]) -> Result<()> {
        let mut rest = Vec::new();
        while let Some(span) = self.span(rest.len(), true) {
            rest.push(span);
            if span.last {
                break;
            }
        }
        for group in rest.chunks(self.jobs) {
            self.run(group, output)?;
        }
        // A signal that ends where a chunk does leaves an overlap with no chunk after it.
        for (o, v) in output.iter_mut().zip(&mut self.overlap) {
            o.append(v);
        }
        Ok(())
    }

    /// Runs the windows `group` (consecutive, from `self.next`) through the model, at once
    /// when there are several, and appends their output in order.
    fn run(&mut self, group: &[Span], output: &mut [Vec<f32>]) -> Result<()> {
        let batches: Vec<Vec<f32>> = group
            .iter()
            .map(|s| {
                let mut batch = Vec::with_capacity((s.to - s.from) * self.history.len());
                for h in &self.history {
                    batch.extend_from_slice(&h[s.from - self.start..s.to - self.start]);
                }
                batch
            })
            .collect();
        let (model, channels) = (&self.model, self.history.len());
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
        for (span, out) in group.iter().zip(outputs) {
            self.assemble(span, &out?, output);
        }
        // Keep only what the next window's context needs.
        let drop = self.next.saturating_sub(self.window.context) - self.start;
        for h in &mut self.history {
            h.drain(..drop);
        }
        self.start += drop;
        Ok(())
    }

    /// Appends one window's chunk (`y`, the model's output for its whole span), its start
    /// crossfaded from the previous window's overlap, and keeps its own overlap.
    fn assemble(&mut self, span: &Span, y: &[f32], output: &mut [Vec<f32>]) {
        debug_assert_eq!(span.next, self.next);
        let len = span.to - span.from;
        let keep = span.next - span.from;
        let fade = self.fade;
        for (c, (o, overlap)) in output.iter_mut().zip(&mut self.overlap).enumerate() {
            let y = &y[c * len..(c + 1) * len];
            let kept = &y[keep..keep + span.chunk];
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
            if !span.last {
                let end = keep + span.chunk;
                overlap.extend_from_slice(&y[end..end + fade]);
            }
        }
        self.next += span.chunk;
    }
}
