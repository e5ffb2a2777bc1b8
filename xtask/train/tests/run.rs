//! A training run as a user drives it: it writes its files, refuses to clobber a run,
//! resumes to exactly what an uninterrupted run reaches, its best checkpoint exports to a
//! model the engine loads, and bad data folders are clear errors.

use std::path::{Path, PathBuf};
use std::process::Command;

use wavecrn_engine::onnx_export::{to_onnx_bytes, ModelInfo};
use wavecrn_engine::{LoadOptions, Model, TensorFile, Weights};
use wavecrn_tests::fixture;

fn train(run_dir: &Path, steps: u32, extra: &[&str]) -> std::process::Output {
    let data = fixture("metrics");
    let d = data.to_str().unwrap();
    let steps = steps.to_string();
    let mut args = vec![
        "train",
        "--speech",
        d,
        "--noise",
        d,
        "--valid-speech",
        d,
        "--valid-noise",
        d,
        "--valid-files",
        "2",
        "--valid-every",
        "5",
        "--channels",
        "16",
        "--layers",
        "2",
        "--batch",
        "2",
        "--steps",
        &steps,
        "--run-dir",
        run_dir.to_str().unwrap(),
    ];
    args.extend(extra);
    let out = Command::new(env!("CARGO_BIN_EXE_wavecrn-train"))
        .args(&args)
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
    assert!(train(&split, 10, &[]).status.success());
    for f in [
        "config.json",
        "checkpoint.safetensors",
        "best.safetensors",
        "metrics.jsonl",
    ] {
        assert!(split.join(f).exists(), "{f}");
    }
    let out = train(&split, 15, &[]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--resume"));
    assert!(train(&split, 15, &["--resume"]).status.success());
    assert!(train(&whole, 15, &[]).status.success());
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
