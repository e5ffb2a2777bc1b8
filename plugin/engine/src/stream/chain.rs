//! The chain a stream runs at the host's rate: the bridge to the model's rate and back
//! ([`RateBridge`], the file path's too) around a model stage, and how late its output comes.
//! A worker thread runs it for the windowed presets; the audio thread runs it itself for Low
//! latency.

use super::stage::ModelStage;
use crate::error::Result;
use crate::rate_bridge::RateBridge;
use crate::resample::{gcd, StreamResampler, LIVE_CHUNK};

/// What a chain is made for: the rates, the channels, and which converters.
#[derive(Clone, Copy, Debug)]
pub(super) struct ChainSpec {
    pub host_rate: f64,
    pub model_rate: f64,
    pub channels: usize,
    /// Low-latency converters (short sinc) rather than the file path's FFT converters: the
    /// chain runs on the audio thread, hop by hop.
    pub live: bool,
}

/// The model stage inside the bridge to and from the host's rate.
pub(super) struct Chain {
    bridge: RateBridge,
    stage: Box<dyn ModelStage>,
    denoised: Vec<Vec<f32>>,
}

impl Chain {
    pub(super) fn new(stage: Box<dyn ModelStage>, spec: ChainSpec) -> Result<Self> {
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

    /// Runs host-rate input (one vector per channel) through, and hands every frame that is
    /// now final to `push`, mixed, channel by channel within a frame.
    pub(super) fn run_into(
        &mut self,
        planar: &[Vec<f32>],
        mut push: impl FnMut(f32),
    ) -> Result<()> {
        let ready = self.run(planar)?;
        for i in 0..ready {
            for k in 0..planar.len() {
                push(self.bridge.mixed(k, i));
            }
        }
        self.bridge.consume(ready);
        Ok(())
    }

    /// Gives every buffer room for `frames` frames, so a chain on the audio thread never
    /// grows one there.
    pub(super) fn reserve(&mut self, frames: usize) {
        self.bridge.reserve(frames);
        for v in &mut self.denoised {
            v.reserve(frames);
        }
    }

    /// Back to the state it was made in, keeping every buffer's capacity.
    pub(super) fn reset(&mut self) {
        self.bridge.reset();
        self.stage.reset();
    }
}

/// How late a converter's output comes, in its input samples: the most any output sample has
/// to wait after the input sample at its own time has gone in, fed one sample at a time.
pub(super) fn resampler_lateness(from: f64, to: f64) -> Result<usize> {
    let r = StreamResampler::new(from, to, 1)?;
    Ok(converter_lateness(r, from, to)?.ceil().max(0.0) as usize)
}

fn converter_lateness(mut r: StreamResampler, from: f64, to: f64) -> Result<f64> {
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
    Ok(worst)
}

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

/// How late a whole chain's output comes, in host frames: the most any output frame has to
/// wait after the input frame at its own time has gone in, fed one frame at a time over two
/// whole periods of its pattern ([`chain_period`]). A frame's release depends only on how many
/// frames have gone in, never on how they were split into blocks, so this is the lateness for
/// every block size. It is measured rather than added up from the parts: each converter's and
/// the model's worst waits do not fall on the same frames, and their sum overstates it (510
/// against 460 frames at 48 kHz, 10.6 against 9.6 ms).
pub(super) fn chain_lateness(stage: Box<dyn ModelStage>, spec: ChainSpec) -> Result<usize> {
    // Measuring runs the model over seconds of silence, most of what making a stream costs,
    // and hosts activate often. What it finds depends only on the rates, the converters and
    // the stage's lag, so it is remembered for those.
    type Key = (u64, u64, bool, usize);
    static MEASURED: std::sync::Mutex<Vec<(Key, usize)>> = std::sync::Mutex::new(Vec::new());
    let key = (
        spec.host_rate.to_bits(),
        spec.model_rate.to_bits(),
        spec.live,
        stage.lag(),
    );
    let known = MEASURED
        .lock()
        .ok()
        .and_then(|m| m.iter().find(|(k, _)| *k == key).map(|(_, v)| *v));
    if let Some(lateness) = known {
        return Ok(lateness);
    }
    let lateness = measure_chain_lateness(stage, spec)?;
    if let Ok(mut m) = MEASURED.lock() {
        m.push((key, lateness));
    }
    Ok(lateness)
}

fn measure_chain_lateness(stage: Box<dyn ModelStage>, spec: ChainSpec) -> Result<usize> {
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

    /// The inline chain's measured lateness is at most what its parts' own add up to (each
    /// converter's, measured alone, and the model's lag), and less: their worst waits do not
    /// fall on the same frames. Prints both (`cargo test -p wavecrn-engine --release --lib
    /// inline_lateness -- --nocapture`).
    #[test]
    fn inline_lateness_is_within_the_sum_of_its_parts() {
        for rate in [8_000.0, 11_025.0, 22_050.0, 44_100.0, 48_000.0, 96_000.0] {
            let stage = || {
                Box::new(
                    crate::stream::CausalStage::from_onnx(crate::shipped::DENOISE_CAUSAL, 1)
                        .unwrap(),
                )
            };
            let lag = stage().lag() as f64;
            let spec = ChainSpec {
                host_rate: rate,
                model_rate: 16_000.0,
                channels: 1,
                live: true,
            };
            let measured = chain_lateness(stage(), spec).unwrap();
            let live = |from, to| StreamResampler::low_latency(from, to, 1).unwrap();
            let down = converter_lateness(live(rate, 16_000.0), rate, 16_000.0).unwrap();
            let up = converter_lateness(live(16_000.0, rate), 16_000.0, rate).unwrap();
            let sum = down + (lag + up) * rate / 16_000.0;
            eprintln!(
                "{rate} Hz: measured {measured} frames ({:.1} ms); parts: down {down:.1}, model \
                 {lag} at 16 kHz, up {up:.1} at 16 kHz, sum {sum:.1} frames ({:.1} ms)",
                measured as f64 / rate * 1000.0,
                sum / rate * 1000.0
            );
            assert!(
                measured as f64 <= sum.ceil(),
                "{rate} Hz: {measured} > {sum}"
            );
            assert!(
                measured as f64 >= lag * rate / 16_000.0,
                "{rate} Hz: under the model's lag"
            );
        }
    }

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
