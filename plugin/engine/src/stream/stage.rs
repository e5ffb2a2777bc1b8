//! The model as a stream stage at its own rate: audio in, the same audio denoised out, sample
//! for sample (no signal delay), released as soon as the model can finish it.

use crate::error::Result;
use crate::windowed::WindowStage;

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

impl ModelStage for WindowStage {
    fn lag(&self) -> usize {
        WindowStage::lag(self)
    }

    fn reset(&mut self) {
        WindowStage::reset(self)
    }

    fn process(&mut self, input: &[Vec<f32>], output: &mut [Vec<f32>]) -> Result<()> {
        self.push(input, output)
    }
}
