//! The engine reproduces the original PyTorch WaveCRN: output and every intermediate of the
//! reference vectors within 1e-4, for tract's plain Scan and for every fused kernel. And the
//! GPU speed baseline (`tests/python/sru_baseline.py`, the original network on PyTorch + sru)
//! reproduces the same vectors, where a Python with torch and sru is named.

use std::path::Path;

use wavecrn_engine::model_file::{to_onnx_bytes, ModelInfo};
use wavecrn_engine::sru::Kernel;
use wavecrn_engine::{LoadOptions, Model, RecurrencePath, TensorFile, Weights};
use wavecrn_tests::{fixture, reference_cases, repo_root, shared};

const TOLERANCE: f32 = 1e-4;

fn paths() -> Vec<RecurrencePath> {
    let mut p = vec![RecurrencePath::Scan];
    p.extend(Kernel::available().into_iter().map(RecurrencePath::Fused));
    p
}

/// (B, C, T) reference layout from the engine's time-major (T, B, C) SRU outputs.
fn time_major_to_channels_major(shape: &[usize], data: &[f32]) -> Vec<f32> {
    let [t, b, c] = shape[..] else {
        panic!("expected a 3-D tensor, got {shape:?}")
    };
    let mut out = vec![0.0; data.len()];
    for ti in 0..t {
        for bi in 0..b {
            for ci in 0..c {
                out[(bi * c + ci) * t + ti] = data[(ti * b + bi) * c + ci];
            }
        }
    }
    out
}

fn check_case(path: &Path) {
    let file = TensorFile::read(path).unwrap();
    let weights = Weights::read(path).unwrap();
    let layers = weights.config.layers;
    let onnx = to_onnx_bytes(&weights, &ModelInfo::default());
    let input = file.get("input").unwrap();
    let batch = input.shape[0];

    let mut taps: Vec<String> = ["act.conv", "act.mask", "act.masked", "act.deconv"]
        .map(String::from)
        .to_vec();
    taps.extend((0..layers).map(|i| format!("sru.{i}.output")));
    for recurrence in paths() {
        let model = Model::from_bytes(
            &onnx,
            &LoadOptions {
                recurrence,
                taps: taps.clone(),
                ..LoadOptions::default()
            },
        )
        .unwrap();
        let ops = model.operators();
        let count = |name: &str| ops.iter().filter(|o| o.as_str() == name).count();
        match recurrence {
            RecurrencePath::Scan => assert_eq!(count("Scan"), layers, "{ops:?}"),
            RecurrencePath::Fused(_) => {
                assert_eq!(
                    (count("SruRecurrence"), count("Scan")),
                    (layers, 0),
                    "{ops:?}"
                )
            }
        }
        let outputs = model.run_raw(&input.data, batch).unwrap();
        let mut worst = 0f32;
        for ((shape, got), name) in outputs
            .iter()
            .zip(std::iter::once(&"output".to_string()).chain(&taps))
        {
            let (reference, got) = match name.strip_prefix("sru.") {
                Some(rest) => {
                    let layer = rest.split('.').next().unwrap();
                    (
                        file.get(&format!("act.sru.{layer}")).unwrap(),
                        time_major_to_channels_major(shape, got),
                    )
                }
                None => {
                    let r = file.get(name).unwrap();
                    assert_eq!(shape, &r.shape, "{name} shape");
                    (r, got.clone())
                }
            };
            assert_eq!(got.len(), reference.data.len(), "{name} size");
            let err = got
                .iter()
                .zip(&reference.data)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(
                err <= TOLERANCE,
                "{}: {name} differs by {err} with {recurrence:?}",
                path.display()
            );
            worst = worst.max(err);
        }
        eprintln!(
            "{}: {recurrence:?}: output and {} intermediates within {worst:.2e}",
            path.display(),
            taps.len()
        );
    }
}

#[test]
fn small_bidirectional_matches_reference() {
    check_case(&fixture("reference/small_bidir.safetensors"));
}

#[test]
fn small_causal_matches_reference() {
    check_case(&fixture("reference/small_causal.safetensors"));
}

#[test]
fn paper_configuration_matches_reference() {
    if let Some(path) = shared("reference/paper_bidir.safetensors") {
        check_case(&path);
    }
}

/// On a GPU (tract-cuda, with the recurrence on the CPU between device copies), the output
/// of every reference case matches the reference within the same tolerance. Skips where no
/// GPU is usable.
#[test]
fn gpu_output_matches_reference() {
    if let Err(why) = wavecrn_engine::device::cuda_available() {
        eprintln!("skipped: {why}");
        return;
    }
    let cases = reference_cases();
    for path in cases {
        let file = TensorFile::read(&path).unwrap();
        let onnx = to_onnx_bytes(&Weights::read(&path).unwrap(), &ModelInfo::default());
        let options = LoadOptions {
            device: wavecrn_engine::Device::Cuda,
            ..LoadOptions::default()
        };
        let model = Model::from_bytes(&onnx, &options).unwrap();
        let input = file.get("input").unwrap();
        let (_, got) = model
            .run_raw(&input.data, input.shape[0])
            .unwrap()
            .swap_remove(0);
        let reference = &file.get("output").unwrap().data;
        let err = got
            .iter()
            .zip(reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        eprintln!("{}: CUDA output within {err:.2e}", path.display());
        assert!(
            err <= TOLERANCE,
            "{}: CUDA differs by {err}",
            path.display()
        );
    }
}

/// Weights stored as float16 (`cargo xtask export --f16`) load into the same fused graph and
/// give the float32 file's output to float16 precision.
#[test]
fn float16_weights_run_the_same_graph() {
    let weights = Weights::read(fixture("reference/small_bidir.safetensors")).unwrap();
    let f32_bytes = to_onnx_bytes(&weights, &ModelInfo::default());
    let f16_bytes = wavecrn_engine::model_file::store_weights_as_f16(&f32_bytes).unwrap();
    assert!(
        f16_bytes.len() * 10 < f32_bytes.len() * 6,
        "about half the size"
    );
    let full = Model::from_bytes(&f32_bytes, &LoadOptions::default()).unwrap();
    let half = Model::from_bytes(&f16_bytes, &LoadOptions::default()).unwrap();
    assert_eq!(full.operators(), half.operators(), "the casts fold away");
    let x: Vec<f32> = (0..4800)
        .map(|i| (i as f32 * 0.031).sin() * 0.3 + (i as f32 * 0.0071).cos() * 0.1)
        .collect();
    let (a, b) = (full.denoise(&x, 1).unwrap(), half.denoise(&x, 1).unwrap());
    let worst = a
        .iter()
        .zip(&b)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f32::max);
    let peak = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    eprintln!("float16 weights: worst difference {worst:.2e} (output peak {peak:.2})");
    assert!(worst > 0.0 && worst < 1e-2 * peak.max(0.1), "{worst}");
}

/// The PyTorch + sru baseline that `cargo xtask gpu-check --baseline` times is the same
/// network as the reference: it gives every case's output to 1e-4 on the CPU. Needs a Python
/// with torch and sru 2.3.5 in `WAVECRN_TORCH_PYTHON` (torch's wheel is gigabytes, so the
/// test setup does not install it); skips with a message without one.
#[test]
fn the_pytorch_sru_baseline_is_the_reference_network() {
    let Some(python) = std::env::var_os("WAVECRN_TORCH_PYTHON") else {
        eprintln!("SKIPPED: set WAVECRN_TORCH_PYTHON to a Python with torch and sru==2.3.5");
        return;
    };
    let cases = reference_cases();
    let out = std::process::Command::new(python)
        .arg(repo_root().join("tests/python/sru_baseline.py"))
        .args([
            "--device",
            "cpu",
            "--batch",
            "1",
            "--seconds",
            "1",
            "--runs",
            "1",
        ])
        .arg("--check")
        .args(&cases)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("{text}");
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches(": ok").count(), cases.len(), "{text}");
    assert!(text.contains("baseline-rtf: "));
}
