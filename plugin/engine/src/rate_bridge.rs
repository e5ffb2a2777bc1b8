//! What lies between a host-rate signal and the model, for files and streams alike: the
//! input converted to the model's rate, the model's output converted back, and the band the
//! model cannot see (above 8 kHz) restored from the input.
//!
//! ```text
//!  input --+--> down --> [to the model] ... [from the model] --> up (wet) --+
//!          |              '--> up (low) ---------------------------------+  |
//!          '--> dry ----------------------------------------------------+ |  |
//!                                                  mixed = wet + upper band(dry - low)
//! ```
//!
//! The three host-rate paths (the model's output, the model's input as its band limits it,
//! and the input itself) are kept aligned sample for sample; a sample can be mixed once all
//! three have reached it.

use crate::error::Result;
use crate::resample::StreamResampler;
use crate::upper_band::UpperBand;

/// The converters, the three aligned host-rate paths and the band above, per channel.
pub struct RateBridge {
    down: StreamResampler,
    up_wet: StreamResampler,
    up_low: StreamResampler,
    dry: Vec<Vec<f32>>,
    wet: Vec<Vec<f32>>,
    low: Vec<Vec<f32>>,
    upper: UpperBand,
    /// What the last call made at the model's rate.
    to_model: Vec<Vec<f32>>,
}

impl RateBridge {
    /// For `channels` channels between `host_rate` and `model_rate`; `live` takes the short
    /// low-latency converters instead of the file path's FFT ones.
    pub fn new(host_rate: f64, model_rate: f64, channels: usize, live: bool) -> Result<Self> {
        let converter = |from, to| {
            if live {
                StreamResampler::low_latency(from, to, channels)
            } else {
                StreamResampler::new(from, to, channels)
            }
        };
        Ok(Self {
            down: converter(host_rate, model_rate)?,
            up_wet: converter(model_rate, host_rate)?,
            up_low: converter(model_rate, host_rate)?,
            dry: vec![Vec::new(); channels],
            wet: vec![Vec::new(); channels],
            low: vec![Vec::new(); channels],
            upper: UpperBand::new(host_rate, channels),
            to_model: vec![Vec::new(); channels],
        })
    }

    /// Gives every path room for `frames` frames, so a bridge on the audio thread never grows
    /// one there.
    pub fn reserve(&mut self, frames: usize) {
        for v in self.paths() {
            v.reserve(frames);
        }
        for v in &mut self.to_model {
            v.reserve(frames);
        }
    }

    /// Takes host-rate input (one slice per channel, equal lengths); returns what it makes
    /// at the model's rate, for the model.
    pub fn input<S: AsRef<[f32]>>(&mut self, input: &[S]) -> Result<&[Vec<f32>]> {
        for (d, i) in self.dry.iter_mut().zip(input) {
            d.extend_from_slice(i.as_ref());
        }
        self.clear_to_model();
        self.down.process(input, &mut self.to_model)?;
        self.up_low.process(&self.to_model, &mut self.low)?;
        Ok(&self.to_model)
    }

    /// The input has ended: flushes the converters; returns the last of the model-rate input.
    pub fn end_input(&mut self) -> Result<&[Vec<f32>]> {
        self.clear_to_model();
        self.down.finish(&mut self.to_model)?;
        self.up_low.process(&self.to_model, &mut self.low)?;
        self.up_low.finish(&mut self.low)?;
        Ok(&self.to_model)
    }

    fn clear_to_model(&mut self) {
        for v in &mut self.to_model {
            v.clear();
        }
    }

    /// Takes the model's output (one slice per channel, equal lengths).
    pub fn output<S: AsRef<[f32]>>(&mut self, from_model: &[S]) -> Result<()> {
        self.up_wet.process(from_model, &mut self.wet)
    }

    /// The model's output has ended: flushes its converter.
    pub fn end_output(&mut self) -> Result<()> {
        self.up_wet.finish(&mut self.wet)
    }

    /// Frames all three paths have reached, not counting the model output's last `hold`.
    pub fn ready(&self, hold: usize) -> usize {
        self.wet[0]
            .len()
            .saturating_sub(hold)
            .min(self.low[0].len())
            .min(self.dry[0].len())
    }

    /// Pads every path with silence to at least `frames` frames (the end of a file, whose
    /// conversions may have rounded a frame away).
    pub fn pad(&mut self, frames: usize) {
        for v in self.paths() {
            v.resize(v.len().max(frames), 0.0);
        }
    }

    /// Frame `i` of channel `k`, mixed: the model's output and the band above it.
    pub fn mixed(&mut self, k: usize, i: usize) -> f32 {
        self.upper
            .mix(k, self.wet[k][i], self.low[k][i], self.dry[k][i])
    }

    /// Frame `i` of channel `k` of the input, and of the model's output alone.
    pub fn dry(&self, k: usize, i: usize) -> f32 {
        self.dry[k][i]
    }

    pub fn wet(&self, k: usize, i: usize) -> f32 {
        self.wet[k][i]
    }

    /// Forgets the first `frames` frames of every path (handed on).
    pub fn consume(&mut self, frames: usize) {
        for v in self.paths() {
            v.drain(..frames);
        }
    }

    /// Back to the state it was made in, keeping every buffer's capacity.
    pub fn reset(&mut self) {
        for r in [&mut self.down, &mut self.up_wet, &mut self.up_low] {
            r.reset();
        }
        for v in self.paths() {
            v.clear();
        }
        self.upper.reset();
    }

    fn paths(&mut self) -> impl Iterator<Item = &mut Vec<f32>> {
        self.dry
            .iter_mut()
            .chain(&mut self.wet)
            .chain(&mut self.low)
    }
}
