//! Whole files and folders of audio, for the tools that load their audio at once (training,
//! evaluation, benches): every supported format, as mono at the rate asked for.

use std::path::Path;

use anyhow::{Context, Result};
use wavecrn_engine::resample::StreamResampler;

use crate::file::{Reader, Spec, READ_FRAMES};

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
        out.push((stem(&f), mono));
    }
    Ok(out)
}

/// A file's name without its extension: how folders of audio are paired and named.
pub fn stem(path: &Path) -> String {
    path.file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
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
    while reader.read(READ_FRAMES, &mut out)? > 0 {}
    Ok((spec, out))
}
