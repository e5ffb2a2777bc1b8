//! `wavecrn denoise` as a user runs it: real speech files in, files of the same format out,
//! and clear errors that lose nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use wavecrn_engine::model_file::{to_onnx_bytes, ModelInfo};
use wavecrn_engine::{LoadOptions, Model, Weights};
use wavecrn_tests::{fixture, repo_root, shared};

fn wavecrn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wavecrn"))
}

/// A scratch folder per test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wavecrn-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The small bidirectional reference model as an ONNX file.
fn model_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let w = Weights::read(fixture("reference/small_bidir.safetensors")).unwrap();
        let path =
            std::env::temp_dir().join(format!("wavecrn-cli-{}-model.onnx", std::process::id()));
        std::fs::write(&path, to_onnx_bytes(&w, &ModelInfo::default())).unwrap();
        path
    })
}

fn run(args: &[&str]) -> Output {
    let out = wavecrn().args(args).output().unwrap();
    eprintln!(
        "wavecrn {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `wavecrn denoise INPUT -o OUTPUT --model MODEL EXTRA...`
fn denoise(input: &Path, output: &Path, model: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["denoise", s(input), "-o", s(output), "--model", s(model)];
    args.extend(extra);
    run(&args)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn read_flac(path: &Path) -> (claxon::metadata::StreamInfo, Vec<i32>) {
    let mut r = claxon::FlacReader::open(path).unwrap();
    let info = r.streaminfo();
    let samples = r.samples().map(|s| s.unwrap()).collect();
    (info, samples)
}

fn write_wav(path: &Path, spec: hound::WavSpec, frames: &[Vec<f32>]) {
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..frames[0].len() {
        for ch in frames {
            match spec.sample_format {
                hound::SampleFormat::Float => w.write_sample(ch[i]).unwrap(),
                hound::SampleFormat::Int => {
                    let full = (1i64 << (spec.bits_per_sample - 1)) as f32;
                    w.write_sample((ch[i] * full).round().clamp(-full, full - 1.0) as i32)
                        .unwrap()
                }
            }
        }
    }
    w.finalize().unwrap();
}

const PCM16_MONO: hound::WavSpec = hound::WavSpec {
    channels: 1,
    sample_rate: 16_000,
    bits_per_sample: 16,
    sample_format: hound::SampleFormat::Int,
};

fn read_wav(path: &Path) -> (hound::WavSpec, Vec<Vec<f32>>) {
    let mut r = hound::WavReader::open(path).unwrap();
    let spec = r.spec();
    let ch = spec.channels as usize;
    let mut out = vec![vec![]; ch];
    match spec.sample_format {
        hound::SampleFormat::Float => r
            .samples::<f32>()
            .enumerate()
            .for_each(|(i, v)| out[i % ch].push(v.unwrap())),
        hound::SampleFormat::Int => {
            let full = (1i64 << (spec.bits_per_sample - 1)) as f32;
            r.samples::<i32>()
                .enumerate()
                .for_each(|(i, v)| out[i % ch].push(v.unwrap() as f32 / full))
        }
    }
    (spec, out)
}

/// Deterministic noise.
fn noise(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            ((s >> 8) as f32 / (1 << 24) as f32 - 0.5) * 0.2
        })
        .collect()
}

fn speech_file() -> Option<PathBuf> {
    shared("data/speech/valid/librispeech-test-other/1688_1688-142285-0000.flac")
}

#[test]
fn flac_speech_at_16k_matches_the_engine_exactly() {
    let Some(input) = speech_file() else { return };
    let dir = scratch("flac");
    let output = dir.join("out.flac");
    assert!(denoise(&input, &output, model_path(), &[]).status.success());

    let (info_in, x) = read_flac(&input);
    let (info_out, y) = read_flac(&output);
    assert_eq!(
        (
            info_out.sample_rate,
            info_out.channels,
            info_out.bits_per_sample
        ),
        (
            info_in.sample_rate,
            info_in.channels,
            info_in.bits_per_sample
        )
    );
    assert_eq!(info_out.samples, Some(x.len() as u64), "header length");
    assert_eq!(y.len(), x.len());

    // The file fits one window, so the CLI's output is the engine's, quantised to 16 bits.
    let model = Model::from_bytes(
        &std::fs::read(model_path()).unwrap(),
        &LoadOptions::default(),
    )
    .unwrap();
    let xf: Vec<f32> = x.iter().map(|&v| v as f32 / 32768.0).collect();
    let want = model.denoise(&xf, 1).unwrap();
    let worst = y
        .iter()
        .zip(&want)
        .map(|(&a, &b)| (a as f32 / 32768.0 - b).abs())
        .fold(0.0, f32::max);
    assert!(worst <= 1.0 / 32768.0, "differs from the engine by {worst}");
}

#[test]
fn wav_formats_rates_and_channels_are_kept() {
    let dir = scratch("wav");
    let n = 44_100 * 2 + 123;
    let left = noise(n, 1);
    for (bits, format, rate) in [
        (24, hound::SampleFormat::Int, 44_100),
        (32, hound::SampleFormat::Float, 48_000),
        (16, hound::SampleFormat::Int, 8_000),
        (8, hound::SampleFormat::Int, 22_050),
    ] {
        let spec = hound::WavSpec {
            channels: 3,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: format,
        };
        let input = dir.join(format!("in-{bits}-{rate}.wav"));
        // Channels 0 and 2 are the same signal: channels are denoised independently, so they
        // must come out the same; channel 1 is silent.
        write_wav(&input, spec, &[left.clone(), vec![0.0; n], left.clone()]);
        let out_dir = dir.join("out");
        assert!(run(&[
            "denoise",
            s(&input),
            "--out-dir",
            s(&out_dir),
            "--model",
            s(model_path()),
            "--quiet"
        ])
        .status
        .success());
        let (got_spec, y) = read_wav(&out_dir.join(input.file_name().unwrap()));
        assert_eq!(got_spec, spec);
        assert_eq!(y[0].len(), n, "length at {rate} Hz");
        assert_eq!(y[0], y[2], "identical channels stay identical");
        assert_ne!(y[0], y[1]);
        assert!(y.iter().flatten().all(|v| v.is_finite()));
    }
}

#[test]
fn nan_and_inf_in_float_input_do_not_reach_the_output() {
    let dir = scratch("nan");
    let mut x = noise(16_000, 5);
    x[100] = f32::NAN;
    x[2000] = f32::INFINITY;
    x[9000] = f32::NEG_INFINITY;
    let input = dir.join("in.wav");
    write_wav(
        &input,
        hound::WavSpec {
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
            ..PCM16_MONO
        },
        &[x],
    );
    let output = dir.join("out.wav");
    assert!(denoise(&input, &output, model_path(), &[]).status.success());
    let (_, y) = read_wav(&output);
    assert!(y[0].iter().all(|v| v.is_finite() && v.abs() <= 1.0));
}

#[test]
fn a_long_file_runs_in_bounded_memory() {
    // 40 minutes at 16 kHz: 154 MB of f32 if held whole, several times that through the
    // pipeline's stages. Twice the length must not need more memory.
    let short = peak_mib(20);
    let long = peak_mib(40);
    eprintln!("peak resident memory: {short} MiB for 20 min of audio, {long} MiB for 40 min");
    assert!(long < 200, "peak memory {long} MiB for 40 min");
    assert!(
        long <= short + 16,
        "memory grows with the length: {short} MiB for 20 min, {long} MiB for 40 min"
    );
}

/// The CLI's peak resident memory, in MiB, denoising `minutes` of 16 kHz audio.
fn peak_mib(minutes: usize) -> u64 {
    let dir = scratch(&format!("long{minutes}"));
    let input = dir.join("long.wav");
    let n = minutes * 60 * 16_000;
    {
        let mut w = hound::WavWriter::create(&input, PCM16_MONO).unwrap();
        let mut i16w = w.get_i16_writer(n as u32);
        // Generated as it is written: the test process must stay small, since a spawned
        // child's peak memory counts what it shared with its parent before exec.
        let mut seed = 9u32;
        for i in 0..n {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            let v =
                ((seed >> 8) as f32 / (1 << 24) as f32 - 0.5) * 0.2 + 0.1 * (i as f32 * 0.01).sin();
            i16w.write_sample((v * 32767.0) as i16);
        }
        i16w.flush().unwrap();
        w.finalize().unwrap();
    }
    let output = dir.join("out.wav");
    let mut child = wavecrn()
        .args([
            "denoise",
            s(&input),
            "-o",
            s(&output),
            "--model",
            s(model_path()),
            "--quiet",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The child's own high-water mark (VmHWM belongs to the memory map exec gave it, so
    // unlike rusage it does not count what the forked test process held), read until it
    // exits; the last reading is its peak.
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            if let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            {
                peak_kib = kib;
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert!(status.success());
    assert_eq!(
        hound::WavReader::open(&output).unwrap().duration() as usize,
        n
    );
    let _ = std::fs::remove_dir_all(dir);
    peak_kib / 1024
}

#[test]
fn an_existing_output_is_refused_without_force() {
    let dir = scratch("exists");
    let input = dir.join("in.wav");
    write_wav(&input, PCM16_MONO, &[noise(4000, 2)]);
    let output = dir.join("out.wav");
    std::fs::write(&output, b"precious").unwrap();
    let out = denoise(&input, &output, model_path(), &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert_eq!(std::fs::read(&output).unwrap(), b"precious");
    assert!(denoise(&input, &output, model_path(), &["--force"])
        .status
        .success());
    assert!(hound::WavReader::open(&output).is_ok());
}

#[test]
fn unreadable_input_is_a_clear_error_and_writes_nothing() {
    let dir = scratch("unreadable");
    let cases: [(&str, &[u8], &str); 3] = [
        (
            "garbage.wav",
            b"this is not audio at all",
            "unsupported audio format",
        ),
        ("truncated.flac", b"fLaC\0\0", "FLAC"),
        ("empty.wav", b"", "cannot read"),
    ];
    for (name, bytes, message) in cases {
        let input = dir.join(name);
        std::fs::write(&input, bytes).unwrap();
        let output = dir.join(format!("out-{name}"));
        let out = denoise(&input, &output, model_path(), &[]);
        assert!(!out.status.success(), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "{name}");
        // The file is named, once.
        let first = err.lines().next().unwrap_or("");
        assert_eq!(first.matches(name).count(), 1, "{first}");
        assert!(!output.exists(), "{name}: no output");
    }
    let out = run(&[
        "denoise",
        s(&dir.join("missing.wav")),
        "--model",
        s(model_path()),
    ]);
    assert!(!out.status.success());
    // Nothing half-written is left in the folder.
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty());
}

/// A WAV whose header promises more data than the file holds is denoised as far as the data
/// goes (a frame cut in the middle dropped), with one warning, as sox reads it.
#[test]
fn a_truncated_wav_is_denoised_as_far_as_it_goes() {
    let dir = scratch("truncated");
    let input = dir.join("cut.wav");
    let stereo = hound::WavSpec {
        channels: 2,
        ..PCM16_MONO
    };
    write_wav(&input, stereo, &[noise(16_000, 5), noise(16_000, 6)]);
    let bytes = std::fs::read(&input).unwrap();
    // 44 header bytes, then 10,000 whole frames of 4 bytes and half of the next.
    std::fs::write(&input, &bytes[..44 + 10_000 * 4 + 2]).unwrap();
    let output = dir.join("out.wav");
    let out = denoise(&input, &output, model_path(), &["--quiet"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("warning").count(), 1, "{err}");
    assert!(err.contains("ends before its header says"), "{err}");
    let (spec, y) = read_wav(&output);
    assert_eq!(spec.channels, 2);
    assert_eq!(y[0].len(), 10_000);
}

#[test]
fn a_corrupt_or_foreign_model_is_a_clear_error() {
    let dir = scratch("model");
    let input = dir.join("in.wav");
    write_wav(&input, PCM16_MONO, &[noise(4000, 2)]);
    let good = std::fs::read(model_path()).unwrap();
    let truncated = dir.join("truncated.onnx");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    let garbage = dir.join("garbage.onnx");
    std::fs::write(&garbage, b"\xff\xfe not a protobuf at all \x01\x02").unwrap();
    for (model, message) in [
        (&truncated, "not an ONNX file"),
        (&garbage, "not an ONNX file"),
        (&dir.join("missing.onnx"), "cannot read"),
    ] {
        let output = dir.join("out.wav");
        let out = denoise(&input, &output, model, &[]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "{model:?}: {err}");
        assert!(!output.exists());
    }
}

/// The built-in models by name, each the bytes the engine embeds; `wavecrn models` lists them
/// with their cards' headlines, and an unknown name says what there is.
#[test]
fn built_in_models_are_chosen_by_name() {
    let dir = scratch("by-name");
    let input = dir.join("in.wav");
    let x = noise(16_000, 4);
    write_wav(&input, PCM16_MONO, std::slice::from_ref(&x));
    let denoisers = wavecrn_engine::shipped::MODELS
        .iter()
        .filter(|m| m.task == wavecrn_engine::shipped::Task::Denoise);
    for m in denoisers {
        let output = dir.join(format!("{}.wav", m.name));
        let out = run(&[
            "denoise",
            s(&input),
            "-o",
            s(&output),
            "--quiet",
            "--model",
            m.name,
        ]);
        assert!(out.status.success(), "{}", m.name);
        let want = Model::from_bytes(m.bytes, &LoadOptions::default())
            .unwrap()
            .denoise(&x, 1)
            .unwrap();
        let (_, y) = read_wav(&output);
        let worst = y[0]
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-3, "{}: {worst}", m.name);
    }
    let out = run(&["models"]);
    assert!(out.status.success());
    let listing = String::from_utf8_lossy(&out.stdout);
    for m in wavecrn_engine::shipped::MODELS {
        assert!(
            listing.contains(m.name) && listing.contains(&m.headline()),
            "{listing}"
        );
    }
    let out = run(&["denoise", s(&input), "--model", "loud"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("quality, low-latency"), "{err}");
}

/// `--reduction` and `--noise-floor` blend the input with the fully denoised output as the
/// plugin's Reduction does: 0 % is the input, 50 % halfway, and a 20 dB floor keeps a tenth
/// of what the model removes.
#[test]
fn reduction_and_noise_floor_blend_with_the_input() {
    let dir = scratch("reduction");
    let input = dir.join("in.wav");
    let float = hound::WavSpec {
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
        ..PCM16_MONO
    };
    let x = noise(16_000, 9);
    write_wav(&input, float, std::slice::from_ref(&x));
    let render = |extra: &[&str]| {
        let output = dir.join(format!("out{}.wav", extra.join("")));
        let out = denoise(
            &input,
            &output,
            model_path(),
            &[&["--quiet"], extra].concat(),
        );
        assert!(out.status.success(), "{extra:?}");
        read_wav(&output).1.pop().unwrap()
    };
    let full = render(&[]);
    let none = render(&["--reduction", "0"]);
    let half = render(&["--reduction", "50"]);
    let floor = render(&["--noise-floor", "20"]);
    assert_eq!(none, x, "0 % is the input");
    for i in 0..x.len() {
        assert!((half[i] - (x[i] + 0.5 * (full[i] - x[i]))).abs() < 1e-5);
        assert!((floor[i] - (x[i] + 0.9 * (full[i] - x[i]))).abs() < 1e-5);
    }
    assert!(full.iter().zip(&x).any(|(a, b)| (a - b).abs() > 1e-3));
    let out = run(&["denoise", s(&input), "--reduction", "150"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("percentage"));
}

#[test]
fn without_a_model_the_shipped_one_is_used() {
    let dir = scratch("shipped");
    let input = dir.join("in.wav");
    let x = noise(16_000, 3);
    write_wav(&input, PCM16_MONO, std::slice::from_ref(&x));
    let output = dir.join("out.wav");
    let out = run(&["denoise", s(&input), "-o", s(&output), "--quiet"]);
    assert!(out.status.success());
    let (_, y) = read_wav(&output);
    assert_eq!(y[0].len(), x.len());
    assert!(
        y[0].iter().zip(&x).any(|(a, b)| (a - b).abs() > 1e-3),
        "the model changed the audio"
    );
}

#[test]
fn a_full_disk_is_a_clear_error_and_leaves_no_partial_file() {
    // A file-size limit makes writes fail as a full disk does (SIGXFSZ ignored, so the write
    // returns an error instead of killing the process).
    let Some(input) = speech_file() else { return };
    let dir = scratch("full");
    let output = dir.join("out.flac");
    let script = format!(
        "trap '' XFSZ; ulimit -f 64; exec '{}' denoise '{}' -o '{}' --model '{}'",
        env!("CARGO_BIN_EXE_wavecrn"),
        s(&input),
        s(&output),
        s(model_path())
    );
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("{err}");
    assert!(!out.status.success());
    assert!(err.contains("was not written"), "{err}");
    assert!(
        std::fs::read_dir(&dir).unwrap().next().is_none(),
        "nothing left behind"
    );
}

#[test]
fn readme_names_the_cli() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    assert!(readme.contains("wavecrn denoise"));
}

/// Files of different lengths, rates and channel counts denoised as one batch come out as
/// they do one by one: same format and length, and nearly the same samples.
#[test]
fn a_batch_of_files_matches_the_files_one_by_one() {
    let dir = scratch("batch");
    let mut inputs = vec![];
    for (i, (rate, channels, seconds)) in [(16_000, 1, 2.3), (48_000, 2, 1.1), (44_100, 1, 3.7)]
        .into_iter()
        .enumerate()
    {
        let n = (rate as f64 * seconds) as usize;
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let path = dir.join(format!("in{i}.wav"));
        let frames: Vec<Vec<f32>> = (0..channels)
            .map(|c| noise(n, 10 + i as u32 + c as u32))
            .collect();
        write_wav(&path, spec, &frames);
        inputs.push(path);
    }
    let (alone, together) = (dir.join("alone"), dir.join("together"));
    for (out, batch) in [(&alone, "1"), (&together, "8")] {
        let mut args = vec!["denoise"];
        args.extend(inputs.iter().map(|p| s(p)));
        args.extend([
            "--out-dir",
            s(out),
            "--model",
            s(model_path()),
            "--quiet",
            "--batch",
            batch,
        ]);
        assert!(run(&args).status.success());
    }
    for input in &inputs {
        let name = input.file_name().unwrap();
        let ((sa, a), (sb, b)) = (read_wav(&alone.join(name)), read_wav(&together.join(name)));
        assert_eq!(sa, sb);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.len(), y.len());
            let err: f64 = x.iter().zip(y).map(|(p, q)| ((p - q) as f64).powi(2)).sum();
            let sig: f64 = x.iter().map(|p| (*p as f64).powi(2)).sum();
            let snr = 10.0 * (sig / err.max(1e-30)).log10();
            // The backward recurrence enters a shorter file from the silence padded after
            // it, so the two differ slightly; a misaligned or mis-cropped batch would not
            // come near this.
            assert!(
                snr > 25.0,
                "{name:?}: batched differs from alone, {snr:.1} dB"
            );
        }
    }
}

/// `--device auto` without a usable GPU runs on the CPU: without a word about GPUs where
/// there is no NVIDIA driver at all, with a one-line note where a driver is there but
/// unusable. `--device cuda` without one is a clear error that writes nothing.
#[test]
fn device_choice_falls_back_or_refuses_clearly() {
    let Err(why) = wavecrn_engine::device::cuda_available() else {
        eprintln!("skipped: this machine has a usable GPU");
        return;
    };
    let no_driver = why.to_string().contains("driver library not found");
    let dir = scratch("device");
    let input = dir.join("in.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    write_wav(&input, spec, &[noise(16_000, 3)]);
    let (auto, cuda) = (dir.join("auto.wav"), dir.join("cuda.wav"));
    let out = denoise(&input, &auto, model_path(), &["--device", "auto"]);
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    if no_driver {
        assert!(!said.contains("GPU") && !said.contains("CUDA"), "{said}");
    } else {
        assert!(said.contains("running on the CPU"), "{said}");
        assert_eq!(said.matches("GPU").count(), 1, "one line: {said}");
    }
    assert!(auto.exists());
    let out = denoise(&input, &cuda, model_path(), &["--device", "cuda"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("CUDA"), "{err}");
    assert!(!cuda.exists());
}

#[test]
fn any_number_of_jobs_gives_the_same_file() {
    // 95 s, stereo: four 30 s windows, the last one short.
    let dir = scratch("jobs");
    let input = dir.join("in.wav");
    let n = 95 * 16_000;
    let spec = hound::WavSpec {
        channels: 2,
        ..PCM16_MONO
    };
    write_wav(&input, spec, &[noise(n, 11), noise(n, 12)]);
    let written = |jobs: &str| {
        let output = dir.join(format!("out{jobs}.wav"));
        let out = run(&[
            "denoise",
            s(&input),
            "-o",
            s(&output),
            "--jobs",
            jobs,
            "--quiet",
        ]);
        assert!(out.status.success(), "--jobs {jobs}");
        std::fs::read(&output).unwrap()
    };
    let one = written("1");
    for jobs in ["2", "3"] {
        assert!(written(jobs) == one, "--jobs {jobs} wrote a different file");
    }
}

/// SI-SDR of `estimate` against `target`, in dB.
fn si_sdr(target: &[f32], estimate: &[f32]) -> f64 {
    let dot: f64 = target
        .iter()
        .zip(estimate)
        .map(|(t, e)| (*t * *e) as f64)
        .sum();
    let energy: f64 = target.iter().map(|t| (*t * *t) as f64).sum();
    let k = dot / energy;
    let (mut signal, mut error) = (0.0, 0.0);
    for (t, e) in target.iter().zip(estimate) {
        let s = k * *t as f64;
        signal += s * s;
        error += (*e as f64 - s).powi(2);
    }
    10.0 * (signal / error).log10()
}

/// `compress-2bit` writes the sign of each sample at 16 kHz: of the speech fixture exactly its
/// committed 2-bit version, and of a 48 kHz stereo file a third as many frames per channel,
/// each a full-scale sign.
#[test]
fn compress_2bit_writes_the_sign_at_16k() {
    let dir = scratch("compress");
    let two_bit = dir.join("speech.2bit.wav");
    let out = run(&[
        "compress-2bit",
        s(&fixture("restore/speech.wav")),
        "-o",
        s(&two_bit),
    ]);
    assert!(out.status.success());
    let (spec, got) = read_wav(&two_bit);
    let (want_spec, want) = read_wav(&fixture("restore/speech-2bit.wav"));
    assert_eq!(spec, want_spec);
    assert_eq!(got, want);
    let (_, speech) = read_wav(&fixture("restore/speech.wav"));
    for (g, x) in got[0].iter().zip(&speech[0]) {
        assert_eq!(g.signum(), x.signum(), "{g} for {x}");
        assert!(*x == 0.0 || g.abs() > 0.999, "{g} for {x}");
    }

    let stereo = dir.join("stereo48k.wav");
    let spec48 = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        ..PCM16_MONO
    };
    let n = 48_000;
    write_wav(&stereo, spec48, &[noise(n, 5), noise(n, 6)]);
    let out = run(&["compress-2bit", s(&stereo), "--quiet"]);
    assert!(out.status.success());
    let (spec, got) = read_wav(&dir.join("stereo48k.2bit.wav"));
    assert_eq!((spec.sample_rate, spec.channels), (16_000, 2));
    assert_eq!(got[0].len(), n / 3);
    assert!(got.iter().flatten().all(|v| *v == 0.0 || v.abs() > 0.999));
}

/// `restore` runs the embedded restore model on a sign file without a path: its output is the
/// engine's for the same model, and closer to the speech than the sign was. What is not a
/// 16 kHz file, or a model for the other task, is refused before anything is written.
#[test]
fn restore_brings_speech_back_from_its_sign() {
    let dir = scratch("restore");
    let input = fixture("restore/speech-2bit.wav");
    let output = dir.join("restored.wav");
    let out = run(&["restore", s(&input), "-o", s(&output), "--quiet"]);
    assert!(out.status.success());
    let (spec, restored) = read_wav(&output);
    assert_eq!((spec.sample_rate, spec.channels), (16_000, 1));
    let (_, sign) = read_wav(&input);
    let model =
        Model::from_bytes(wavecrn_engine::shipped::RESTORE, &LoadOptions::default()).unwrap();
    let exact: Vec<f32> = sign[0].iter().map(|v| v.signum()).collect();
    let want = model.denoise(&exact, 1).unwrap();
    assert_eq!(restored[0].len(), want.len());
    // The file path runs the model on its chunk, padded with silence after the file's end,
    // which the backward recurrence enters from: close to the whole-signal run, not equal.
    let agreement = si_sdr(&want, &restored[0]);
    eprintln!("file path against the whole-signal run: {agreement:.1} dB");
    assert!(agreement > 25.0, "{agreement}");
    let (_, speech) = read_wav(&fixture("restore/speech.wav"));
    let (before, after) = (si_sdr(&speech[0], &exact), si_sdr(&speech[0], &restored[0]));
    eprintln!("SI-SDR against the speech: sign {before:.2} dB, restored {after:.2} dB");
    assert!(after > before + 1.0, "{before} -> {after}");

    let loud = dir.join("loud48k.wav");
    let spec48 = hound::WavSpec {
        sample_rate: 48_000,
        ..PCM16_MONO
    };
    write_wav(&loud, spec48, &[noise(4800, 7)]);
    let refused = dir.join("never.wav");
    let out = run(&["restore", s(&loud), "-o", s(&refused)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("48000 Hz") && err.contains("compress-2bit"),
        "{err}"
    );
    assert!(!refused.exists());
    let out = run(&["denoise", s(&loud), "-o", s(&refused), "--model", "restore"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("wavecrn restore"));
    let out = run(&[
        "restore",
        s(&input),
        "-o",
        s(&refused),
        "--model",
        "quality",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("wavecrn denoise"));
    assert!(!refused.exists());
}

/// MP3, AAC (M4A and ADTS), Ogg Vorbis and Ogg Opus in (the fixtures ffmpeg made from
/// `tests/fixtures/formats/original.wav`), lossless out: a WAV by default and for `.wav`,
/// FLAC for `.flac`, never a lossy file; one that cannot be decoded leaves nothing.
#[test]
fn lossy_inputs_come_out_lossless() {
    let dir = scratch("lossy");
    for name in [
        "speech.mp3",
        "speech.m4a",
        "speech.aac",
        "speech.ogg",
        "speech.opus",
    ] {
        let input = dir.join(name);
        std::fs::copy(fixture(&format!("formats/{name}")), &input).unwrap();
        let out = run(&["denoise", s(&input), "--model", s(model_path())]);
        assert!(out.status.success(), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("decoded, written as 24-bit WAV"),
            "{name}: {err}"
        );
        let stem = name.split('.').next().unwrap();
        let ext = name.rsplit('.').next().unwrap();
        let written = dir.join(format!("{stem}.denoised.wav"));
        let r = hound::WavReader::open(&written).unwrap();
        assert_eq!(
            (r.spec().sample_rate, r.spec().bits_per_sample),
            (48_000, 24)
        );
        assert!(r.duration() >= 96_000, "{name}: {} frames", r.duration());
        std::fs::rename(&written, dir.join(format!("{stem}-{ext}.wav"))).unwrap();
    }
    let input = dir.join("speech.mp3");
    let flac = dir.join("out.flac");
    assert!(denoise(&input, &flac, model_path(), &[]).status.success());
    assert_eq!(read_flac(&flac).0.bits_per_sample, 24);
    let out = denoise(&input, &dir.join("out.mp3"), model_path(), &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("WAV or FLAC"));
    assert!(!dir.join("out.mp3").exists());
    // An ID3 tag and then nothing an MP3 decoder can use.
    let bad = dir.join("bad.mp3");
    std::fs::write(
        &bad,
        b"ID3\x04\x00\x00\x00\x00\x00\x00this is no audio at all",
    )
    .unwrap();
    let out = denoise(&bad, &dir.join("bad.wav"), model_path(), &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.mp3"));
    assert!(!dir.join("bad.wav").exists());
    let _ = std::fs::remove_dir_all(dir);
}

/// The RIFF chunk ids of a WAV file, in order, with their bodies.
fn riff_chunks(bytes: &[u8]) -> Vec<([u8; 4], Vec<u8>)> {
    let mut at = 12;
    let mut out = vec![];
    while at + 8 <= bytes.len() {
        let id = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let end = (at + 8 + size).min(bytes.len());
        out.push((id, bytes[at + 8..end].to_vec()));
        at += 8 + size + (size & 1);
    }
    out
}

/// A field recorder's Broadcast WAV: its `bext` and `iXML` chunks come through denoising
/// byte for byte, before the audio, and the output still reads as a WAV file.
#[test]
fn broadcast_wav_metadata_is_kept() {
    let dir = scratch("bwf");
    let plain = dir.join("plain.wav");
    write_wav(&plain, PCM16_MONO, &[noise(16_000, 3)]);
    let mut bytes = std::fs::read(&plain).unwrap();
    let data = bytes.windows(4).position(|w| w == b"data").unwrap();
    let mut bext = vec![0u8; 602];
    bext[..11].copy_from_slice(b"Scene 12 T3");
    bext[338..346].copy_from_slice(&1_234_567u64.to_le_bytes());
    let ixml = b"<BWFXML><SCENE>12</SCENE><TAKE>3</TAKE></BWFXML>".to_vec(); // odd length
    let mut metadata = vec![];
    for (id, body) in [(b"bext", &bext), (b"iXML", &ixml)] {
        metadata.extend_from_slice(id);
        metadata.extend_from_slice(&(body.len() as u32).to_le_bytes());
        metadata.extend_from_slice(body);
        if body.len() % 2 == 1 {
            metadata.push(0);
        }
    }
    bytes.splice(data..data, metadata);
    let riff = (bytes.len() - 8) as u32;
    bytes[4..8].copy_from_slice(&riff.to_le_bytes());
    let input = dir.join("take.wav");
    std::fs::write(&input, &bytes).unwrap();
    let output = dir.join("take-out.wav");
    assert!(denoise(&input, &output, model_path(), &[]).status.success());
    let out = std::fs::read(&output).unwrap();
    let chunks = riff_chunks(&out);
    let ids: Vec<&[u8; 4]> = chunks.iter().map(|(id, _)| id).collect();
    let at = |id: &[u8; 4]| ids.iter().position(|i| *i == id);
    let data_at = at(b"data").expect("a data chunk");
    for (id, body) in [(b"bext", &bext), (b"iXML", &ixml)] {
        let i = at(id).unwrap_or_else(|| panic!("{} lost", String::from_utf8_lossy(id)));
        assert!(i < data_at, "metadata after the audio");
        assert_eq!(&chunks[i].1, body);
    }
    assert_eq!(
        u32::from_le_bytes(out[4..8].try_into().unwrap()) as usize,
        out.len() - 8
    );
    let r = hound::WavReader::open(&output).unwrap();
    assert_eq!(r.duration(), 16_000);
    let _ = std::fs::remove_dir_all(dir);
}
