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
use crate::resample::StreamResampler;

/// Builds a fresh model stage (at the start, and after every reset).
pub type StageFactory = Box<dyn Fn() -> Result<Box<dyn ModelStage>> + Send>;

/// What a chain is made for: the rates, the channels, and which converters.
#[derive(Clone, Copy, Debug)]
pub(super) struct ChainSpec {
    pub host_rate: f64,
    pub model_rate: f64,
    pub channels: usize,
    /// Low-latency converters (short sinc) rather than the file path's FFT converters.
    pub live: bool,
}

/// Everything between the two rings that has state.
struct Chain {
    down: StreamResampler,
    stage: Box<dyn ModelStage>,
    up_wet: StreamResampler,
    up_low: StreamResampler,
    /// Host-rate input, processed low band and unprocessed low band, waiting for each other.
    dry: Vec<Vec<f32>>,
    wet: Vec<Vec<f32>>,
    low: Vec<Vec<f32>>,
    /// Smoothed power of the processed and unprocessed low bands, per channel.
    power: Vec<(f32, f32)>,
}

/// The worker's end of one stream.
pub struct WorkerSide {
    input: HeapCons<f32>,
    output: HeapProd<f32>,
    shared: Arc<Shared>,
    make_stage: StageFactory,
    spec: ChainSpec,
    channels: usize,
    chain: Chain,
    acked: u64,
    frames: Vec<f32>,
    planar: Vec<Vec<f32>>,
    at_model_rate: Vec<Vec<f32>>,
    denoised: Vec<Vec<f32>>,
    mixed: Vec<f32>,
    /// Per-sample smoothing of the band powers (about 50 ms).
    smoothing: f32,
}

impl WorkerSide {
    pub(super) fn new(
        input: HeapCons<f32>,
        output: HeapProd<f32>,
        shared: Arc<Shared>,
        make_stage: StageFactory,
        spec: ChainSpec,
    ) -> Result<Self> {
        let chain = Chain::new(&make_stage, spec)?;
        let (channels, host_rate) = (spec.channels, spec.host_rate);
        Ok(Self {
            input,
            output,
            shared,
            make_stage,
            spec,
            channels,
            chain,
            acked: 0,
            frames: Vec::new(),
            planar: vec![Vec::new(); channels],
            at_model_rate: vec![Vec::new(); channels],
            denoised: vec![Vec::new(); channels],
            mixed: Vec::new(),
            smoothing: (-1.0 / (0.05 * host_rate)).exp() as f32,
        })
    }

    /// Processes whatever input is waiting. Returns whether there was any.
    pub fn poll(&mut self) -> Result<bool> {
        let epoch = self.shared.epoch.load(Ordering::Acquire);
        if epoch != self.acked {
            // The audio thread has stopped feeding us: drop its old input, start afresh.
            self.input.clear();
            self.chain = Chain::new(&self.make_stage, self.spec)?;
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
        let started = std::time::Instant::now();
        self.run_chain()?;
        self.shared
            .busy_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        // Hand back every frame that all three paths have reached.
        let c = &mut self.chain;
        let ready = c.wet[0].len().min(c.low[0].len()).min(c.dry[0].len());
        if ready > 0 {
            self.mixed.clear();
            for i in 0..ready {
                for k in 0..ch {
                    self.mixed.push(
                        c.wet[k][i]
                            + c.high_band_gain(k, i, self.smoothing) * (c.dry[k][i] - c.low[k][i]),
                    );
                }
            }
            for v in [&mut c.wet, &mut c.low, &mut c.dry] {
                for x in v.iter_mut() {
                    x.drain(..ready);
                }
            }
            // The audio thread sizes this ring for the worst case; if it is full anyway the
            // audio thread has stopped reading and will reset the stream.
            self.output.push_slice(&self.mixed);
        }
        Ok(true)
    }

    fn run_chain(&mut self) -> Result<()> {
        let c = &mut self.chain;
        for (d, p) in c.dry.iter_mut().zip(&self.planar) {
            d.extend_from_slice(p);
        }
        let input: Vec<&[f32]> = self.planar.iter().map(Vec::as_slice).collect();
        for v in &mut self.at_model_rate {
            v.clear();
        }
        c.down.process(&input, &mut self.at_model_rate)?;
        for v in &mut self.denoised {
            v.clear();
        }
        c.stage.process(&self.at_model_rate, &mut self.denoised)?;
        let low_in: Vec<&[f32]> = self.at_model_rate.iter().map(Vec::as_slice).collect();
        c.up_low.process(&low_in, &mut c.low)?;
        let wet_in: Vec<&[f32]> = self.denoised.iter().map(Vec::as_slice).collect();
        c.up_wet.process(&wet_in, &mut c.wet)?;
        Ok(())
    }
}

impl Chain {
    fn new(make_stage: &StageFactory, spec: ChainSpec) -> Result<Self> {
        let ChainSpec {
            host_rate,
            model_rate,
            channels,
            live,
        } = spec;
        let converter = |from, to| {
            if live {
                StreamResampler::low_latency(from, to, channels)
            } else {
                StreamResampler::new(from, to, channels)
            }
        };
        Ok(Self {
            down: converter(host_rate, model_rate)?,
            stage: make_stage()?,
            up_wet: converter(model_rate, host_rate)?,
            up_low: converter(model_rate, host_rate)?,
            dry: vec![Vec::new(); channels],
            wet: vec![Vec::new(); channels],
            low: vec![Vec::new(); channels],
            power: vec![(0.0, 0.0); channels],
        })
    }

    /// How much of the band above the model's reach to let through at frame `i` of channel
    /// `k`: as much as the model let through of the band it does see, judged by power.
    fn high_band_gain(&mut self, k: usize, i: usize, a: f32) -> f32 {
        let (w, l) = (self.wet[k][i], self.low[k][i]);
        let p = &mut self.power[k];
        p.0 = a * p.0 + (1.0 - a) * w * w;
        p.1 = a * p.1 + (1.0 - a) * l * l;
        if p.1 <= 1e-12 {
            return 0.0;
        }
        (p.0 / p.1).sqrt().min(1.0)
    }
}

/// How late a converter's output comes, in its input samples: the most any output sample has
/// to wait after the input sample at its own time has gone in, fed one sample at a time.
pub(super) fn resampler_lateness(from: f64, to: f64, live: bool) -> Result<usize> {
    let mut r = if live {
        StreamResampler::low_latency(from, to, 1)?
    } else {
        StreamResampler::new(from, to, 1)?
    };
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
