//! Switching modes in mid-signal, where the host lets the plugin do it at once (the
//! standalone, and VST3 hosts that only read the latency again).
//!
//! The modes differ in latency, so the output must jump in time: back when the new mode is
//! faster, forward (repeating up to its extra latency) when it is slower. What must not
//! happen is a hard cut, or the new mode starting from silence until its delay line fills.
//! So the input is kept for the longest latency any mode has; the new mode's dry path starts
//! from it, and the output crossfades from the mode being left (still run for the fade) to
//! the new one. The new mode's processed signal fades in as its worker catches up.

use wavecrn_engine::stream::AudioSide;

/// How long the crossfade from the mode being left takes.
pub const SWITCH_FADE_SECONDS: f64 = 0.01;

/// The recent input, and the crossfade between two modes' streams.
pub struct ModeSwitch {
    /// Per channel, the last `history_len` input frames, a ring written at `history_at`.
    history: Vec<Vec<f32>>,
    history_at: usize,
    /// The mode being left, while the crossfade runs.
    leaving: Option<usize>,
    /// Frames of the crossfade done, and its length.
    done: usize,
    fade: usize,
    /// The crossfaded block, per channel: dry and processed.
    dry: Vec<Vec<f32>>,
    wet: Vec<Vec<f32>>,
}

impl ModeSwitch {
    /// For `channels` channels of blocks up to `max_block` frames at `rate` Hz, keeping
    /// `history_len` frames of input (the longest latency a mode has; 0 where modes never
    /// switch in mid-signal). Allocates; the rest never does.
    pub fn new(channels: usize, max_block: usize, rate: f64, history_len: usize) -> Self {
        Self {
            history: vec![vec![0.0; history_len]; channels],
            history_at: 0,
            leaving: None,
            done: 0,
            fade: ((SWITCH_FADE_SECONDS * rate).round() as usize).max(1),
            dry: vec![vec![0.0; max_block]; channels],
            wet: vec![vec![0.0; max_block]; channels],
        }
    }

    /// Keeps a block of input (one slice per channel).
    pub fn record(&mut self, block: &[&[f32]]) {
        let Some(len) = self.history.first().map(Vec::len).filter(|&l| l > 0) else {
            return;
        };
        let n = block.first().map_or(0, |b| b.len());
        for (ring, b) in self.history.iter_mut().zip(block) {
            // Only the last `len` frames of a long block can matter.
            let skip = n.saturating_sub(len);
            let mut at = (self.history_at + skip) % len;
            for &x in &b[skip..] {
                ring[at] = x;
                at = if at + 1 == len { 0 } else { at + 1 };
            }
        }
        self.history_at = (self.history_at + n) % len;
    }

    /// Starts `arriving` over from the recent input and begins the crossfade from the mode
    /// `leaving` (its stream goes on running until [`blend`](Self::blend) says it is done).
    pub fn switch(&mut self, arriving: &mut AudioSide, leaving: usize) {
        let at = self.history_at;
        // The plugin has at most two channels: a fixed array, so nothing is allocated.
        let mut pieces: [[&[f32]; 2]; 2] = [[&[], &[]]; 2];
        for (p, ring) in pieces.iter_mut().zip(&self.history) {
            *p = [&ring[at..], &ring[..at]];
        }
        arriving.reset_after(&pieces[..self.history.len().min(2)]);
        self.leaving = Some(leaving);
        self.done = 0;
    }

    /// The mode being left, while the crossfade runs.
    pub fn leaving(&self) -> Option<usize> {
        self.leaving
    }

    /// Crossfades the last block of `leaving` into that of `arriving` (both fed the same
    /// block); [`dry`](Self::dry) and [`wet`](Self::wet) then hold it. Returns whether the
    /// crossfade has ended (the mode left can then be reset).
    pub fn blend(&mut self, leaving: &AudioSide, arriving: &AudioSide, channels: usize) -> bool {
        let n = arriving.dry(0).len();
        for c in 0..channels {
            let fade = |from: &[f32], to: &[f32], out: &mut [f32]| {
                for (i, ((o, a), b)) in out.iter_mut().zip(from).zip(to).enumerate() {
                    let done = self.done + i + 1;
                    // Past the fade, the new mode exactly (a + (b - a) need not be b).
                    *o = if done >= self.fade {
                        *b
                    } else {
                        a + done as f32 / self.fade as f32 * (b - a)
                    };
                }
            };
            fade(leaving.dry(c), arriving.dry(c), &mut self.dry[c][..n]);
            fade(leaving.wet(c), arriving.wet(c), &mut self.wet[c][..n]);
        }
        self.done += n;
        if self.done >= self.fade {
            self.leaving = None;
            true
        } else {
            false
        }
    }

    /// Channel `c` of the crossfaded block's dry signal, `len` frames.
    pub fn dry(&self, c: usize, len: usize) -> &[f32] {
        &self.dry[c][..len]
    }

    /// Channel `c` of the crossfaded block's processed signal, `len` frames.
    pub fn wet(&self, c: usize, len: usize) -> &[f32] {
        &self.wet[c][..len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_holds_the_last_frames_in_order() {
        let mut s = ModeSwitch::new(1, 8, 1000.0, 5);
        let x: Vec<f32> = (1..=13).map(|v| v as f32).collect();
        for b in [&x[..3], &x[3..4], &x[4..12], &x[12..]] {
            s.record(&[b]);
        }
        let at = s.history_at;
        let ring = &s.history[0];
        let ordered: Vec<f32> = ring[at..].iter().chain(&ring[..at]).copied().collect();
        assert_eq!(ordered, vec![9.0, 10.0, 11.0, 12.0, 13.0]);
    }
}
