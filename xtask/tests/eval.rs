//! `cargo xtask eval` end to end: paired folders at any rate, enhanced folders, models side by
//! side, JSON and CSV outputs, and the fixed validation set.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn xtask(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .current_dir(root())
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{stdout}{stderr}");
    assert!(out.status.success(), "xtask {args:?} failed");
    stdout
}

fn copy_as_rate(from: &Path, to: &Path, rate: u32) {
    // Resampling is the CLI's business; here a 16 kHz file is written at 48 kHz by repeating
    // each sample three times, which is enough to prove the evaluator converts rates.
    let mut r = hound::WavReader::open(from).unwrap();
    let spec = r.spec();
    let samples: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => r.samples::<f32>().map(|s| s.unwrap()).collect(),
        hound::SampleFormat::Int => r
            .samples::<i16>()
            .map(|s| s.unwrap() as f32 / 32768.0)
            .collect(),
    };
    let factor = (rate / 16_000) as usize;
    let out_spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(to, out_spec).unwrap();
    for s in samples {
        for _ in 0..factor {
            w.write_sample(s).unwrap();
        }
    }
    w.finalize().unwrap();
}

/// `clean`, `noisy` and an empty `enhanced` folder under `dir`, one fixture pair in the
/// first two as `a.wav`.
fn paired_folders(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (clean, noisy, enhanced) = (dir.join("clean"), dir.join("noisy"), dir.join("enhanced"));
    for d in [&clean, &noisy, &enhanced] {
        std::fs::create_dir_all(d).unwrap();
    }
    let fixtures = root().join("tests/fixtures/metrics");
    std::fs::copy(fixtures.join("pesq_ref.wav"), clean.join("a.wav")).unwrap();
    std::fs::copy(fixtures.join("pesq_deg_babble0db.wav"), noisy.join("a.wav")).unwrap();
    (clean, noisy, enhanced)
}

#[test]
fn paired_folders_json_csv_and_enhanced() {
    let dir = std::env::temp_dir().join(format!("wavecrn-eval-{}", std::process::id()));
    let (clean, noisy, enhanced) = paired_folders(&dir);
    let fixtures = root().join("tests/fixtures/metrics");
    // The enhanced "system" is the clean file itself, at 48 kHz.
    copy_as_rate(
        &fixtures.join("pesq_ref.wav"),
        &enhanced.join("a.wav"),
        48_000,
    );
    let (json, csv) = (dir.join("scores.json"), dir.join("scores.csv"));
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let table = xtask(&[
        "eval",
        "--noisy",
        &s(&noisy),
        "--clean",
        &s(&clean),
        "--enhanced",
        &s(&enhanced),
        "--json",
        &s(&json),
        "--csv",
        &s(&csv),
    ]);
    assert!(table.contains("PESQ") && table.contains("noisy"));

    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for key in [
        "pesq", "pesq_nb", "csig", "cbak", "covl", "ssnr", "stoi", "estoi", "si_sdr", "files",
        "per_file",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    // The noisy row is the reference pair of expected.json (pesq_wb 1.0832).
    assert!((v["noisy"]["pesq"].as_f64().unwrap() - 1.0832).abs() < 0.01);
    // Clean scored against itself: near-perfect.
    assert!(v["pesq"].as_f64().unwrap() > 4.4, "{}", v["pesq"]);
    assert!(v["stoi"].as_f64().unwrap() > 0.99);
    assert_eq!(v["files"].as_u64(), Some(1));
    let rows = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(
        rows.lines().count(),
        1 + 2,
        "header plus one row per system and file"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn validation_set_with_models_side_by_side() {
    if !root().join("../shared/data/speech/valid").exists() {
        eprintln!("SKIPPED: ../shared/data is absent");
        return;
    }
    let dir = std::env::temp_dir().join(format!("wavecrn-eval-models-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut models = vec![];
    for case in ["small_bidir", "small_causal"] {
        let out = dir.join(format!("{case}.onnx"));
        let weights = root().join(format!("tests/fixtures/reference/{case}.safetensors"));
        xtask(&[
            "export",
            weights.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
        models.push(out.to_str().unwrap().to_string());
    }
    let json = dir.join("v.json");
    let mut args = vec![
        "eval",
        "--limit",
        "4",
        "--json",
        json.to_str().unwrap(),
        "--compare",
    ];
    args.extend(models.iter().map(String::as_str));
    let table = xtask(&args);
    assert!(table.contains("small_bidir") && table.contains("small_causal"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["systems"].as_array().unwrap().len(), 3);
    assert_eq!(v["files"].as_u64(), Some(4));
    let _ = std::fs::remove_dir_all(dir);
}

/// `--task restore` scores against the sign-compressed clean speech, not the noisy files.
#[test]
fn the_restoration_task_scores_the_sign_compressed_input() {
    let dir = std::env::temp_dir().join(format!("wavecrn-eval-restore-{}", std::process::id()));
    let (clean, noisy, enhanced) = paired_folders(&dir);
    let fixtures = root().join("tests/fixtures/metrics");
    std::fs::copy(fixtures.join("pesq_ref.wav"), enhanced.join("a.wav")).unwrap();
    let json = dir.join("scores.json");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let table = xtask(&[
        "eval",
        "--task",
        "restore",
        "--noisy",
        &s(&noisy),
        "--clean",
        &s(&clean),
        "--enhanced",
        &s(&enhanced),
        "--json",
        &s(&json),
    ]);
    assert!(table.contains("sign input"), "{table}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // The input row is the clean speech's own sign, scored against it.
    let speech = wavecrn_audio::folder::read_mono(&clean.join("a.wav"), 16_000).unwrap();
    let sign = wavecrn_metrics::validation::sign_compress(&speech);
    let expected = wavecrn_metrics::si_sdr(&speech, &sign).unwrap();
    let input = v["noisy"]["si_sdr"].as_f64().unwrap();
    assert!((input - expected).abs() < 1e-3, "{input} vs {expected}");
    assert!(v["noisy"]["pesq"].as_f64().unwrap() < 3.0);
    assert!(v["pesq"].as_f64().unwrap() > 4.4);
    let _ = std::fs::remove_dir_all(dir);
}

/// `--peers` scores RNNoise in the same run, and every run prints the spectral error per band
/// and the scores by noise type; the JSON carries the band errors.
#[test]
fn peers_band_errors_and_noise_types() {
    if !root().join("../shared/data/speech/valid").exists() {
        eprintln!("SKIPPED: ../shared/data is absent");
        return;
    }
    let dir = std::env::temp_dir().join(format!("wavecrn-eval-peers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("p.json");
    let table = xtask(&[
        "eval",
        "--model",
        "models/wavecrn-denoise-causal.onnx",
        "--peers",
        "--limit",
        "6",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(table.contains("RNNoise (nnnoiseless)"), "{table}");
    assert!(
        table.contains("spectral error") && table.contains("6k-8k"),
        "{table}"
    );
    assert!(
        table.contains("by noise type") && table.contains("competing talkers"),
        "{table}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let systems = v["systems"].as_array().unwrap();
    assert_eq!(systems.len(), 3);
    for s in systems {
        let bands = s["band_error_db"].as_object().unwrap();
        assert_eq!(bands.len(), 7);
        assert!(bands.values().all(|e| e.as_f64().unwrap().is_finite()));
    }
    // The noisy input's own spectrum is above the clean speech's: the noise adds energy.
    let noisy = systems[0]["band_error_db"].as_object().unwrap();
    assert!(
        noisy.values().all(|e| e.as_f64().unwrap() > 0.0),
        "{noisy:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
