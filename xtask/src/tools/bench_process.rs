//! The whole-process row of `cargo xtask bench`: `wavecrn denoise` on a minute of audio, as a
//! user runs it, with the paper configuration, at one job and at every core: wall, user and
//! system time, minor page faults and peak resident memory of the child process (its own
//! rusage, from `wait4`). With `--python`, the original PyTorch + sru forward pass on the same
//! length of audio at the same thread counts, and the ratio.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// What one child process used.
struct Usage {
    wall: f64,
    user: f64,
    sys: f64,
    minor_faults: i64,
    peak_mb: f64,
}

/// Runs `cmd` to the end and reads its own resource usage.
fn measure(cmd: &mut Command) -> Result<Usage> {
    let started = Instant::now();
    let child = cmd.spawn().context("cannot start the command")?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child, which `child`
    // has not waited for.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let got = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed().as_secs_f64();
    if got != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("the command failed (status {status})");
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    Ok(Usage {
        wall,
        user: secs(usage.ru_utime),
        sys: secs(usage.ru_stime),
        minor_faults: usage.ru_minflt,
        // Linux reports kilobytes.
        peak_mb: usage.ru_maxrss as f64 / 1024.0,
    })
}

/// A 16-bit mono WAV of `seconds` of deterministic noise at 16 kHz.
fn write_wav(path: &Path, seconds: f64, samples: &[f32]) -> Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    for &v in samples.iter().take((seconds * 16_000.0) as usize) {
        w.write_sample((v.clamp(-1.0, 1.0) * 32767.0) as i16)?;
    }
    w.finalize()?;
    Ok(())
}

/// The row: `onnx` is the paper configuration's graph, `audio` at least `seconds` of 16 kHz
/// samples.
pub fn run(onnx: &[u8], audio: &[f32], seconds: f64, python: Option<&Path>) -> Result<()> {
    let wavecrn = super::wavecrn_binary()?;
    let dir = std::env::temp_dir().join(format!("wavecrn-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (model, input, output) = (
        dir.join("paper.onnx"),
        dir.join("in.wav"),
        dir.join("out.wav"),
    );
    std::fs::write(&model, onnx)?;
    write_wav(&input, seconds, audio)?;
    let cores = wavecrn_engine::offline::cores();
    let mut counts = vec![1];
    if cores > 1 {
        counts.push(cores);
    }
    println!(
        "whole process, `wavecrn denoise` on {seconds:.0} s of 16 kHz audio, paper configuration:"
    );
    for &jobs in &counts {
        let u = measure(
            Command::new(&wavecrn)
                .args(["denoise", "--quiet", "--force", "--device", "cpu", "--jobs"])
                .arg(jobs.to_string())
                .arg("--model")
                .arg(&model)
                .arg(&input)
                .arg("-o")
                .arg(&output),
        )?;
        let baseline = match python {
            Some(py) => Some(pytorch_forward(py, seconds, jobs)?),
            None => None,
        };
        println!(
            "  {jobs} job(s): wall {:.2} s, user {:.2} s, sys {:.2} s, {} minor page faults, peak RSS {:.0} MB{}",
            u.wall,
            u.user,
            u.sys,
            u.minor_faults,
            u.peak_mb,
            baseline.map_or(String::new(), |b| format!(
                "; PyTorch + sru forward on {jobs} thread(s) {b:.2} s: ratio {:.2}",
                u.wall / b
            ))
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Seconds the original network's forward pass takes on `seconds` of audio with `threads`
/// threads (tests/python/sru_baseline.py, warmed up, median of 3).
fn pytorch_forward(python: &Path, seconds: f64, threads: usize) -> Result<f64> {
    let script = crate::root().join("tests/python/sru_baseline.py");
    let out = Command::new(python)
        .arg(&script)
        .args([
            "--device",
            "cpu",
            "--batch",
            "1",
            "--runs",
            "3",
            "--seconds",
        ])
        .arg(seconds.to_string())
        .env("OMP_NUM_THREADS", threads.to_string())
        .env("MKL_NUM_THREADS", threads.to_string())
        .output()
        .context("cannot run the PyTorch baseline")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rtf: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("baseline-rtf:"))
        .with_context(|| {
            // Say why: a missing module or an unloaded kernel is in what it wrote.
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = err.lines().rev().take(6).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!(
                "the baseline ({}) printed no `baseline-rtf:` line; it ended with:\n{}",
                python.display(),
                tail.join("\n")
            )
        })?
        .trim()
        .parse()?;
    Ok(rtf * seconds)
}
