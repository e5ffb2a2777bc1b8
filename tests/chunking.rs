//! Long signals run in bounded memory and come out (almost) as if run whole.

use wavecrn_engine::model_file::{to_onnx_bytes, ModelInfo};
use wavecrn_engine::offline::{ChunkedDenoiser, Chunking};
use wavecrn_engine::{LoadOptions, Model, Weights};
use wavecrn_tests::fixture;

fn model(case: &str) -> Model {
    let w = Weights::read(fixture(&format!("reference/{case}.safetensors"))).unwrap();
    Model::from_bytes(
        &to_onnx_bytes(&w, &ModelInfo::default()),
        &LoadOptions::default(),
    )
    .unwrap()
}

/// A speech-like test signal: a gliding harmonic tone with syllable-rate amplitude and noise.
fn signal(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|i| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            let t = i as f32 / 16_000.0;
            let f0 = 140.0 + 40.0 * (t * 0.7).sin();
            let env = 0.5 + 0.5 * (t * 2.0 * std::f32::consts::PI * 4.0).sin();
            let voiced: f32 = (1..6)
                .map(|h| (t * f0 * h as f32 * 2.0 * std::f32::consts::PI).sin() / h as f32)
                .sum();
            0.2 * env * voiced + 0.02 * ((s >> 8) as f32 / (1 << 24) as f32 - 0.5)
        })
        .collect()
}

fn snr_db(reference: &[f32], test: &[f32]) -> f64 {
    let p: f64 = reference.iter().map(|&x| (x as f64).powi(2)).sum();
    let e: f64 = reference
        .iter()
        .zip(test)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum();
    10.0 * (p / e.max(1e-30)).log10()
}

/// Windows of 0.3 s with 60 ms of context at 16 kHz: many windows in a short signal.
const SHORT_WINDOWS: Chunking = Chunking {
    chunk: 4800,
    context: 960,
    lookahead: 960,
    fade: 480,
};

fn chunked(model: &Model, x: &[Vec<f32>], sizes: Chunking, piece: usize) -> (Vec<Vec<f32>>, usize) {
    chunked_jobs(model, x, sizes, piece, 1)
}

fn chunked_jobs(
    model: &Model,
    x: &[Vec<f32>],
    sizes: Chunking,
    piece: usize,
    jobs: usize,
) -> (Vec<Vec<f32>>, usize) {
    let mut d = ChunkedDenoiser::new(model, x.len(), sizes)
        .unwrap()
        .with_jobs(jobs);
    let mut out = vec![vec![]; x.len()];
    let mut most = 0;
    for at in (0..x[0].len()).step_by(piece) {
        let end = (at + piece).min(x[0].len());
        let parts: Vec<&[f32]> = x.iter().map(|c| &c[at..end]).collect();
        d.push(&parts, &mut out).unwrap();
        most = most.max(d.buffered());
    }
    d.finish(&mut out).unwrap();
    (out, most)
}

#[test]
fn chunked_output_matches_whole_signal_output() {
    for case in ["small_bidir", "small_causal"] {
        let m = model(case);
        // A causal model needs only what its frames reach after the chunk (as the CLI runs it).
        let lookahead = match case {
            "small_causal" => 4 * m.config().stride,
            _ => 1920,
        };
        let sizes = Chunking {
            chunk: 4800,
            context: 1920,
            lookahead,
            fade: 480,
        };
        for len in [1, 47, 4800, 4800 + 240 + 1920, 23_456, 48_000] {
            let x = vec![signal(len, 1), signal(len, 2)];
            let whole: Vec<f32> = m
                .denoise(&[x[0].clone(), x[1].clone()].concat(), 2)
                .unwrap();
            let (out, _) = chunked(&m, &x, sizes, 1000);
            for ch in 0..2 {
                assert_eq!(out[ch].len(), len, "{case}: length {len}");
                let snr = snr_db(&whole[ch * len..(ch + 1) * len], &out[ch]);
                assert!(
                    snr > 60.0,
                    "{case}: chunked vs whole at length {len}: {snr:.1} dB"
                );
            }
        }
    }
}

#[test]
fn memory_stays_bounded() {
    let sizes = SHORT_WINDOWS;
    let m = model("small_causal");
    let x = vec![signal(200_000, 3)];
    let (out, most) = chunked(&m, &x, sizes, 3000);
    assert_eq!(out[0].len(), 200_000);
    assert!(
        most <= sizes.chunk + 2 * sizes.context + sizes.fade + 3000,
        "buffered {most} samples"
    );
}

#[test]
fn piece_size_does_not_change_the_output() {
    let sizes = SHORT_WINDOWS;
    let m = model("small_bidir");
    let x = vec![signal(30_000, 4)];
    assert_eq!(
        chunked(&m, &x, sizes, 1).0,
        chunked(&m, &x, sizes, 30_000).0
    );
}

#[test]
fn windows_in_parallel_give_the_same_output_bit_for_bit() {
    let sizes = SHORT_WINDOWS;
    let m = model("small_bidir");
    for len in [47, 4800, 23_456, 60_000] {
        let x = vec![signal(len, 5), signal(len, 6)];
        let one = chunked(&m, &x, sizes, 1000).0;
        for (jobs, piece) in [(2, 1000), (3, 7), (16, 60_000)] {
            let (many, most) = chunked_jobs(&m, &x, sizes, piece, jobs);
            assert_eq!(many, one, "length {len}, {jobs} jobs, pieces of {piece}");
            // The input held grows to the windows run at once, no further.
            assert!(
                most <= jobs * sizes.chunk + 2 * sizes.context + sizes.fade + piece,
                "buffered {most} samples with {jobs} jobs"
            );
        }
    }
}
