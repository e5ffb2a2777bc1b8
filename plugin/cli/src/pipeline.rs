//! One file through the model: read, resample to the model's rate, denoise in chunks,
//! resample back, write. Memory stays bounded whatever the file's length, and the output
//! appears under its name only when complete.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use wavecrn_engine::offline::{ChunkedDenoiser, Chunking};
use wavecrn_engine::resample::StreamResampler;
use wavecrn_engine::Model;

use crate::audio::{Reader, Spec, Writer};

/// The WAV and FLAC files under `dir` (recursively), sorted by path. An unreadable folder or
/// one without audio is an error naming it.
pub fn audio_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d)
            .with_context(|| format!("cannot read the folder {}", d.display()))?;
        for entry in entries {
            let p = entry?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("flac") || e.eq_ignore_ascii_case("wav"))
            {
                out.push(p);
            }
        }
    }
    if out.is_empty() {
        anyhow::bail!("{} holds no WAV or FLAC files", dir.display());
    }
    out.sort();
    Ok(out)
}

/// Every audio file under `dir` as mono at `rate` Hz, named by file stem. Silent files are
/// skipped (with a message): they can be neither mixed nor scored.
pub fn read_folder_mono(dir: &Path, rate: u32) -> Result<Vec<(String, Vec<f32>)>> {
    let mut out = vec![];
    for f in audio_files(dir)? {
        let mono = read_mono(&f, rate)?;
        if mono.iter().all(|v| *v == 0.0) {
            eprintln!("skipping {}: silent", f.display());
            continue;
        }
        out.push((
            f.file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            mono,
        ));
    }
    Ok(out)
}

/// Reads a whole file as one channel (the mean of its channels) at `rate` Hz.
pub fn read_mono(path: &Path, rate: u32) -> Result<Vec<f32>> {
    let (spec, channels) = read_all(path)?;
    let n = channels[0].len();
    let mono: Vec<f32> = (0..n)
        .map(|i| channels.iter().map(|c| c[i]).sum::<f32>() / channels.len() as f32)
        .collect();
    if spec.sample_rate == rate {
        return Ok(mono);
    }
    let mut r = StreamResampler::new(spec.sample_rate as f64, rate as f64, 1)?;
    let mut out = vec![vec![]];
    r.process(&[&mono], &mut out)?;
    r.finish(&mut out)?;
    Ok(out.pop().unwrap_or_default())
}

/// Reads a whole file as planar f32 at its own rate: (spec, channels).
pub fn read_all(path: &Path) -> Result<(Spec, Vec<Vec<f32>>)> {
    let (mut reader, spec) = Reader::open(path)?;
    let mut out = vec![vec![]; spec.channels];
    while reader.read(READ, &mut out)? > 0 {}
    Ok((spec, out))
}

/// Frames read per step.
const READ: usize = 1 << 16;

/// Denoises `input` into `output` (same format, rate and channels, same length).
/// Returns a one-line summary.
pub fn denoise_file(model: &Model, input: &Path, output: &Path, progress: bool) -> Result<String> {
    let (mut reader, spec) = Reader::open(input)?;
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = output
        .file_name()
        .context("output has no file name")?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.partial{}", std::process::id()));
    let started = Instant::now();
    let result = run(model, &mut reader, &spec, &tmp, progress);
    match result {
        Ok(frames) => {
            std::fs::rename(&tmp, output)
                .with_context(|| format!("cannot move the result to {}", output.display()))?;
            let seconds = frames as f64 / spec.sample_rate as f64;
            let took = started.elapsed().as_secs_f64();
            Ok(format!(
                "{seconds:.1} s of audio in {took:.1} s, {:.0}x real time",
                seconds / took.max(1e-9)
            ))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e.context(format!("{} was not written", output.display())))
        }
    }
}

fn run(model: &Model, reader: &mut Reader, spec: &Spec, tmp: &Path, progress: bool) -> Result<u64> {
    let ch = spec.channels;
    let model_rate = model.config().sample_rate as f64;
    let mut down = StreamResampler::new(spec.sample_rate as f64, model_rate, ch)?;
    let mut up = StreamResampler::new(model_rate, spec.sample_rate as f64, ch)?;
    let mut denoiser = ChunkedDenoiser::new(model, ch, Chunking::for_model(model))?;
    let mut writer = Writer::create(tmp, spec)?;
    let mut out = Output {
        writer: &mut writer,
        held: vec![vec![]; ch],
        written: 0,
    };

    let bar = progress_bar(spec, progress);
    let (mut raw, mut low, mut clean, mut back) = (planar(ch), planar(ch), planar(ch), planar(ch));
    let mut frames_in = 0u64;
    loop {
        clear(&mut raw);
        let n = reader.read(READ, &mut raw)?;
        if n == 0 {
            break;
        }
        frames_in += n as u64;
        down.process(&slices(&raw), &mut low)?;
        denoiser.push(&slices(&low), &mut clean)?;
        clear(&mut low);
        up.process(&slices(&clean), &mut back)?;
        clear(&mut clean);
        out.push(&mut back, frames_in)?;
        bar.set_position(frames_in);
    }
    down.finish(&mut low)?;
    denoiser.push(&slices(&low), &mut clean)?;
    denoiser.finish(&mut clean)?;
    up.process(&slices(&clean), &mut back)?;
    up.finish(&mut back)?;
    out.finish(&mut back, frames_in)?;
    writer.finish()?;
    // hound flushes but does not sync: make sure the bytes are on disk before the rename.
    std::fs::File::open(tmp)?.sync_all()?;
    bar.finish_and_clear();
    Ok(frames_in)
}

/// The writing end: keeps the output exactly as long as the input, whatever rounding the
/// two sample-rate conversions did.
struct Output<'w> {
    writer: &'w mut Writer,
    /// The last few frames, held back until the input's length is known.
    held: Vec<Vec<f32>>,
    written: u64,
}

impl Output<'_> {
    const HOLD: usize = 16;

    fn push(&mut self, new: &mut [Vec<f32>], limit: u64) -> Result<()> {
        for (h, n) in self.held.iter_mut().zip(new.iter_mut()) {
            h.append(n);
        }
        let ready = self.held[0]
            .len()
            .saturating_sub(Self::HOLD)
            .min((limit - self.written) as usize);
        self.emit(ready)
    }

    fn finish(&mut self, new: &mut [Vec<f32>], total: u64) -> Result<()> {
        for (h, n) in self.held.iter_mut().zip(new.iter_mut()) {
            h.append(n);
            h.resize(h.len().max((total - self.written) as usize), 0.0);
        }
        self.emit((total - self.written) as usize)
    }

    fn emit(&mut self, n: usize) -> Result<()> {
        let parts: Vec<&[f32]> = self.held.iter().map(|h| &h[..n]).collect();
        self.writer.write(&parts)?;
        for h in &mut self.held {
            h.drain(..n);
        }
        self.written += n as u64;
        Ok(())
    }
}

fn planar(channels: usize) -> Vec<Vec<f32>> {
    vec![vec![]; channels]
}

fn slices(v: &[Vec<f32>]) -> Vec<&[f32]> {
    v.iter().map(Vec::as_slice).collect()
}

fn clear(v: &mut [Vec<f32>]) {
    v.iter_mut().for_each(Vec::clear);
}

fn progress_bar(spec: &Spec, show: bool) -> ProgressBar {
    // Only long jobs get a bar: a few seconds of audio is done before it could be read.
    let long = spec.frames.is_none_or(|f| f > 60 * spec.sample_rate as u64);
    if !show || !long {
        return ProgressBar::hidden();
    }
    let bar = match spec.frames {
        Some(f) => ProgressBar::new(f),
        None => ProgressBar::no_length(),
    };
    let rate = spec.sample_rate as f64;
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {percent:>3}%  {audio} of audio  eta {eta}")
            .expect("valid template")
            .with_key(
                "audio",
                move |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0} s", s.pos() as f64 / rate);
                },
            ),
    );
    bar
}
