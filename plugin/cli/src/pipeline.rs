//! One file through the model: read, resample to the model's rate, denoise in chunks,
//! resample back, write. Memory stays bounded whatever the file's length, and the output
//! appears under its name only when complete.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use wavecrn_engine::offline::{cores, ChunkedDenoiser, Chunking};
use wavecrn_engine::rate_bridge::RateBridge;
use wavecrn_engine::resample::StreamResampler;
use wavecrn_engine::{two_bit, DeviceChoice, LoadOptions, Model};

use wavecrn_audio::bwf;
use wavecrn_audio::file::{
    conversion_note, output_spec, Container, Encoding, Reader, Spec, Writer, READ_FRAMES,
};

/// What the model makes of a file.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Task {
    /// Denoise at any rate; the model's output replaces `share` of the input
    /// ([`wavecrn_engine::reduction::effective`]).
    Denoise { share: f32 },
    /// Restore 2-bit speech: the model is given the sign of each sample (so a sign file at
    /// any level will do) and its output is the file. The sign of speech at another rate is
    /// not what the model learnt to undo, so the file must be at the model's rate.
    Restore,
}

/// Denoises `input` into `output` (same format, rate and channels, same length).
/// Returns a one-line summary. Runs on every core.
pub fn denoise_file(model: &Model, input: &Path, output: &Path, progress: bool) -> Result<String> {
    let job = [(input.to_path_buf(), output.to_path_buf())];
    let task = Task::Denoise { share: 1.0 };
    denoise_together(model, &job, progress, cores(), task)
        .pop()
        .expect("one result per job")
}

/// Load options for the device a user chose; when `auto` falls back to the CPU, says so
/// (and why) in one line on stderr.
pub fn load_options(choice: DeviceChoice) -> Result<LoadOptions> {
    let (options, note) = choice.load_options()?;
    if let Some(note) = note {
        eprintln!("{note}");
    }
    Ok(options)
}

/// Splits `jobs` into groups of at most `batch` files of similar duration (shortest first),
/// so that little of a batch is padding. Files whose header does not say their length, or
/// cannot be opened, go last (their error comes when they run).
pub fn group_by_length(jobs: &[(PathBuf, PathBuf)], batch: usize) -> Vec<Vec<(PathBuf, PathBuf)>> {
    let mut timed: Vec<(f64, &(PathBuf, PathBuf))> = jobs
        .iter()
        .map(|job| {
            let seconds = Reader::open(&job.0)
                .ok()
                .and_then(|(_, spec)| Some(spec.frames? as f64 / spec.sample_rate as f64));
            (seconds.unwrap_or(f64::INFINITY), job)
        })
        .collect();
    timed.sort_by(|a, b| a.0.total_cmp(&b.0));
    timed
        .chunks(batch.max(1))
        .map(|g| g.iter().map(|(_, job)| (*job).clone()).collect())
        .collect()
}

/// Runs `task` on several files as one batch: their channels run side by side through the model,
/// each file padded with silence after its end and cropped back, so a GPU gets work in
/// large pieces. Memory stays bounded as for one file. Returns one result per job; a file
/// that fails does not stop the others.
pub fn denoise_together(
    model: &Model,
    jobs: &[(PathBuf, PathBuf)],
    progress: bool,
    workers: usize,
    task: Task,
) -> Vec<Result<String>> {
    let started = Instant::now();
    let mut lanes: Vec<Result<Lane>> = jobs
        .iter()
        .map(|(input, output)| Lane::open(model, input, output, task))
        .collect();
    let run = run_lanes(model, &mut lanes, progress, workers);
    let took = started.elapsed().as_secs_f64();
    let together = if jobs.len() > 1 {
        format!(", in a batch of {}", jobs.len())
    } else {
        String::new()
    };
    lanes
        .into_iter()
        .zip(jobs)
        .map(|(lane, (_, output))| {
            let mut lane = lane?;
            let tmp = lane.tmp.clone();
            let note = if lane.note.is_empty() {
                String::new()
            } else {
                format!("; {}", lane.note)
            };
            let done = match (&run, lane.failed.take()) {
                (Err(e), _) => Err(anyhow::anyhow!("{e:#}")),
                (_, Some(e)) => Err(e),
                (Ok(()), None) => lane.commit(output),
            };
            match done {
                Ok(seconds) => Ok(format!(
                    "{seconds:.1} s of audio in {took:.1} s, {:.0}x real time{together}{note}",
                    seconds / took.max(1e-9)
                )),
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    Err(e.context(format!("{} was not written", output.display())))
                }
            }
        })
        .collect()
}

/// One file on its way through a batch: its reader, its way to the model's rate and back
/// (the plugin's stream's own, [`RateBridge`], so the band above the model's comes back as
/// it does there), its writer.
struct Lane {
    reader: Reader,
    spec: Spec,
    bridge: RateBridge,
    task: Task,
    writer: Writer,
    tmp: PathBuf,
    /// Model-rate input not yet given to the model.
    pending: Vec<Vec<f32>>,
    /// Model-rate samples the file has (so far), and model outputs kept for it so far.
    real: usize,
    kept: usize,
    frames_in: u64,
    ended: bool,
    failed: Option<anyhow::Error>,
    /// Frames on their way to the writer.
    out: Vec<Vec<f32>>,
    written: u64,
    /// How the output's format differs from the input's, for the summary line.
    note: String,
    /// Broadcast WAV chunks of a WAV input, for a WAV output.
    metadata: Vec<bwf::Chunk>,
}

impl Lane {
    fn open(model: &Model, input: &Path, output: &Path, task: Task) -> Result<Self> {
        let (reader, spec) = Reader::open(input)?;
        let model_rate = model.config().sample_rate;
        if task == Task::Restore && spec.sample_rate != model_rate {
            anyhow::bail!(
                "{} is at {} Hz: 2-bit restoration takes the sign of {model_rate} Hz speech, \
                 at {model_rate} Hz (`wavecrn compress-2bit` makes one from any file)",
                input.display(),
                spec.sample_rate
            );
        }
        let tmp = wavecrn_engine::io::hidden_sibling(output, "partial")
            .context("output has no file name")?;
        let (ch, model_rate) = (spec.channels, model.config().sample_rate as f64);
        let written = output_spec(&spec, output);
        Ok(Self {
            bridge: RateBridge::new(spec.sample_rate as f64, model_rate, ch, false)?,
            task,
            writer: Writer::create(&tmp, &written)?,
            note: conversion_note(&spec, &written),
            metadata: if (spec.container, written.container) == (Container::Wav, Container::Wav) {
                bwf::read_kept(input).with_context(|| format!("cannot read {}", input.display()))?
            } else {
                vec![]
            },
            tmp,
            pending: planar(ch),
            real: 0,
            kept: 0,
            frames_in: 0,
            ended: false,
            failed: None,
            out: planar(ch),
            written: 0,
            reader,
            spec,
        })
    }

    /// Reads and converts the next block; at the end of the file, flushes the converter.
    fn read(&mut self, raw: &mut [Vec<f32>]) -> Result<()> {
        clear(raw);
        let n = self.reader.read(READ_FRAMES, raw)?;
        let to_model = if n == 0 {
            self.ended = true;
            self.bridge.end_input()?
        } else {
            self.frames_in += n as u64;
            if self.task == Task::Restore {
                for c in raw.iter_mut() {
                    c[..n].iter_mut().for_each(|v| *v = two_bit::sign(*v));
                }
            }
            self.bridge.input(&slices(raw))?
        };
        for (p, v) in self.pending.iter_mut().zip(to_model) {
            p.extend_from_slice(v);
        }
        self.real += to_model[0].len();
        Ok(())
    }

    /// Takes the model's output for this file's channels, drops what lies past the file's
    /// end (padding), converts back and writes what is final.
    fn take(&mut self, clean: &mut [Vec<f32>], last: bool) -> Result<()> {
        let useful = clean[0].len().min(self.real - self.kept);
        self.kept += useful;
        for c in clean.iter_mut() {
            c.truncate(useful);
        }
        self.bridge.output(&slices(clean))?;
        if last {
            self.bridge.end_output()?;
        }
        let (total, hold) = (self.frames_in, if last { 0 } else { HOLD });
        let left = (total - self.written) as usize;
        if last {
            self.bridge.pad(left);
        }
        // Hold the last few frames back until the input's length is known: the output is
        // exactly as long as the input, whatever rounding the conversions did.
        let ready = self.bridge.ready(hold).min(left);
        for (k, o) in self.out.iter_mut().enumerate() {
            o.clear();
            o.extend((0..ready).map(|i| match self.task {
                Task::Denoise { share } => {
                    let denoised = self.bridge.mixed(k, i);
                    // Full reduction writes the denoised sample itself, not a blend that
                    // rounds to it.
                    if share >= 1.0 {
                        denoised
                    } else {
                        wavecrn_engine::reduction::blend(self.bridge.dry(k, i), denoised, share)
                    }
                }
                // Restored speech is the model's output alone: the sign input has no band
                // or share worth keeping.
                Task::Restore => self.bridge.wet(k, i),
            }));
        }
        self.writer.write(&slices(&self.out))?;
        self.bridge.consume(ready);
        self.written += ready as u64;
        Ok(())
    }

    /// Finishes the file and moves it into place; returns its length in seconds.
    fn commit(self, output: &Path) -> Result<f64> {
        self.writer.finish()?;
        bwf::insert_before_data(&self.tmp, &self.metadata)?;
        commit_file(&self.tmp, output)?;
        Ok(self.frames_in as f64 / self.spec.sample_rate as f64)
    }
}

/// Completes the file written at `tmp` and moves it to `output`.
fn commit(writer: Writer, tmp: &Path, output: &Path) -> Result<()> {
    writer.finish()?;
    commit_file(tmp, output)
}

/// Moves the completed file at `tmp` to `output`.
fn commit_file(tmp: &Path, output: &Path) -> Result<()> {
    // hound flushes but does not sync: make sure the bytes are on disk before the rename.
    std::fs::File::open(tmp)?.sync_all()?;
    std::fs::rename(tmp, output)
        .with_context(|| format!("cannot move the result to {}", output.display()))
}

/// Writes the paper's 2-bit version of `input` to `output`, the input a restore model
/// takes: the file converted to `rate` Hz (the model's), then the sign of each sample, as
/// 16-bit samples in the input's container and channels. Returns a one-line summary.
pub fn compress_2bit(input: &Path, output: &Path, rate: u32) -> Result<String> {
    let (mut reader, spec) = Reader::open(input)?;
    let tmp =
        wavecrn_engine::io::hidden_sibling(output, "partial").context("output has no file name")?;
    let two_bit = Spec {
        sample_rate: rate,
        encoding: Encoding::Int(16),
        frames: None,
        ..output_spec(&spec, output)
    };
    let written = (|| -> Result<f64> {
        let mut writer = Writer::create(&tmp, &two_bit)?;
        let mut down = StreamResampler::new(spec.sample_rate as f64, rate as f64, spec.channels)?;
        let (mut raw, mut low) = (planar(spec.channels), planar(spec.channels));
        let mut frames = 0u64;
        loop {
            clear(&mut raw);
            let n = reader.read(READ_FRAMES, &mut raw)?;
            if n == 0 {
                down.finish(&mut low)?;
            } else {
                frames += n as u64;
                down.process(&slices(&raw), &mut low)?;
            }
            for c in low.iter_mut() {
                c.iter_mut().for_each(|v| *v = two_bit::sign(*v));
            }
            writer.write(&slices(&low))?;
            clear(&mut low);
            if n == 0 {
                break;
            }
        }
        commit(writer, &tmp, output)?;
        Ok(frames as f64 / spec.sample_rate as f64)
    })();
    match written {
        Ok(seconds) => Ok(format!("{seconds:.1} s of audio, 2-bit at {rate} Hz")),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e.context(format!("{} was not written", output.display())))
        }
    }
}

/// Frames held back by each lane until its input's length is known.
const HOLD: usize = 16;

/// Runs every lane that opened through one chunked denoiser, channels side by side.
fn run_lanes(
    model: &Model,
    lanes: &mut [Result<Lane>],
    progress: bool,
    workers: usize,
) -> Result<()> {
    let mut live: Vec<&mut Lane> = lanes.iter_mut().filter_map(|l| l.as_mut().ok()).collect();
    if live.is_empty() {
        return Ok(());
    }
    let channels: usize = live.iter().map(|l| l.spec.channels).sum();
    let mut denoiser =
        ChunkedDenoiser::new(model, channels, Chunking::for_model(model))?.with_jobs(workers);
    let bar = progress_bar(&live[0].spec, progress && live.len() == 1);
    let mut raw: Vec<Vec<Vec<f32>>> = live.iter().map(|l| planar(l.spec.channels)).collect();
    let mut clean = planar(channels);
    loop {
        for (lane, raw) in live.iter_mut().zip(&mut raw) {
            if !lane.ended {
                if let Err(e) = lane.read(raw) {
                    // This file stops here and will not be written; the batch goes on.
                    lane.failed = Some(e);
                    lane.ended = true;
                }
            }
        }
        bar.set_position(live[0].frames_in);
        let all_ended = live.iter().all(|l| l.ended);
        // Feed as much as every lane still reading can give; lanes past their end give
        // silence.
        let n = live
            .iter()
            .filter(|l| !l.ended)
            .map(|l| l.pending[0].len())
            .min()
            .unwrap_or_else(|| live.iter().map(|l| l.pending[0].len()).max().unwrap_or(0));
        let mut feed: Vec<Vec<f32>> = Vec::with_capacity(channels);
        for lane in live.iter_mut() {
            for p in &mut lane.pending {
                let take = n.min(p.len());
                let mut v: Vec<f32> = p.drain(..take).collect();
                v.resize(n, 0.0);
                feed.push(v);
            }
        }
        denoiser.push(&slices(&feed), &mut clean)?;
        if all_ended {
            denoiser.finish(&mut clean)?;
        }
        let mut from = 0;
        for lane in live.iter_mut() {
            let ch = lane.spec.channels;
            if lane.failed.is_none() {
                if let Err(e) = lane.take(&mut clean[from..from + ch], all_ended) {
                    lane.failed = Some(e);
                }
            }
            from += ch;
        }
        clear(&mut clean);
        if all_ended {
            break;
        }
    }
    bar.finish_and_clear();
    Ok(())
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
