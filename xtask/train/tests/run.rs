//! A training run as a user drives it: it writes its files, refuses to clobber a run,
//! resumes to exactly what an uninterrupted run reaches, its best checkpoint exports to a
//! model the engine loads, and bad data folders are clear errors.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use wavecrn_engine::model_file::{to_onnx_bytes, ModelInfo};
use wavecrn_engine::{LoadOptions, Model, TensorFile, Weights};
use wavecrn_tests::fixture;

/// The trainer on a tiny model (16 channels, 2 layers, batch 2) that validates on two
/// fixture files every `valid_every` steps; `data` says what it trains on.
fn small_run<S: AsRef<OsStr>>(
    data: impl IntoIterator<Item = S>,
    run_dir: &Path,
    steps: u32,
    valid_every: u32,
) -> Command {
    let d = fixture("metrics");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wavecrn-train"));
    cmd.arg("train")
        .args(data)
        .arg("--valid-speech")
        .arg(&d)
        .arg("--valid-noise")
        .arg(&d)
        .args([
            "--valid-files",
            "2",
            "--valid-every",
            &valid_every.to_string(),
        ])
        .args(["--channels", "16", "--layers", "2", "--batch", "2"])
        .args(["--steps", &steps.to_string(), "--run-dir"])
        .arg(run_dir);
    cmd
}

/// On-the-fly mixtures of the fixture files with themselves.
fn mixtures() -> [OsString; 4] {
    let d = fixture("metrics").into_os_string();
    ["--speech".into(), d.clone(), "--noise".into(), d]
}

fn train(run_dir: &Path, steps: u32, extra: &[&str]) -> std::process::Output {
    let out = small_run(mixtures(), run_dir, steps, 5)
        .args(extra)
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wavecrn-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn a_run_resumes_exactly_and_exports() {
    let (split, whole) = (scratch("split"), scratch("whole"));
    // Warm-up short enough that the cosine decay is under way when the run is cut.
    let schedule = ["--warmup", "3", "--lr-end", "1e-4"];
    assert!(train(
        &split,
        15,
        &[&schedule[..], &["--stop-at", "10", "--data-seed", "77"]].concat()
    )
    .status
    .success());
    for f in [
        "config.toml",
        "curve.png",
        "checkpoint.safetensors",
        "best.safetensors",
        "metrics.jsonl",
    ] {
        assert!(split.join(f).exists(), "{f}");
    }
    assert_eq!(
        TensorFile::read(split.join("checkpoint.safetensors"))
            .unwrap()
            .metadata["step"],
        "10"
    );
    let out = train(&split, 15, &schedule);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--resume"));
    // A resume goes on with the run's own data seed (from the checkpoint), and refuses
    // another.
    let out = train(
        &split,
        15,
        &[&schedule[..], &["--resume", "--data-seed", "78"]].concat(),
    );
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--data-seed"));
    assert!(train(&split, 15, &[&schedule[..], &["--resume"]].concat())
        .status
        .success());
    assert!(train(
        &whole,
        15,
        &[&schedule[..], &["--data-seed", "77"]].concat()
    )
    .status
    .success());
    let (a, b) = (
        TensorFile::read(split.join("checkpoint.safetensors")).unwrap(),
        TensorFile::read(whole.join("checkpoint.safetensors")).unwrap(),
    );
    assert_eq!(
        a.tensors, b.tensors,
        "resumed run differs from the uninterrupted one"
    );
    let log = std::fs::read_to_string(split.join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = log
        .lines()
        .map(|l| {
            l["{\"step\": ".len()..]
                .split(',')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(
        steps,
        (1..=15).collect::<Vec<_>>(),
        "one log line per step, none twice"
    );

    let w = Weights::read(split.join("best.safetensors")).unwrap();
    let model = Model::from_bytes(
        &to_onnx_bytes(&w, &ModelInfo::default()),
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(model.denoise(&vec![0.1; 4800], 1).unwrap().len(), 4800);
    let _ = (
        std::fs::remove_dir_all(split),
        std::fs::remove_dir_all(whole),
    );
}

/// A run started with `--init` from an exported model (float16 storage, as shipped) begins at
/// that model's weights; `--cpu-minutes` stops a long run early with a checkpoint, and the
/// log counts the CPU seconds.
#[test]
fn a_run_starts_from_an_exported_model_and_stops_at_its_cpu_budget() {
    let (first, second, budget) = (scratch("init-a"), scratch("init-b"), scratch("budget"));
    assert!(train(&first, 5, &[]).status.success());
    let w = Weights::read(first.join("checkpoint.safetensors")).unwrap();
    let onnx = first.join("model.onnx");
    let half =
        wavecrn_engine::model_file::store_weights_as_f16(&to_onnx_bytes(&w, &ModelInfo::default()))
            .unwrap();
    std::fs::write(&onnx, half).unwrap();
    // A rate so small that one step leaves the weights where they started.
    let tiny = [
        "--lr", "1e-12", "--lr-end", "1e-12", "--warmup", "0", "--init",
    ];
    let out = train(&second, 1, &[&tiny[..], &[onnx.to_str().unwrap()]].concat());
    assert!(out.status.success());
    let after = Weights::read(second.join("checkpoint.safetensors")).unwrap();
    for (name, t) in w.tensors() {
        for (x, y) in t.data.iter().zip(&after.tensor(name).data) {
            assert!(
                (x - y).abs() <= 1e-3 * x.abs().max(1e-2),
                "{name}: {x} vs {y}"
            );
        }
    }
    let out = train(&budget, 100_000, &["--cpu-minutes", "0.002"]);
    assert!(out.status.success());
    let step: u64 = TensorFile::read(budget.join("checkpoint.safetensors"))
        .unwrap()
        .metadata["step"]
        .parse()
        .unwrap();
    assert!((1..100_000).contains(&step), "stopped at {step}");
    let log = std::fs::read_to_string(budget.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert!(last["cpu_s"].as_f64().unwrap() >= 0.1);
    for d in [first, second, budget] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Two runs from one file, without `--data-seed`, draw different batches (each its own
/// stream, written to its config), and one with the other's seed draws the same ones: a
/// continuation never replays an earlier one's examples unless asked to.
#[test]
fn continuations_of_one_model_see_their_own_data() {
    let base = scratch("stream-base");
    assert!(train(&base, 2, &[]).status.success());
    let init = base.join("checkpoint.safetensors");
    let init = init.to_str().unwrap();
    let runs: Vec<PathBuf> = ["stream-a", "stream-b", "stream-c"]
        .iter()
        .map(|n| scratch(n))
        .collect();
    let seed_of = |run: &Path| -> u64 {
        let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
        let line = config
            .lines()
            .find(|l| l.starts_with("data_seed"))
            .expect("config.toml records the data seed");
        line.split('=').nth(1).unwrap().trim().parse().unwrap()
    };
    let first_loss = |run: &Path| -> f64 {
        let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        let v: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
        v["loss"].as_f64().unwrap()
    };
    // Dropout off: the first loss is then a function of the weights and the batch alone.
    let same = ["--rnn-dropout", "0", "--init", init];
    assert!(train(&runs[0], 1, &same).status.success());
    assert!(train(&runs[1], 1, &same).status.success());
    let seed = seed_of(&runs[0]).to_string();
    assert!(
        train(&runs[2], 1, &[&same[..], &["--data-seed", &seed]].concat())
            .status
            .success()
    );
    assert_ne!(seed_of(&runs[0]), seed_of(&runs[1]));
    assert_ne!(
        first_loss(&runs[0]),
        first_loss(&runs[1]),
        "the same batch twice"
    );
    assert_eq!(first_loss(&runs[0]), first_loss(&runs[2]));
    for d in runs.into_iter().chain([base]) {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn empty_or_missing_data_is_a_clear_error() {
    let empty = scratch("empty-data");
    std::fs::create_dir_all(&empty).unwrap();
    let run = scratch("run");
    let out = Command::new(env!("CARGO_BIN_EXE_wavecrn-train"))
        .args([
            "train",
            "--speech",
            empty.to_str().unwrap(),
            "--noise",
            empty.to_str().unwrap(),
            "--run-dir",
            run.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no WAV or FLAC files"), "{err}");
}

fn write_wav(path: &Path, samples: &[f32]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

/// Speech that is all silence is a clear error; speech shorter than a crop is padded with
/// silence and trains.
#[test]
fn silent_speech_is_an_error_and_short_speech_trains() {
    let root = scratch("odd-speech");
    let (silent, short) = (root.join("silent"), root.join("short"));
    write_wav(&silent.join("quiet.wav"), &[0.0; 16_000]);
    let tone: Vec<f32> = (0..200).map(|i| (i as f32 * 0.3).sin() * 0.5).collect();
    write_wav(&short.join("tiny.wav"), &tone);
    let noise = fixture("metrics").into_os_string();
    let speech_from = |dir: &Path| {
        [
            OsString::from("--speech"),
            dir.into(),
            "--noise".into(),
            noise.clone(),
        ]
    };
    let out = small_run(speech_from(&silent), &root.join("run1"), 2, 2)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("non-silent"), "{err}");
    let out = small_run(speech_from(&short), &root.join("run2"), 2, 2)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(steps_logged(&root.join("run2")), 2);
    let _ = std::fs::remove_dir_all(root);
}

fn steps_logged(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .count()
}

#[test]
fn a_config_file_sets_a_run_and_the_command_line_overrides_it() {
    let (first, again) = (scratch("config-first"), scratch("config-again"));
    let dir = scratch("config-file");
    std::fs::create_dir_all(&dir).unwrap();
    let d = fixture("metrics");
    let config = dir.join("small.toml");
    std::fs::write(
        &config,
        format!(
            "speech = [{d:?}]\nnoise = [{d:?}]\nvalid_speech = {d:?}\nvalid-noise = {d:?}\n\
             valid_files = 2\nvalid_every = 2\nchannels = 16\nlayers = 2\nbatch = 2\n\
             steps = 6\nlr = 2e-3\nsnr = [5, 10]\nclip = 0.5\nrun_dir = {first:?}\n"
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_wavecrn-train"))
            .arg("train")
            .args(args)
            .output()
            .unwrap();
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        out
    };
    assert!(run(&["--config", config.to_str().unwrap(), "--steps", "3"])
        .status
        .success());
    assert_eq!(steps_logged(&first), 3, "--steps on the command line wins");
    let written = std::fs::read_to_string(first.join("config.toml")).unwrap();
    for line in [
        "steps = 3",
        "lr = 0.002",
        "channels = 16",
        "clip = 0.5",
        "snr = [5.0, 10.0]",
    ] {
        assert!(written.contains(line), "{line} missing from:\n{written}");
    }
    // The written config repeats the run exactly.
    let repeat = run(&[
        "--config",
        first.join("config.toml").to_str().unwrap(),
        "--run-dir",
        again.to_str().unwrap(),
    ]);
    assert!(repeat.status.success());
    let weights = |r: &Path| {
        TensorFile::read(r.join("checkpoint.safetensors"))
            .unwrap()
            .tensors
    };
    assert_eq!(weights(&first), weights(&again));

    std::fs::write(&config, "lr = 1e-3\nlearning_rate = 1e-3\n").unwrap();
    let out = run(&[
        "--config",
        config.to_str().unwrap(),
        "--run-dir",
        again.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("unknown setting `learning_rate`"),
        "{err}"
    );
    for d in [first, again, dir] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn restoration_trains_from_speech_alone() {
    let run = scratch("restore");
    let d = fixture("metrics").into_os_string();
    let data = ["--task".into(), "restore".into(), "--speech".into(), d];
    let out = small_run::<OsString>(data, &run, 2, 2).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("task = \"restore\""), "{config}");
    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(log.contains("valid_si_sdr"));
    let _ = std::fs::remove_dir_all(run);
}

#[test]
fn fixed_pairs_train_and_unmatched_names_are_an_error() {
    let root = scratch("pairs");
    let (noisy, clean) = (root.join("noisy"), root.join("clean"));
    for dir in [&noisy, &clean] {
        std::fs::create_dir_all(dir).unwrap();
        for f in std::fs::read_dir(fixture("metrics")).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "flac" || e == "wav") {
                std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
            }
        }
    }
    let pairs_run = |run: &Path| {
        let data = [OsStr::new("--pairs"), noisy.as_os_str(), clean.as_os_str()];
        small_run(data, run, 2, 2).output().unwrap()
    };
    let out = pairs_run(&root.join("run"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(steps_logged(&root.join("run")), 2);

    let extra = std::fs::read_dir(&clean)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::rename(&extra, clean.join("only-clean.wav")).unwrap();
    let out = pairs_run(&root.join("run2"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("file of that name"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(root);
}

/// A disk that fills mid-run (a file-size limit, which fails writes as a full disk does):
/// a clear error, the last checkpoint intact, and the run resumes once there is room.
#[test]
fn a_full_disk_stops_the_run_cleanly_and_loses_nothing() {
    let run = scratch("full-disk");
    assert!(train(&run, 5, &[]).status.success());
    let before = TensorFile::read(run.join("checkpoint.safetensors")).unwrap();
    let mut cmd = small_run(mixtures(), &run, 10, 5);
    cmd.arg("--resume");
    // SAFETY: setrlimit is async-signal-safe; it runs in the child between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 16 * 1024,
                rlim_max: libc::RLIM_INFINITY,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("is the disk full?"), "{err}");
    let after = TensorFile::read(run.join("checkpoint.safetensors")).unwrap();
    assert_eq!(after.metadata["step"], "5");
    assert_eq!(
        before.tensors, after.tensors,
        "the checkpoint was not touched"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(train(&run, 10, &["--resume"]).status.success());
    assert_eq!(steps_logged(&run), 10);
    let _ = std::fs::remove_dir_all(run);
}
