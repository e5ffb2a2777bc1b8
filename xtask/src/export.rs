//! `cargo xtask export`: safetensors weights in, a standard ONNX file out.

use std::path::PathBuf;

use anyhow::Context;
use wavecrn_engine::onnx_export::{to_onnx_bytes, ModelInfo};
use wavecrn_engine::Weights;

#[derive(clap::Args)]
pub struct Args {
    /// Weights with the reference names (a training checkpoint or a reference-vector file).
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
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let weights = Weights::read(&args.weights)?;
    let name = args.name.unwrap_or_else(|| {
        args.output
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let bytes = to_onnx_bytes(
        &weights,
        &ModelInfo {
            name,
            version: args.version,
        },
    );
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
