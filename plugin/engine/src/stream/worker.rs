//! The worker's half of a stream: host-rate input from the audio thread, resampled to the
//! model's rate, denoised, resampled back, the band above the model's reach restored, and
//! handed back. Everything here may allocate and take its time; none of it runs on the audio
//! thread.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use ringbuf::traits::{Consumer, Observer, Producer};
use ringbuf::{HeapCons, HeapProd};

use super::stage::ModelStage;
use super::Shared;
use crate::error::Result;
use crate::rate_bridge::RateBridge;
use crate::resample::{gcd, StreamResampler, LIVE_CHUNK};

/// What a chain is made for: the rates, the channels, and which converters.
#[derive(Clone, Copy, Debug)]
pub(super) struct ChainSpec {
    pub host_rate: f64,
    pub model_rate: f64,
    pub channels: usize,
    /// Low-latency converters (short sinc) rather than the file path's FFT converters.
    pub live: bool,
    /// Run by the audio thread itself, block by block, rather than by a worker thread.
    pub inline: bool,
}

/// Everything between the two rings that has state: the model stage inside the bridge to
/// and from the host's rate (the file path's too).
struct Chain {
    bridge: RateBridge,
    stage: Box<dyn ModelStage>,
    denoised: Vec<Vec<f32>>,
}

/// The worker's end of one stream.
pub struct WorkerSide {
    input: HeapCons<f32>,
    output: HeapProd<f32>,
    shared: Arc<Shared>,
    spec: ChainSpec,
    channels: usize,
    chain: Chain,
    acked: u64,
    frames: Vec<f32>,
    planar: Vec<Vec<f32>>,
    mixed: Vec<f32>,
}

impl WorkerSide {
    pub(super) fn new(
        input: HeapCons<f32>,
        output: HeapProd<f32>,
        shared: Arc<Shared>,
        stage: Box<dyn ModelStage>,
        spec: ChainSpec,
    ) -> Result<Self> {
        let chain = Chain::new(stage, spec)?;
        let channels = spec.channels;
        Ok(Self {
            input,
            output,
            shared,
            spec,
            channels,
            chain,
            acked: 0,
            frames: Vec::new(),
            planar: vec![Vec::new(); channels],
            mixed: Vec::new(),
        })
    }

    /// Gives every buffer room for `frames` frames, so an inline chain never grows one on the
    /// audio thread.
    pub(super) fn reserve(&mut self, frames: usize) {
        let ch = self.channels;
        self.frames.reserve(frames * ch);
        self.mixed.reserve(frames * ch);
        self.chain.bridge.reserve(frames);
        for v in self.planar.iter_mut().chain(&mut self.chain.denoised) {
            v.reserve(frames);
        }
    }

    /// Processes whatever input is waiting. Returns whether there was any.
    pub fn poll(&mut self) -> Result<bool> {
        let epoch = self.shared.epoch.load(Ordering::Acquire);
        if epoch != self.acked {
            // The audio thread has stopped feeding us: drop its old input, start afresh (in
            // place: an inline worker does this on the audio thread).
            self.input.clear();
            self.chain.reset();
            self.acked = epoch;
            self.shared.acked.store(epoch, Ordering::Release);
            return Ok(true);
        }
        let ch = self.channels;
        let frames = self.input.occupied_len() / ch;
        if frames == 0 {
            return Ok(false);
        }
        self.frames.resize(frames * ch, 0.0);
        let got = self.input.pop_slice(&mut self.frames);
        debug_assert_eq!(got, frames * ch);
        for (c, p) in self.planar.iter_mut().enumerate() {
            p.clear();
            p.extend(self.frames.iter().skip(c).step_by(ch));
        }
        // Reading the clock is a system call on some machines: not on the audio thread.
        let started = (!self.spec.inline).then(std::time::Instant::now);
        let ready = self.chain.run(&self.planar)?;
        if let Some(started) = started {
            self.shared
                .busy_nanos
                .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
        let c = &mut self.chain;
        if ready > 0 {
            self.mixed.clear();
            for i in 0..ready {
                for k in 0..ch {
                    self.mixed.push(c.bridge.mixed(k, i));
                }
            }
            c.bridge.consume(ready);
            // The audio thread sizes this ring for the worst case; if it is full anyway the
            // audio thread has stopped reading and will reset the stream.
            self.output.push_slice(&self.mixed);
        }
        Ok(true)
    }
}

impl Chain {
    fn new(stage: Box<dyn ModelStage>, spec: ChainSpec) -> Result<Self> {
        let ChainSpec {
            host_rate,
            model_rate,
            channels,
            live,
            ..
        } = spec;
        Ok(Self {
            bridge: RateBridge::new(host_rate, model_rate, channels, live)?,
            stage,
            denoised: vec![Vec::new(); channels],
        })
    }

    /// Takes host-rate input (one vector per channel) through every path. Returns how many
    /// frames all three paths (processed low band, unprocessed low band, input) have reached.
    fn run(&mut self, planar: &[Vec<f32>]) -> Result<usize> {
        for v in &mut self.denoised {
            v.clear();
        }
        let to_model = self.bridge.input(planar)?;
        self.stage.process(to_model, &mut self.denoised)?;
        self.bridge.output(&self.denoised)?;
        Ok(self.bridge.ready(0))
    }

    /// Back to the state it was made in, keeping every buffer's capacity.
    fn reset(&mut self) {
        self.bridge.reset();
        self.stage.reset();
    }
}

/// How late a converter's output comes, in its input samples: the most any output sample has
/// to wait after the input sample at its own time has gone in, fed one sample at a time.
pub(super) fn resampler_lateness(from: f64, to: f64) -> Result<usize> {
    let mut r = StreamResampler::new(from, to, 1)?;
    let ratio = to / from;
    let mut out = vec![Vec::new()];
    let mut worst = 0.0f64;
    let mut produced = 0usize;
    for n in 1..=(from as usize / 10).max(4096) {
        r.process(&[&[0.0]], &mut out)?;
        let now = out[0].len();
        // Output samples produced..now came out when input sample n-1 went in; their own
        // times are m / ratio.
        for m in produced..now {
            worst = worst.max((n - 1) as f64 - m as f64 / ratio);
        }
        produced = now;
    }
    Ok(worst.ceil().max(0.0) as usize)
}

/// How late a whole chain's output comes, in host frames: the most any output frame has to
/// wait after the input frame at its own time has gone in, fed one frame at a time for half
/// a second (every converter's and the stage's cycle repeats well within that). A frame's
/// release depends only on how many frames have gone in, never on how they were split into
/// blocks, so this is the lateness for every block size.
/// Host frames after which the inline chain's timing repeats: its converters take pieces of
/// [`LIVE_CHUNK`] frames on both sides and the model releases whole steps of `model_step`
/// samples, so when output comes out follows a pattern that repeats once all of them line up
/// again with the ratio of the rates (0.96 s at 22.05 kHz, 1.92 s at 11.025 kHz, 6 ms at
/// 48 kHz). `None` at a fractional rate, where it never repeats exactly.
fn chain_period(host_rate: f64, model_rate: f64, model_step: usize) -> Option<usize> {
    if host_rate.fract() != 0.0 || model_rate.fract() != 0.0 || model_step == 0 {
        return None;
    }
    let lcm = |a: usize, b: usize| a / gcd(a, b) * b;
    let (host, model) = (host_rate as usize, model_rate as usize);
    let common = gcd(host, model);
    // `per_host` host frames are `per_model` model samples.
    let (per_host, per_model) = (host / common, model / common);
    let model_unit = lcm(model_step, LIVE_CHUNK);
    let repeats = lcm(
        LIVE_CHUNK / gcd(per_host, LIVE_CHUNK),
        model_unit / gcd(per_model, model_unit),
    );
    Some(per_host * repeats)
}

pub(super) fn chain_lateness(stage: Box<dyn ModelStage>, spec: ChainSpec) -> Result<usize> {
    // A quarter second for the chain to settle, then two whole periods of its pattern (2 s
    // where it has none).
    let period = chain_period(spec.host_rate, spec.model_rate, stage.lag());
    let span = match period {
        Some(p) => (spec.host_rate / 4.0) as usize + 2 * p,
        None => (spec.host_rate * 2.0) as usize,
    }
    .max((spec.host_rate / 2.0) as usize);
    let mut chain = Chain::new(
        stage,
        ChainSpec {
            channels: 1,
            ..spec
        },
    )?;
    let one = [vec![0.0f32]];
    let (mut released, mut worst) = (0usize, 0usize);
    for n in 0..span {
        let ready = chain.run(&one)?;
        if ready > 0 {
            // Frames released..released + ready came out as input frame n went in.
            worst = worst.max(n.saturating_sub(released));
            released += ready;
            chain.bridge.consume(ready);
        }
    }
    Ok(worst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_period_is_where_pieces_and_steps_line_up_again() {
        // 22.05 kHz: 441 host frames are 320 model samples; 21,168 host frames are 15,360
        // model samples (160 steps of 96) and 1,323 pieces of 16: 0.96 s.
        assert_eq!(chain_period(22_050.0, 16_000.0, 96), Some(21_168));
        assert_eq!(chain_period(11_025.0, 16_000.0, 96), Some(21_168));
        assert_eq!(chain_period(48_000.0, 16_000.0, 96), Some(288));
        assert_eq!(chain_period(12_345.678, 16_000.0, 96), None);
        for rate in [
            8_000.0, 11_025.0, 22_050.0, 44_100.0, 48_000.0, 96_000.0, 768_000.0,
        ] {
            let period = chain_period(rate, 16_000.0, 96).unwrap();
            // A whole number of pieces at the host rate, and of steps and pieces at the model's.
            let model = period as f64 * 16_000.0 / rate;
            assert_eq!(period % LIVE_CHUNK, 0, "{rate}");
            assert_eq!(model.fract(), 0.0, "{rate}");
            assert_eq!(model as usize % 96, 0, "{rate}");
            assert_eq!(model as usize % LIVE_CHUNK, 0, "{rate}");
        }
    }
}
