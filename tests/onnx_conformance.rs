//! Exported files are standard ONNX, with float32 or float16 weights: `onnx.checker` accepts
//! them and onnxruntime reproduces the PyTorch reference with them. Runs the Python checker in the test venv that
//! `cargo xtask test` sets up.

use std::path::PathBuf;
use std::process::Command;

use wavecrn_engine::model_file::{store_weights_as_f16, to_onnx_bytes, ModelInfo};
use wavecrn_engine::Weights;
use wavecrn_tests::{reference_cases, repo_root};

/// The venv's Python, or `None` (with a message) where it is not set up. `cargo xtask test`
/// sets it up and sets WAVECRN_REQUIRE_ONNX_CHECK, so there a missing venv fails.
fn python() -> Option<PathBuf> {
    let path = std::env::var_os("WAVECRN_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("WAVECRN_REQUIRE_ONNX_CHECK").is_none(),
        "no Python at {}: run `cargo xtask test`, which installs onnx and onnxruntime",
        path.display()
    );
    eprintln!(
        "SKIPPED: no Python with onnx at {} (run `cargo xtask test`)",
        path.display()
    );
    None
}

#[test]
fn exported_models_pass_onnx_checker_and_onnxruntime() {
    let Some(python) = python() else { return };
    let dir = std::env::temp_dir().join(format!("wavecrn-onnx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = reference_cases();
    let mut args = vec![repo_root().join("tests/python/check_onnx.py")];
    for reference in cases {
        let stem = reference
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let bytes = to_onnx_bytes(&Weights::read(&reference).unwrap(), &ModelInfo::default());
        // Each also with its weights stored as float16.
        let half = store_weights_as_f16(&bytes).unwrap();
        for (name, bytes) in [(stem.clone(), bytes), (format!("{stem}-f16"), half)] {
            let onnx = dir.join(name).with_extension("onnx");
            std::fs::write(&onnx, bytes).unwrap();
            args.extend([onnx, reference.clone()]);
        }
    }
    let out = Command::new(&python).args(&args).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("{text}");
    assert!(out.status.success(), "the ONNX check failed:\n{text}");
    assert_eq!(text.matches("passes onnx.checker").count(), args.len() / 2);
    let _ = std::fs::remove_dir_all(dir);
}
