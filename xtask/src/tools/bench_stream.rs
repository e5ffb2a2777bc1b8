//! `cargo xtask bench-stream`: figures for the real-time path with the shipped models, printed,
//! never asserted. For each host rate asked for (`--rate`, 48 kHz unless given, repeatable)
//! and each mode, on 20 s of real noisy speech (stereo, 512-frame blocks):
//!
//! - the latency reported to the host, at 64- and 512-frame blocks;
//! - the heap memory the stream holds (both halves: rings, converters, model state);
//! - the worker's real-time factor (its processing time / audio time), on this thread; for
//!   the Low latency preset, whose chain runs on the audio thread, the audio thread's;
//! - the audio thread's time per block, median and 99th percentile;
//! - for Low latency, whose hops run on the audio thread, the time per callback at 16-, 32-,
//!   64- and 512-frame buffers against the time each buffer lasts;
//! - how far the streamed output is from the whole-file output of the same model (SNR, dB);
//! - and, for the windowed modes, how that distance shrinks with longer windows: the
//!   bidirectional model's window stage against the whole file at 16 kHz, for context and
//!   look-ahead of 0.48, 0.96 and 1.92 s;
//! - last, the file path's chunk joins: the CLI's 30 s chunks against the whole file with 3,
//!   2 and 1 s of context on each side, and the extra work each context costs.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use wavecrn_audio::folder::{audio_files, read_mono};
use wavecrn_engine::offline::{ChunkedDenoiser, Chunking};
use wavecrn_engine::resample::StreamResampler;
use wavecrn_engine::stream::{self, ModelStage, Preset, StreamModels, Window, WindowStage};
use wavecrn_engine::{LoadOptions, Model};

#[derive(clap::Args)]
pub struct Args {
    /// Host sample rates (repeat the option, or separate with commas).
    #[arg(long, value_delimiter = ',', default_value = "48000")]
    rate: Vec<f64>,
    /// Seconds of audio.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Speech and noise folders for the test signal.
    #[arg(long, default_value = "../shared/data/speech/valid")]
    speech: PathBuf,
    #[arg(long, default_value = "../shared/data/noise/valid")]
    noise: PathBuf,
}

/// `seconds` of audio from the files of `dir`, in order, at `rate`.
fn take(dir: &std::path::Path, rate: f64, seconds: f64, skip: usize) -> Result<Vec<f32>> {
    let want = (rate * seconds) as usize;
    let mut x = Vec::new();
    for f in audio_files(dir)?.iter().skip(skip) {
        x.extend(read_mono(f, rate as u32)?);
        if x.len() >= want {
            break;
        }
    }
    anyhow::ensure!(x.len() >= want, "{} holds too little audio", dir.display());
    x.truncate(want);
    Ok(x)
}

fn power(x: &[f32]) -> f64 {
    x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64
}

/// The whole-file output of `model` for `x`: converted to 16 kHz and back with the file path's
/// converters, or with the stream's short `live` ones.
fn whole_file(model: &Model, x: &[f32], rate: f64, live: bool) -> Result<Vec<f32>> {
    let convert = |x: &[f32], from: f64, to: f64| -> Result<Vec<f32>> {
        let mut r = match live {
            true => StreamResampler::low_latency(from, to, 1)?,
            false => StreamResampler::new(from, to, 1)?,
        };
        let mut out = vec![Vec::new()];
        r.process(&[x], &mut out)?;
        r.finish(&mut out)?;
        Ok(out.pop().expect("one channel"))
    };
    let y = model.denoise(&convert(x, rate, 16_000.0)?, 1)?;
    convert(&y, 16_000.0, rate)
}

/// Channel `c` of the test signal: speech with noise at 5 dB SNR, at `rate`.
fn noisy_speech(a: &Args, rate: f64, c: usize) -> Result<Vec<f32>> {
    noisy_speech_for(a, rate, c, a.seconds)
}

/// [`noisy_speech`], `seconds` long.
fn noisy_speech_for(a: &Args, rate: f64, c: usize, seconds: f64) -> Result<Vec<f32>> {
    let s = take(&a.speech, rate, seconds, 10 * c)
        .with_context(|| format!("speech from {}", a.speech.display()))?;
    let n = take(&a.noise, rate, seconds, 3 * c)?;
    let g = (power(&s) / power(&n) / 10f64.powf(0.5)).sqrt() as f32;
    Ok(s.iter().zip(&n).map(|(s, n)| s + g * n).collect())
}

/// The bidirectional model's window stage against the whole file, at its own rate, for
/// longer and longer context and look-ahead (the chunk kept at 0.96 s).
fn window_reach(a: &Args, model: &Model) -> Result<String> {
    let rate = model.config().sample_rate as f64;
    let x = noisy_speech(a, rate, 0)?;
    let whole = model.denoise(&x, 1)?;
    let mut out = Vec::new();
    for side_ms in [480, 960, 1920] {
        let side = side_ms * 16;
        let window = Window {
            context: side,
            chunk: 960 * 16,
            lookahead: side,
        };
        let mut stage = WindowStage::new(model.clone(), window, 1);
        let mut y = vec![Vec::new()];
        for piece in x.chunks(4096) {
            stage.process(&[piece.to_vec()], &mut y)?;
        }
        // From 1 s in, as for the streams.
        let (from, to) = (rate as usize, y[0].len());
        let e: Vec<f32> = (from..to).map(|i| whole[i] - y[0][i]).collect();
        let db = 10.0 * (power(&whole[from..to]) / power(&e).max(1e-30)).log10();
        out.push(format!("{:.2} s {db:.1} dB", side_ms as f64 / 1e3));
    }
    Ok(out.join(", "))
}

/// The file path's chunking (30 s chunks, 0.25 s crossfades) against the whole file, for the
/// bidirectional model at its own rate on 100 s of noisy speech, with less and less context
/// on each side of a chunk, and the extra work each context costs.
fn chunk_joins(a: &Args, model: &Model) -> Result<String> {
    let rate = model.config().sample_rate as f64;
    let x = noisy_speech_for(a, rate, 0, 100.0)?;
    let whole = model.denoise(&x, 1)?;
    let defaults = Chunking::for_model(model);
    let mut out = Vec::new();
    for context_s in [3.0, 2.0, 1.0] {
        let hop = model.config().stride;
        let context = ((context_s * rate) as usize).div_ceil(2 * hop) * 2 * hop;
        let sizes = Chunking {
            context,
            lookahead: context,
            ..defaults
        };
        let mut chunked = ChunkedDenoiser::new(model, 1, sizes)?.with_jobs(1);
        let mut y = vec![Vec::new()];
        chunked.push(&[&x], &mut y)?;
        chunked.finish(&mut y)?;
        let e: Vec<f32> = whole.iter().zip(&y[0]).map(|(w, y)| w - y).collect();
        let db = 10.0 * (power(&whole) / power(&e).max(1e-30)).log10();
        let work = 2.0 * context as f64 / sizes.chunk as f64 * 100.0;
        out.push(format!("{context_s:.0} s {db:.1} dB (+{work:.0} % work)"));
    }
    Ok(out.join(", "))
}

pub fn run(a: Args) -> Result<()> {
    let models = crate::tree_stream_models()?;
    for &rate in &a.rate {
        rate_rows(&a, &models, rate)?;
        low_latency_callbacks(&a, &models, rate)?;
    }
    println!(
        "window reach of the bidirectional model at 16 kHz, channel 0 (context = look-ahead, \
         0.96 s kept): {}",
        window_reach(&a, &models.bidirectional)?
    );
    println!(
        "file path, chunk joins of the bidirectional model at 16 kHz against the whole file \
         (100 s, 30 s chunks; context before and after each chunk): {}",
        chunk_joins(&a, &models.bidirectional)?
    );
    Ok(())
}

/// One row per mode at host rate `rate`.
fn rate_rows(a: &Args, models: &StreamModels, rate: f64) -> Result<()> {
    let input = (0..2)
        .map(|c| noisy_speech(a, rate, c))
        .collect::<Result<Vec<_>>>()?;
    let frames = input[0].len();
    println!(
        "stereo {rate} Hz, {:.0} s of noisy speech, 512-frame blocks, one thread",
        a.seconds
    );
    for preset in Preset::ALL {
        let lat64 = stream::latency(models, preset, rate, 64)?;
        let before = crate::heap::live_bytes();
        let (mut audio, mut worker) = stream::stream(models, preset, rate, 2, 512)?;
        let latency = audio.latency();
        let (mut worker_time, mut block_times) = (0.0f64, Vec::new());
        let mut worker_faults = 0;
        let mut wet: Vec<Vec<f32>> = (0..2).map(|_| Vec::with_capacity(frames)).collect();
        let mut at = 0;
        while at < frames {
            let n = 512.min(frames - at);
            let block = [&input[0][at..at + n], &input[1][at..at + n]];
            let t = Instant::now();
            audio.process(&block, false);
            let spent = t.elapsed().as_secs_f64();
            block_times.push(spent);
            if worker.is_none() {
                worker_time += spent;
            }
            for (c, w) in wet.iter_mut().enumerate() {
                w.extend_from_slice(audio.wet(c));
            }
            // The worker runs here, in step, timed on its own.
            if let Some(worker) = &mut worker {
                let (t, faults) = (Instant::now(), thread_page_faults());
                while worker.poll()? {}
                worker_time += t.elapsed().as_secs_f64();
                worker_faults += thread_page_faults() - faults;
            }
            at += n;
        }
        // What the stream holds once it has run (its buffers grow to their working size),
        // less this loop's own records.
        let records =
            wet.iter().map(|w| w.capacity() * 4).sum::<usize>() + block_times.capacity() * 8;
        let held = crate::heap::live_bytes().saturating_sub(before + records);
        block_times.sort_by(f64::total_cmp);
        let pct = |p: f64| block_times[((block_times.len() - 1) as f64 * p) as usize] * 1e6;
        let model = match preset {
            Preset::LowLatency => Model::from_bytes(&models.causal, &LoadOptions::default())?,
            _ => (*models.bidirectional).clone(),
        };
        // From 1 s in (the stream starts cold) to where the stream output ends.
        let (from, to) = (rate as usize, frames - latency);
        let snr = |live: bool| -> Result<String> {
            let mut db = Vec::new();
            for c in 0..2 {
                let want = whole_file(&model, &input[c], rate, live)?;
                let e: Vec<f32> = (from..to).map(|i| want[i] - wet[c][i + latency]).collect();
                db.push(10.0 * (power(&want[from..to]) / power(&e).max(1e-30)).log10());
            }
            Ok(format!("{:.1} / {:.1} dB", db[0], db[1]))
        };
        let mut fidelity = format!("streamed vs whole file {}", snr(false)?);
        if preset.inline() {
            fidelity += &format!(" ({} with the stream's converters)", snr(true)?);
        }
        println!(
            "{preset:?}: latency {:.1} ms at 512-frame blocks ({:.1} ms at 64); heap {:.1} MB; \
             {} RTF {:.3}{}; audio thread {:.1} us median, {:.1} us p99 per block; \
             fallbacks {}; {fidelity}",
            latency as f64 / rate * 1e3,
            lat64 as f64 / rate * 1e3,
            held as f64 / 1e6,
            if preset.inline() { "inline" } else { "worker" },
            worker_time / a.seconds,
            if preset.inline() {
                String::new()
            } else {
                format!(
                    " ({:.0} minor page faults per second of audio)",
                    worker_faults as f64 / a.seconds
                )
            },
            pct(0.5),
            pct(0.99),
            audio.fallbacks(),
        );
    }
    Ok(())
}

/// Low latency runs its chain on the audio thread, a 3 ms hop at a time, inside whichever
/// callback completes the hop: at small host buffers that callback carries the hop's whole
/// cost. Per buffer size, the callback's time (median, 99th percentile, worst) against the
/// time the buffer lasts.
fn low_latency_callbacks(a: &Args, models: &StreamModels, rate: f64) -> Result<()> {
    let input = (0..2)
        .map(|c| noisy_speech(a, rate, c))
        .collect::<Result<Vec<_>>>()?;
    let frames = input[0].len();
    let mut rows = Vec::new();
    for block in [16usize, 32, 64, 512] {
        let (mut audio, _) = stream::stream(models, Preset::LowLatency, rate, 2, block)?;
        let mut times = Vec::with_capacity(frames / block + 1);
        let mut at = 0;
        while at + block <= frames {
            let piece = [&input[0][at..at + block], &input[1][at..at + block]];
            let t = Instant::now();
            audio.process(&piece, false);
            times.push(t.elapsed().as_secs_f64());
            at += block;
        }
        times.sort_by(f64::total_cmp);
        let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize] * 1e6;
        let budget = block as f64 / rate * 1e6;
        rows.push(format!(
            "{block} frames ({budget:.0} us): {:.0} / {:.0} / {:.0} us ({:.0} % of the buffer at \
             p99)",
            pct(0.5),
            pct(0.99),
            pct(1.0),
            pct(0.99) / budget * 100.0
        ));
    }
    println!(
        "Low latency per callback at {rate} Hz, stereo (median / p99 / worst): {}",
        rows.join("; ")
    );
    Ok(())
}

/// Minor page faults of the calling thread so far: fresh pages the kernel had to hand out
/// (and zero), the cost of memory that is mapped and unmapped again instead of reused.
fn thread_page_faults() -> i64 {
    // SAFETY: getrusage only writes the struct it is given.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut usage);
        usage.ru_minflt
    }
}
