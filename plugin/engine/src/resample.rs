//! Streaming sample-rate conversion for files: any rate in, any rate out, in pieces of any
//! size, with the converter's delay removed so output sample `n` lines up with input time
//! `n / ratio`, and exactly `round(len * ratio)` samples in total.

use rubato::audioadapter_buffers::direct::SequentialSliceOfVecs;
use rubato::{
    Async, Fft, FixedAsync, FixedSync, Indexing, Resampler, SincInterpolationParameters,
    SincInterpolationType, WindowFunction,
};

use crate::error::{Error, Result};

/// Input frames per converter call (about; the FFT converter rounds it to suit the ratio).
const CHUNK: usize = 1024;
/// Fewest frames of the FFT converter's block at the lower of its two rates (see `build`).
const FLAT_BLOCK: usize = 512;
/// Input frames per converter call for live streams.
pub(crate) const LIVE_CHUNK: usize = 16;

/// Two rates, as the bits of their `f64` values.
type RatePair = (u64, u64);
/// A live converter's chosen sinc length and its measured delay, in output samples.
type LiveFilter = (usize, f64);

/// A planar multichannel sample-rate converter fed in pieces.
pub struct StreamResampler {
    /// `None` when the rates are equal: samples pass through untouched.
    inner: Option<Box<dyn Resampler<f32>>>,
    channels: usize,
    ratio: f64,
    /// Input frames per converter call.
    chunk: usize,
    pending: Vec<Vec<f32>>,
    scratch: Vec<Vec<f32>>,
    /// Leading output frames still to drop (the converter's delay).
    skip: usize,
    /// `skip` as it was made.
    initial_skip: usize,
    frames_in: u64,
    frames_out: u64,
}

impl StreamResampler {
    /// A converter from `from` Hz to `to` Hz for `channels` channels.
    ///
    /// Integer rates (every file) use rubato's FFT converter, whose delay is a whole number of
    /// output samples, so the output is aligned exactly. Fractional rates use a 256-tap
    /// windowed-sinc converter, aligned to within one output sample.
    pub fn new(from: f64, to: f64, channels: usize) -> Result<Self> {
        Self::build(from, to, channels, false, None)
    }

    /// A converter for live streams, where what matters is how long a sample waits before its
    /// converted self comes out: a short windowed-sinc converter fed in pieces of 16 frames for
    /// every pair of rates, its sinc length chosen so its delay is as near a whole number of
    /// output samples as it can be (exact for 16 kHz to and from 48 kHz).
    pub fn low_latency(from: f64, to: f64, channels: usize) -> Result<Self> {
        Self::build(from, to, channels, true, None)
    }

    /// A live converter with a sinc of `sinc_len` taps instead of the chosen one: what a
    /// flatter passband would cost in latency (test `what_flat_live_converters_would_cost`).
    #[cfg(test)]
    fn low_latency_with_sinc(from: f64, to: f64, sinc_len: usize) -> Result<Self> {
        Self::build(from, to, 1, true, Some(sinc_len))
    }

    /// The delay the converter removes, in output samples.
    #[cfg(test)]
    fn delay(&self) -> usize {
        self.initial_skip
    }

    fn build(
        from: f64,
        to: f64,
        channels: usize,
        live: bool,
        forced_sinc: Option<usize>,
    ) -> Result<Self> {
        if !(from.is_finite() && to.is_finite() && from > 0.0 && to > 0.0) {
            return Err(Error::Input(format!(
                "cannot resample from {from} Hz to {to} Hz"
            )));
        }
        if channels == 0 {
            return Err(Error::Input("no channels to resample".into()));
        }
        let ratio = to / from;
        let cannot = |e: rubato::ResamplerConstructionError| {
            Error::Input(format!("cannot resample from {from} Hz to {to} Hz: {e}"))
        };
        let integer_rates = from.fract() == 0.0 && to.fract() == 0.0;
        let sinc = |sinc_len: usize, chunk: usize, channels: usize| {
            let window = WindowFunction::BlackmanHarris2;
            let params = SincInterpolationParameters {
                sinc_len,
                f_cutoff: Some(rubato::calculate_cutoff(sinc_len, window)),
                oversampling_factor: 256,
                interpolation: SincInterpolationType::Cubic,
                window,
            };
            Async::<f32>::new_sinc(ratio, 1.0, &params, chunk, channels, FixedAsync::Input)
                .map_err(cannot)
        };
        let mut live_delay = None;
        let inner: Option<Box<dyn Resampler<f32>>> = if from == to {
            None
        } else if live {
            // Of the sinc lengths that suit, the one whose measured delay is nearest a whole
            // number of output samples, so dropping whole samples aligns the output.
            // Downsampling, the filter's taps are input samples: above 48 kHz to 16 kHz its
            // length grows with the rate, so it spans the same time and cuts the band above
            // the model's as sharply as at 48 kHz (at the same latency in ms).
            // The choice is remembered per pair of rates: measuring nine filters is most of
            // what a plugin activation costs, and hosts (and clap-validator) activate often.
            static CHOSEN: std::sync::Mutex<Vec<(RatePair, LiveFilter)>> =
                std::sync::Mutex::new(Vec::new());
            let key = (from.to_bits(), to.to_bits());
            let known = CHOSEN
                .lock()
                .ok()
                .and_then(|c| c.iter().find(|(k, _)| *k == key).map(|(_, v)| *v));
            let (sinc_len, delay) = match (forced_sinc, known) {
                (Some(n), _) => (n, measure_delay(sinc(n, LIVE_CHUNK, 1)?, from, to)?),
                (None, Some(v)) => v,
                (None, None) => {
                    let scale = (from / to / 3.0).ceil().max(1.0) as usize;
                    let mut best: Option<(f64, usize, f64)> = None;
                    for sinc_len in (8..=16).map(|i| i * 8 * scale) {
                        let delay = measure_delay(sinc(sinc_len, LIVE_CHUNK, 1)?, from, to)?;
                        let off = (delay - delay.round()).abs();
                        if best.is_none_or(|(o, _, _)| off + 1e-6 < o) {
                            best = Some((off, sinc_len, delay));
                        }
                    }
                    let (_, sinc_len, delay) = best.expect("some sinc length was tried");
                    if let Ok(mut c) = CHOSEN.lock() {
                        c.push((key, (sinc_len, delay)));
                    }
                    (sinc_len, delay)
                }
            };
            live_delay = Some(delay.round().max(0.0) as usize);
            Some(Box::new(sinc(sinc_len, LIVE_CHUNK, channels)?))
        } else if integer_rates {
            // rubato sizes the anti-aliasing filter from the FFT block of the lower rate: one
            // block of at least FLAT_BLOCK frames there keeps the passband flat to 7 kHz at
            // 16 kHz (a block of 86, its default at 48 kHz, is -2 dB at 6.5 kHz). Both block
            // sizes even: the filter's centre (half the input block) and the delay rubato
            // reports (half the output block) are then the same instant, so dropping that many
            // output samples aligns the output exactly.
            let (from, to) = (from as usize, to as usize);
            let common = gcd(from, to);
            let blocks = FLAT_BLOCK
                .div_ceil(from.min(to) / common)
                .next_multiple_of(2);
            let r = Fft::<f32>::new_custom(
                from,
                to,
                blocks * from / common,
                1,
                channels,
                WindowFunction::BlackmanHarris2,
                FixedSync::Input,
            )
            .map_err(cannot)?;
            Some(Box::new(r))
        } else {
            Some(Box::new(sinc(256, CHUNK, channels)?))
        };
        let (skip, out_max) = inner.as_ref().map_or((0, 0), |r| {
            (
                live_delay.unwrap_or(r.output_delay()),
                r.output_frames_max(),
            )
        });
        let chunk = inner.as_ref().map_or(CHUNK, |r| r.input_frames_max());
        Ok(Self {
            inner,
            channels,
            ratio,
            chunk,
            pending: vec![Vec::with_capacity(chunk); channels],
            scratch: vec![vec![0.0; out_max]; channels],
            skip,
            initial_skip: skip,
            frames_in: 0,
            frames_out: 0,
        })
    }

    /// Output rate / input rate.
    pub fn ratio(&self) -> f64 {
        self.ratio
    }

    /// Converts `input` (one slice per channel, equal lengths) and appends what is ready to
    /// `output` (one vector per channel). Once `output` has room, a call allocates nothing
    /// (the low-latency converters run on the audio thread).
    pub fn process<S: AsRef<[f32]>>(&mut self, input: &[S], output: &mut [Vec<f32>]) -> Result<()> {
        let frames = self.check(input, output)?;
        self.frames_in += frames as u64;
        if self.inner.is_none() {
            for (o, i) in output.iter_mut().zip(input) {
                o.extend_from_slice(i.as_ref());
            }
            self.frames_out += frames as u64;
            return Ok(());
        }
        self.feed(input, frames, output)
    }

    /// Back to the state it was made in, without allocating.
    pub fn reset(&mut self) {
        if let Some(r) = &mut self.inner {
            r.reset();
        }
        for p in &mut self.pending {
            p.clear();
        }
        self.skip = self.initial_skip;
        self.frames_in = 0;
        self.frames_out = 0;
    }

    fn feed<S: AsRef<[f32]>>(
        &mut self,
        input: &[S],
        frames: usize,
        output: &mut [Vec<f32>],
    ) -> Result<()> {
        let mut at = 0;
        while at < frames {
            let take = (self.chunk - self.pending[0].len()).min(frames - at);
            for (p, i) in self.pending.iter_mut().zip(input) {
                p.extend_from_slice(&i.as_ref()[at..at + take]);
            }
            at += take;
            if self.pending[0].len() == self.chunk {
                self.convert(self.chunk, output)?;
            }
        }
        Ok(())
    }

    /// Converts what is left and appends it to `output`, so the total output is
    /// `round(frames in * ratio)` frames.
    pub fn finish(&mut self, output: &mut [Vec<f32>]) -> Result<()> {
        let total = (self.frames_in as f64 * self.ratio).round() as u64;
        if self.inner.is_some() {
            // Feed the rest, then silence, until the delayed output has caught up.
            while self.frames_out < total {
                let partial = self.pending[0].len();
                for p in &mut self.pending {
                    p.resize(self.chunk, 0.0);
                }
                self.convert(partial, output)?;
            }
        }
        let excess = (self.frames_out - total) as usize;
        for o in output.iter_mut() {
            o.truncate(o.len() - excess);
        }
        self.frames_out = total;
        Ok(())
    }

    fn check<S: AsRef<[f32]>>(&self, input: &[S], output: &[Vec<f32>]) -> Result<usize> {
        if input.len() != self.channels || output.len() != self.channels {
            return Err(Error::Input(format!("expected {} channels", self.channels)));
        }
        let frames = input[0].as_ref().len();
        if input.iter().any(|c| c.as_ref().len() != frames) {
            return Err(Error::Input("channels differ in length".into()));
        }
        Ok(frames)
    }

    /// Runs one chunk of `pending` (of which `valid` frames are real input) through the
    /// converter.
    fn convert(&mut self, valid: usize, output: &mut [Vec<f32>]) -> Result<()> {
        let r = self.inner.as_mut().expect("only called when converting");
        let out_max = self.scratch[0].len();
        let input = SequentialSliceOfVecs::new(&self.pending, self.channels, self.chunk)
            .map_err(resample_error)?;
        let mut out = SequentialSliceOfVecs::new_mut(&mut self.scratch, self.channels, out_max)
            .map_err(resample_error)?;
        let indexing = Indexing::new().partial_len(valid);
        let (_, produced) = r
            .process_into_buffer(&input, &mut out, Some(&indexing))
            .map_err(resample_error)?;
        let skip = self.skip.min(produced);
        self.skip -= skip;
        for (o, s) in output.iter_mut().zip(&self.scratch) {
            o.extend_from_slice(&s[skip..produced]);
        }
        self.frames_out += (produced - skip) as u64;
        for p in &mut self.pending {
            p.clear();
        }
        Ok(())
    }
}

/// The delay of a converter in output samples, measured: the phase of a low sine after it.
fn measure_delay(mut r: Async<f32>, from: f64, to: f64) -> Result<f64> {
    let freq = from.min(to) / 200.0;
    let n = r.input_frames_max();
    // A second of input at most, and at least 16 384 samples.
    let blocks = (16_384.max(from as usize / 20) / n).max(8);
    let w_in = 2.0 * std::f64::consts::PI * freq / from;
    let w_out = 2.0 * std::f64::consts::PI * freq / to;
    let mut out = Vec::new();
    let mut scratch = vec![vec![0.0f32; r.output_frames_max()]];
    for b in 0..blocks {
        let x = vec![(0..n)
            .map(|i| ((b * n + i) as f64 * w_in).sin() as f32)
            .collect::<Vec<f32>>()];
        let input = SequentialSliceOfVecs::new(&x, 1, n).map_err(resample_error)?;
        let max = scratch[0].len();
        let mut o = SequentialSliceOfVecs::new_mut(&mut scratch, 1, max).map_err(resample_error)?;
        let (_, produced) = r
            .process_into_buffer(&input, &mut o, None)
            .map_err(resample_error)?;
        out.extend_from_slice(&scratch[0][..produced]);
    }
    // y[m] = sin(w_out (m - delay)): read the delay off its phase, away from the start.
    let (mut i, mut q) = (0.0, 0.0);
    for (m, &y) in out.iter().enumerate().skip(out.len() / 4) {
        i += y as f64 * (m as f64 * w_out).sin();
        q += y as f64 * (m as f64 * w_out).cos();
    }
    let phase = (-q).atan2(i);
    Ok(phase.rem_euclid(2.0 * std::f64::consts::PI) / w_out)
}

pub(crate) fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn resample_error(e: impl std::fmt::Display) -> Error {
    Error::Inference(format!("resampler: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, rate: f64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (2.0 * std::f64::consts::PI * freq * i as f64 / rate).sin() as f32 * 0.5)
            .collect()
    }

    fn run(from: f64, to: f64, input: &[f32], piece: usize) -> Vec<f32> {
        run_with(StreamResampler::new(from, to, 1).unwrap(), input, piece)
    }

    fn run_with(mut r: StreamResampler, input: &[f32], piece: usize) -> Vec<f32> {
        let mut out = vec![vec![]];
        for p in input.chunks(piece) {
            r.process(&[p], &mut out).unwrap();
        }
        r.finish(&mut out).unwrap();
        out.pop().unwrap()
    }

    /// How far `y` is from a 440 Hz sine at `rate` with the input's phase, away from the ends.
    fn sine_error(y: &[f32], rate: f64) -> f32 {
        let want = sine(440.0, rate, y.len());
        let m = y.len() / 10;
        y[m..y.len() - m]
            .iter()
            .zip(&want[m..])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn output_length_and_alignment_are_exact() {
        for (from, to) in [
            (44_100.0, 16_000.0),
            (48_000.0, 16_000.0),
            (192_000.0, 16_000.0),
            (16_000.0, 48_000.0),
            (16_000.0, 44_100.0),
            (22_050.0, 16_000.0),
            (8_000.0, 16_000.0),
            (16_000.0, 16_000.0),
            (16_000.0, 44_100.5),
        ] {
            let n = 30_001;
            let x = sine(440.0, from, n);
            let y = run(from, to, &x, 777);
            assert_eq!(
                y.len(),
                (n as f64 * to / from).round() as usize,
                "{from} -> {to}"
            );
            let err = sine_error(&y, to);
            // Fractional rates are aligned to within one sample.
            let tolerance = if to.fract() == 0.0 { 1e-3 } else { 0.1 };
            assert!(err < tolerance, "{from} -> {to}: max error {err}");
        }
    }

    #[test]
    fn low_latency_converters_are_aligned() {
        for (from, to) in [
            (48_000.0, 16_000.0),
            (16_000.0, 48_000.0),
            (44_100.0, 16_000.0),
            (16_000.0, 44_100.0),
            (16_000.0, 8_000.0),
            (8_000.0, 16_000.0),
        ] {
            let n = 30_000;
            let x = sine(440.0, from, n);
            let y = run_with(StreamResampler::low_latency(from, to, 1).unwrap(), &x, 100);
            let err = sine_error(&y, to);
            eprintln!("{from} -> {to}: max error {err}");
            // Aligned to within a fifth of a sample at 44.1 kHz, exactly elsewhere.
            assert!(err < 0.01, "{from} -> {to}: max error {err}");
        }
    }

    /// What a converter to 16 kHz lets through of a tone above 8 kHz, in dB below the tone.
    fn rejection_db(r: StreamResampler, from: f64, freq: f64) -> f64 {
        let n = (from * 0.5) as usize;
        let y = run_with(r, &sine(freq, from, n), 4096);
        let tail = &y[y.len() / 4..y.len() * 3 / 4];
        let p = tail.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / tail.len() as f64;
        -10.0 * (p / 0.125).max(1e-30).log10()
    }

    #[test]
    fn every_host_rate_down_to_the_model_rejects_the_band_above() {
        for from in [
            48_000.0, 96_000.0, 192_000.0, 384_000.0, 768_000.0, 705_600.0,
        ] {
            for freq in [9_000.0, 12_000.0, 20_000.0, from * 0.45] {
                let file =
                    rejection_db(StreamResampler::new(from, 16_000.0, 1).unwrap(), from, freq);
                let live = rejection_db(
                    StreamResampler::low_latency(from, 16_000.0, 1).unwrap(),
                    from,
                    freq,
                );
                eprintln!("{from} Hz, tone at {freq} Hz: file {file:.1} dB, live {live:.1} dB");
                // At 48 kHz: 44 dB at 9 kHz (the transition band), over 130 dB from 12 kHz; the
                // file path at 768 kHz lets through the most, 73 dB down near its Nyquist.
                if freq >= 12_000.0 {
                    assert!(
                        file > 70.0 && live > 70.0,
                        "{from} Hz, {freq} Hz: {file} / {live}"
                    );
                }
            }
        }
    }

    /// A converter's gain for a tone at `freq`, in dB, measured in the middle of its output.
    fn passband_db(r: StreamResampler, from: f64, freq: f64) -> f64 {
        let y = run_with(r, &sine(freq, from, from as usize), 4096);
        let mid = &y[y.len() / 4..y.len() * 3 / 4];
        let p = mid.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / mid.len() as f64;
        10.0 * (p / 0.125).log10()
    }

    /// The file converters are flat (within 0.5 dB) to 7 kHz into the model and back out of
    /// it, at every common host rate: a sweep of tones, not one.
    #[test]
    fn file_converters_are_flat_to_seven_kilohertz() {
        let tones = [100.0, 1_000.0, 3_000.0, 5_000.0, 6_000.0, 6_500.0, 7_000.0];
        for rate in [
            22_050.0, 32_000.0, 44_100.0, 48_000.0, 88_200.0, 96_000.0, 192_000.0, 384_000.0,
            768_000.0,
        ] {
            for freq in tones {
                let down =
                    passband_db(StreamResampler::new(rate, 16_000.0, 1).unwrap(), rate, freq);
                let up = passband_db(
                    StreamResampler::new(16_000.0, rate, 1).unwrap(),
                    16_000.0,
                    freq,
                );
                eprintln!("{rate} Hz, {freq} Hz: in {down:.2} dB, out {up:.2} dB");
                assert!(
                    down.abs() < 0.5 && up.abs() < 0.5,
                    "{rate} Hz at {freq} Hz: {down:.2} dB in, {up:.2} dB out"
                );
            }
        }
        // From 8 kHz, everything up to its own band edge.
        for freq in [100.0, 1_000.0, 3_000.0, 3_500.0] {
            let up = passband_db(
                StreamResampler::new(8_000.0, 16_000.0, 1).unwrap(),
                8_000.0,
                freq,
            );
            assert!(up.abs() < 0.5, "8 kHz at {freq} Hz: {up:.2} dB");
        }
    }

    /// The live (Low latency) converters trade passband for latency. Per host rate: the
    /// shipped choice's level at 6-7 kHz and delay, then longer sincs until one is flat within
    /// 0.5 dB to 7 kHz both ways, and what that one would add to the chain's latency.
    #[test]
    fn what_flat_live_converters_would_cost() {
        for rate in [44_100.0, 48_000.0] {
            // A converter pair (`None`: the shipped choice): its delay both ways in ms (down
            // counts 16 kHz samples, up host samples), its level at 6, 6.5 and 7 kHz both ways,
            // and the worst of those.
            let describe = |taps: Option<usize>| {
                let make = |from: f64, to: f64| match taps {
                    Some(n) => StreamResampler::low_latency_with_sinc(from, to, n).unwrap(),
                    None => StreamResampler::low_latency(from, to, 1).unwrap(),
                };
                let ms = make(rate, 16_000.0).delay() as f64 / 16.0
                    + make(16_000.0, rate).delay() as f64 / rate * 1000.0;
                let tones = [6_000.0, 6_500.0, 7_000.0];
                let down = tones.map(|f| passband_db(make(rate, 16_000.0), rate, f));
                let up = tones.map(|f| passband_db(make(16_000.0, rate), 16_000.0, f));
                let worst = down.iter().chain(&up).fold(0.0f64, |a, v| a.max(v.abs()));
                (ms, down, up, worst)
            };
            let (base, down, up, _) = describe(None);
            eprintln!(
                "{rate} Hz live converters: {base:.2} ms both ways; 6/6.5/7 kHz in {down:.1?} dB, \
                 out {up:.1?} dB"
            );
            let mut flat = None;
            for taps in [160, 192, 256, 320, 384, 512] {
                let (ms, down, up, worst) = describe(Some(taps));
                eprintln!(
                    "  {taps} taps: {ms:.2} ms both ways (+{:.2}); in {down:.1?} dB, out {up:.1?} dB",
                    ms - base
                );
                if worst < 0.5 {
                    flat = Some((taps, ms - base));
                    break;
                }
            }
            let (taps, cost) = flat.expect("some sinc length is flat to 7 kHz");
            eprintln!("{rate} Hz: flat to 7 kHz at {taps} taps, +{cost:.2} ms of latency");
            assert!(cost > 0.0, "a flatter filter cannot be shorter");
        }
    }

    #[test]
    fn piece_size_does_not_change_the_result() {
        let x = sine(1000.0, 44_100.0, 20_000);
        assert_eq!(
            run(44_100.0, 16_000.0, &x, 1),
            run(44_100.0, 16_000.0, &x, 20_000)
        );
    }

    #[test]
    fn rejects_nonsense_rates() {
        assert!(StreamResampler::new(0.0, 16_000.0, 1).is_err());
        assert!(StreamResampler::new(f64::NAN, 16_000.0, 1).is_err());
    }
}
