//! What a run keeps on disk and reads back: safetensors files (checkpoints, best weights,
//! traces) written atomically, the weights a run starts from, the data seed a resume must go
//! on with, and the CPU time already spent.

use std::path::Path;

use anyhow::{bail, Context, Result};
use tch::{Kind, Tensor};
use wavecrn_engine::io::write_atomically;
use wavecrn_engine::{ModelConfig, TensorFile, Weights};

use crate::args::RunArgs;
use crate::data;
use crate::model::Net;

/// Writes `named` tensors (plus the network's metadata) as safetensors, atomically.
pub(crate) fn save(
    path: &Path,
    cfg: &ModelConfig,
    named: &[(String, Tensor)],
    extra: &[(&str, String)],
) -> Result<()> {
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = named
        .iter()
        .map(|(n, t)| {
            let t = t.detach().to_kind(Kind::Float).contiguous();
            let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
            let v = Vec::<f32>::try_from(&t.view([-1])).expect("float tensor");
            (
                n.clone(),
                shape,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .expect("valid view"),
            )
        })
        .collect();
    let mut meta: std::collections::HashMap<String, String> = [
        ("bidirectional", (cfg.directions == 2).to_string()),
        ("sample_rate", cfg.sample_rate.to_string()),
        ("config", cfg.to_json()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    meta.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let bytes = safetensors::serialize(views, Some(meta))?;
    write_atomically(path, &bytes)
        .with_context(|| format!("cannot write {} (is the disk full?)", path.display()))
}

pub(crate) fn weights_only(net: &Net) -> Vec<(String, Tensor)> {
    net.params()
        .iter()
        .map(|(k, t)| (k.clone(), t.shallow_clone()))
        .collect()
}

/// Weights from a safetensors file (a checkpoint) or from an exported ONNX model.
pub(crate) fn read_weights(path: &Path) -> Result<Weights> {
    if path.extension().is_some_and(|e| e == "onnx") {
        let bytes = std::fs::read(path)?;
        return Ok(wavecrn_engine::model_file::weights_from_onnx(&bytes)?);
    }
    Ok(Weights::read(path)?)
}

/// The seed of a run's examples: the checkpoint's when resuming (a run's data never changes
/// under it; checkpoints from before the data seed drew with `--seed`), else the one given,
/// else a fresh one.
pub(crate) fn data_seed(a: &RunArgs, checkpoint: Option<&TensorFile>) -> Result<u64> {
    let Some(file) = checkpoint else {
        return Ok(a.data_seed.unwrap_or_else(fresh_seed));
    };
    let recorded = match file.metadata.get("data_seed") {
        Some(s) => s
            .parse()
            .context("the checkpoint's data_seed is not a number")?,
        None => a.seed,
    };
    if a.data_seed.is_some_and(|given| given != recorded) {
        bail!(
            "--data-seed differs from the run's ({recorded}): a resumed run goes on with its own \
             data; leave the option out, or start another --run-dir"
        );
    }
    Ok(recorded)
}

/// A seed no earlier run is likely to have had: the clock's nanoseconds and the process id,
/// mixed.
fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut rng = data::Rng(nanos ^ (u64::from(std::process::id()) << 32));
    rng.next_u64() >> 1
}

/// The run's CPU seconds at its last logged step (0 for a new run).
pub(crate) fn last_logged_cpu(log: &Path) -> f64 {
    std::fs::read_to_string(log)
        .ok()
        .and_then(|text| {
            text.lines().rev().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                v.get("cpu_s")?.as_f64()
            })
        })
        .unwrap_or(0.0)
}
