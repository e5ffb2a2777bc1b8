//! `cargo xtask upper-band`: the band above 8 kHz at 48 kHz, on the validation set, printed.
//!
//! The model sees 16 kHz audio; at 44.1 and 48 kHz the band above 8 kHz is treated around it
//! (`wavecrn_engine::upper_band`), by the command line and the plugin's stream alike. The
//! validation recordings are 16 kHz, so each pair is resampled to 48 kHz and its noise goes
//! on above 8 kHz as broadband hiss at the level it has just below (its 6-8 kHz density),
//! which is how fans, air and preamps sound on a full-band recording. Then, per band, the
//! long-term level of the input, the clean speech, the command line's output and the Quality
//! stream's output; and above 8 kHz, the level in speech and in pauses (pumping shows as a
//! pause level that drops when speech stops), and per file the file path against the stream.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use wavecrn_engine::resample::StreamResampler;
use wavecrn_engine::stream::{self, Preset, StreamModels, WorkerThread};
use wavecrn_metrics::spectrum::LongTermSpectrum;
use wavecrn_metrics::validation;

#[derive(clap::Args)]
pub struct Args {
    /// Validation speech and noise folders (16 kHz).
    #[arg(long, default_value = "../shared/data/speech/valid")]
    speech: PathBuf,
    #[arg(long, default_value = "../shared/data/noise/valid")]
    noise: PathBuf,
    /// Pairs used: the first N of the validation set.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Level of the hiss above 8 kHz against the noise's own 6-8 kHz density, dB.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    hiss_db: f64,
}

const RATE: f64 = 48_000.0;
/// The bands reported, Hz.
const BANDS: [(f64, f64); 5] = [
    (0.0, 4_000.0),
    (4_000.0, 8_000.0),
    (8_000.0, 12_000.0),
    (12_000.0, 16_000.0),
    (16_000.0, 24_000.0),
];
const UPPER: (f64, f64) = (8_000.0, 24_000.0);
/// Frames of the speech/pause split: 32 ms at 48 kHz.
const FRAME: usize = 1_536;

fn convert(x: &[f32], from: f64, to: f64) -> Result<Vec<f32>> {
    let mut r = StreamResampler::new(from, to, 1)?;
    let mut out = vec![Vec::new()];
    r.process(&[x], &mut out)?;
    r.finish(&mut out)?;
    let mut y = out.pop().context("one channel")?;
    y.resize((x.len() as f64 * to / from).round() as usize, 0.0);
    Ok(y)
}

/// White noise above 8 kHz (white minus its own round trip through 16 kHz).
fn hiss(len: usize, seed: u64) -> Result<Vec<f32>> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let white: Vec<f32> = (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect();
    let low = convert(&convert(&white, RATE, 16_000.0)?, 16_000.0, RATE)?;
    Ok(white.iter().zip(&low).map(|(w, l)| w - l).collect())
}

fn spectrum(x: &[f32]) -> LongTermSpectrum {
    let mut s = LongTermSpectrum::new(RATE as u32);
    s.add(x);
    s
}

fn db(p: f64) -> f64 {
    10.0 * p.max(1e-30).log10()
}

/// Power above 8 kHz per [`FRAME`] of `x`.
fn upper_frames(x: &[f32]) -> Vec<f64> {
    x.chunks_exact(FRAME)
        .map(|f| spectrum(f).band(UPPER))
        .collect()
}

/// What one rendered pair gives.
struct Rendered {
    /// Long-term spectra: input, clean, file, stream.
    spectra: [LongTermSpectrum; 4],
    /// Upper-band power per frame, and which frames hold speech.
    frames: [Vec<f64>; 4],
    speech: Vec<bool>,
}

pub fn run(a: Args) -> Result<()> {
    let models = crate::tree_stream_models()?;
    let load = |dir: &std::path::Path| wavecrn_audio::folder::read_folder_mono(dir, 16_000);
    let mut pairs = validation::mix(&load(&a.speech)?, &load(&a.noise)?, validation::SEED);
    pairs.truncate(a.limit);
    let dir = crate::root().join("target/upper-band");
    std::fs::create_dir_all(&dir)?;
    let wavecrn = super::wavecrn_binary()?;

    let mut totals: Vec<LongTermSpectrum> =
        (0..4).map(|_| LongTermSpectrum::new(RATE as u32)).collect();
    let (mut in_speech, mut in_pause) = ([0.0f64; 4], [0.0f64; 4]);
    let (mut speech_frames, mut pause_frames) = (0usize, 0usize);
    let (mut worst_gap, mut worst_over) = (0.0f64, f64::NEG_INFINITY);
    let mut apart = Vec::new();
    for (k, pair) in pairs.iter().enumerate() {
        let r = render(&a, &models, &wavecrn, pair, k as u64, &dir)?;
        for (t, s) in totals.iter_mut().zip(&r.spectra) {
            t.power.iter_mut().zip(&s.power).for_each(|(a, b)| *a += b);
        }
        for (i, frames) in r.frames.iter().enumerate() {
            for (p, &sp) in frames.iter().zip(&r.speech) {
                if sp {
                    in_speech[i] += p;
                } else {
                    in_pause[i] += p;
                }
            }
        }
        speech_frames += r.speech.iter().filter(|s| **s).count();
        pause_frames += r.speech.iter().filter(|s| !**s).count();
        let up = |s: &LongTermSpectrum| db(s.band(UPPER));
        let (input, file, streamed) = (up(&r.spectra[0]), up(&r.spectra[2]), up(&r.spectra[3]));
        worst_gap = worst_gap.max((file - streamed).abs());
        if (file - streamed).abs() > 3.0 {
            apart.push(format!(
                "{} ({:.1} s): input {input:.1}, file {file:.1}, stream {streamed:.1} dB",
                pair.name,
                pair.clean.len() as f64 / 16_000.0
            ));
        }
        worst_over = worst_over.max(file - input);
    }
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "{} validation pairs at 48 kHz, hiss above 8 kHz at {:+.0} dB of each noise's 6-8 kHz \
         density; long-term level per band, dB (relative to the input's 0-4 kHz level):",
        pairs.len(),
        a.hiss_db
    );
    let names = ["input", "clean", "file (CLI)", "stream (Quality)"];
    let reference = totals[0].band(BANDS[0]);
    print!("| | ");
    for (lo, hi) in BANDS {
        print!("{:.0}-{:.0} kHz | ", lo / 1000.0, hi / 1000.0);
    }
    println!("8-24 kHz in speech | 8-24 kHz in pauses |");
    println!("|---|---|---|---|---|---|---|---|");
    for (i, name) in names.iter().enumerate() {
        print!("| {name} | ");
        for b in BANDS {
            print!("{:.1} | ", db(totals[i].band(b) / reference));
        }
        // Per frame (FRAME samples' power spectrum), against the input's in the same frames.
        println!(
            "{:.1} | {:.1} |",
            db(in_speech[i] / speech_frames.max(1) as f64)
                - db(in_speech[0] / speech_frames.max(1) as f64),
            db(in_pause[i] / pause_frames.max(1) as f64)
                - db(in_pause[0] / pause_frames.max(1) as f64),
        );
    }
    println!(
        "(speech and pause columns: the 8-24 kHz level against the input's in the same frames; \
         {speech_frames} speech frames, {pause_frames} pause frames of 32 ms)"
    );
    println!(
        "per file, 8-24 kHz: file path against stream at most {worst_gap:.2} dB apart; file \
         path against input at most {worst_over:+.2} dB; {} files more than 3 dB apart{}",
        apart.len(),
        if apart.is_empty() {
            String::new()
        } else {
            format!(":\n  {}", apart.join("\n  "))
        }
    );
    Ok(())
}

/// One pair at 48 kHz through the command line's file path and the Quality stream.
fn render(
    a: &Args,
    models: &StreamModels,
    wavecrn: &std::path::Path,
    pair: &validation::Pair,
    seed: u64,
    dir: &std::path::Path,
) -> Result<Rendered> {
    let clean = convert(&pair.clean, 16_000.0, RATE)?;
    let noise16: Vec<f32> = pair
        .noisy
        .iter()
        .zip(&pair.clean)
        .map(|(n, c)| n - c)
        .collect();
    let noise = convert(&noise16, 16_000.0, RATE)?;
    // The noise's density just below 8 kHz, carried on to 24 kHz.
    let density = spectrum(&noise).band((6_000.0, 8_000.0)) / 2_000.0;
    let mut h = hiss(noise.len(), seed + 1)?;
    let want = density * 16_000.0 * 10f64.powf(a.hiss_db / 10.0);
    let k = (want / spectrum(&h).band(UPPER).max(1e-30)).sqrt() as f32;
    h.iter_mut().for_each(|v| *v *= k);
    let input: Vec<f32> = clean
        .iter()
        .zip(&noise)
        .zip(&h)
        .map(|((c, n), h)| c + n + h)
        .collect();
    let len = input.len();

    // The file path, through files as a user runs it.
    let (inp, out) = (dir.join("in.wav"), dir.join("out.wav"));
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE as u32,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(&inp, spec)?;
    for v in &input {
        w.write_sample(*v)?;
    }
    w.finalize()?;
    let st = std::process::Command::new(wavecrn)
        .args(["denoise", "--quiet", "--force", "--model"])
        .arg(crate::root().join("models/wavecrn-denoise.onnx"))
        .arg(&inp)
        .arg("-o")
        .arg(&out)
        .status()?;
    anyhow::ensure!(st.success(), "wavecrn denoise failed on {}", inp.display());
    let file: Vec<f32> = hound::WavReader::open(&out)?
        .samples::<f32>()
        .collect::<Result<_, _>>()?;

    // The plugin's Quality stream, waiting for its worker as an offline render does.
    let (mut audio, worker) = stream::stream(models, Preset::Quality, RATE, 1, 512)?;
    let latency = audio.latency();
    let _thread = WorkerThread::spawn(worker.into_iter().collect(), Duration::from_micros(200))?;
    let padded: Vec<f32> = input.iter().copied().chain(vec![0.0; latency]).collect();
    let mut streamed = Vec::with_capacity(padded.len());
    for block in padded.chunks(512) {
        audio.process(&[block], true);
        streamed.extend_from_slice(audio.wet(0));
    }
    let streamed = streamed[latency..latency + len].to_vec();

    // Speech frames: the clean speech within 30 dB of its loudest frame.
    let energy: Vec<f64> = clean
        .chunks_exact(FRAME)
        .map(|f| f.iter().map(|v| (*v as f64).powi(2)).sum())
        .collect();
    let loudest = energy.iter().copied().fold(0.0, f64::max);
    let speech = energy.iter().map(|e| *e > loudest * 1e-3).collect();
    let signals = [&input, &clean, &file, &streamed];
    Ok(Rendered {
        spectra: signals.map(|s| spectrum(s)),
        frames: signals.map(|s| upper_frames(s)),
        speech,
    })
}
