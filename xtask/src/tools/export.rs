//! `cargo xtask export`: safetensors weights in, a standard ONNX file out (weights as float32,
//! or float16 with `--f16`). Given an ONNX file instead, it rewrites that file's weights as
//! float16.

use std::path::PathBuf;

use anyhow::Context;
use wavecrn_engine::model_file::{store_weights_as_f16, to_onnx_bytes, ModelInfo};
use wavecrn_engine::Weights;

#[derive(clap::Args)]
pub struct Args {
    /// Weights with the reference names (a training checkpoint or a reference-vector file),
    /// or an ONNX model to store as float16.
    weights: PathBuf,
    /// Where to write the ONNX model.
    #[arg(short, long)]
    output: PathBuf,
    /// Model name stored in the metadata (defaults to the output file's stem).
    #[arg(long)]
    name: Option<String>,
    /// Model version stored in the metadata.
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    version: String,
    /// Store the weights as float16 (half the file; the graph computes in float32).
    #[arg(long)]
    f16: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.weights.extension().is_some_and(|e| e == "onnx") {
        anyhow::ensure!(args.f16, "an ONNX input is only rewritten with --f16");
        let bytes = std::fs::read(&args.weights)
            .with_context(|| format!("reading {}", args.weights.display()))?;
        let half = store_weights_as_f16(&bytes)?;
        wavecrn_engine::io::write_atomically(&args.output, &half)
            .with_context(|| format!("writing {}", args.output.display()))?;
        eprintln!(
            "wrote {} ({:.1} MB, from {:.1} MB)",
            args.output.display(),
            half.len() as f64 / 1e6,
            bytes.len() as f64 / 1e6
        );
        return Ok(());
    }
    let weights = Weights::read(&args.weights)?;
    let name = args.name.unwrap_or_else(|| {
        args.output
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let mut bytes = to_onnx_bytes(
        &weights,
        &ModelInfo {
            name,
            version: args.version,
        },
    );
    if args.f16 {
        bytes = store_weights_as_f16(&bytes)?;
    }
    wavecrn_engine::io::write_atomically(&args.output, &bytes)
        .with_context(|| format!("writing {}", args.output.display()))?;
    let cfg = &weights.config;
    eprintln!(
        "wrote {} ({} parameters, {} channels, {} layers, {} direction(s))",
        args.output.display(),
        cfg.parameter_count(),
        cfg.channels,
        cfg.layers,
        cfg.directions
    );
    Ok(())
}
