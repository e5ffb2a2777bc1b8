//! A loaded WaveCRN model: an ONNX file read by tract, its Scans swapped for the fused SRU
//! kernel, optimised and ready to run.

use std::path::Path;
use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::{bail, TractErrorContext};
use tract_onnx::tract_core::runtime::Runnable;

use crate::config::ModelConfig;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::model_file::{self, INPUT, META_NAME, META_VERSION, OUTPUT};
use crate::sru::{op::fuse_recurrences, Kernel};

/// How the SRU recurrence runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecurrencePath {
    /// The engine's fused kernel (the default: the fastest this CPU supports).
    Fused(Kernel),
    /// tract's generic `Scan`, one small graph per time step: the plain ONNX semantics.
    Scan,
}

impl Default for RecurrencePath {
    fn default() -> Self {
        RecurrencePath::Fused(Kernel::best())
    }
}

/// Options for [`Model::from_bytes`].
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    pub recurrence: RecurrencePath,
    /// Intermediate tensors (ONNX value names, e.g. `act.conv`) to return beside the output,
    /// for checking a model against reference activations.
    pub taps: Vec<String>,
    /// Where the model runs. On CUDA the recurrence path is the fused kernel's, on the CPU.
    pub device: Device,
}

/// A loaded, optimised WaveCRN model.
#[derive(Clone, Debug)]
pub struct Model {
    config: ModelConfig,
    name: String,
    version: String,
    plan: Arc<dyn Runnable>,
    device: Device,
    taps: Vec<String>,
}

impl Model {
    /// Loads an ONNX file with default options.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::load_with(path, &LoadOptions::default())
    }

    /// Loads an ONNX file.
    pub fn load_with(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes, options).map_err(|e| match e {
            Error::Model(why) => Error::Model(format!("{}: {why}", path.display())),
            other => other,
        })
    }

    /// Loads an ONNX model from memory.
    pub fn from_bytes(bytes: &[u8], options: &LoadOptions) -> Result<Self> {
        let bad = |why: String| Error::Model(why);
        let proto = model_file::decode(bytes)?;
        let meta = |key| model_file::metadata(&proto, key);
        // A configuration the metadata holds but the engine refuses is the file's fault here.
        let config = model_file::read_config(&proto).map_err(|e| match e {
            Error::Config(_) => bad(e.to_string()),
            other => other,
        })?;
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| bad("the file holds no graph".into()))?;
        let names = |v: &[tract_onnx::pb::ValueInfoProto]| {
            v.iter().map(|i| i.name.clone()).collect::<Vec<_>>()
        };
        if names(&graph.input) != [INPUT] || names(&graph.output) != [OUTPUT] {
            return Err(bad(format!(
                "expected one input '{INPUT}' and one output '{OUTPUT}', found inputs {:?} and outputs {:?}",
                names(&graph.input),
                names(&graph.output)
            )));
        }
        let plan = build_plan(&proto, &config, options).map_err(|e| bad(format!("{e:#}")))?;
        Ok(Self {
            config,
            name: meta(META_NAME).unwrap_or_default(),
            version: meta(META_VERSION).unwrap_or_default(),
            plan,
            device: options.device,
            taps: options.taps.clone(),
        })
    }

    /// The network's configuration, read from the file's metadata.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The device it runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Model name from the metadata.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Model version from the metadata.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Runs the graph as is on `batch` sequences of equal length laid end to end in `input`.
    /// The length must be a positive multiple of the stride. Returns the output, then each tap,
    /// each as (shape, data).
    pub fn run_raw(&self, input: &[f32], batch: usize) -> Result<Vec<(Vec<usize>, Vec<f32>)>> {
        let stride = self.config.stride;
        if batch == 0 || !input.len().is_multiple_of(batch) {
            return Err(Error::Input(format!(
                "{} samples do not split into {batch} sequences",
                input.len()
            )));
        }
        let samples = input.len() / batch;
        if samples == 0 || !samples.is_multiple_of(stride) {
            return Err(Error::Input(format!(
                "sequence length {samples} is not a positive multiple of {stride}"
            )));
        }
        let tensor = Tensor::from_shape(&[batch, 1, samples], input).map_err(inference)?;
        let outputs = self
            .plan
            .run(tvec![tensor.into_tvalue()])
            .map_err(inference)?;
        outputs
            .iter()
            .map(|t| {
                let data = t
                    .try_as_plain_ram()
                    .and_then(|v| v.as_slice::<f32>().map(<[f32]>::to_vec));
                Ok((t.shape().to_vec(), data.map_err(inference)?))
            })
            .collect()
    }

    /// Denoises `batch` sequences of equal length (any length) laid end to end in `input`:
    /// each is reflect-padded at its end to a multiple of the stride, run, and cropped back.
    pub fn denoise(&self, input: &[f32], batch: usize) -> Result<Vec<f32>> {
        if batch == 0 || !input.len().is_multiple_of(batch) {
            return Err(Error::Input(format!(
                "{} samples do not split into {batch} sequences",
                input.len()
            )));
        }
        let len = input.len() / batch;
        if len == 0 {
            return Ok(vec![]);
        }
        let padded = len.div_ceil(self.config.stride) * self.config.stride;
        let mut x = Vec::with_capacity(padded * batch);
        for seq in input.chunks_exact(len) {
            x.extend(seq.iter().map(|&v| if v.is_finite() { v } else { 0.0 }));
            x.extend((len..padded).map(|i| seq[reflect(i, len)]).map(|v| {
                if v.is_finite() {
                    v
                } else {
                    0.0
                }
            }));
        }
        let out = self.run_raw(&x, batch)?.swap_remove(0).1;
        Ok(out
            .chunks_exact(padded)
            .flat_map(|seq| &seq[..len])
            .copied()
            .collect())
    }

    /// The operator of every node in the optimised graph, by name (`SruRecurrence`, `Scan`,
    /// ...): shows which recurrence path a model actually runs.
    pub fn operators(&self) -> Vec<String> {
        self.plan
            .typed_model()
            .map(|m| m.nodes().iter().map(|n| n.op.name().to_string()).collect())
            .unwrap_or_default()
    }

    /// Names of the taps this model was loaded with, in output order after the main output.
    pub fn taps(&self) -> &[String] {
        &self.taps
    }
}

/// Index into a sequence of `len` samples for position `i` past its end, mirrored about the
/// last sample (and back again, for sequences shorter than the padding).
fn reflect(i: usize, len: usize) -> usize {
    if len == 1 {
        return 0;
    }
    let period = 2 * (len - 1);
    let m = i % period;
    if m < len {
        m
    } else {
        period - m
    }
}

fn inference(e: impl std::fmt::Display) -> Error {
    Error::Inference(e.to_string())
}

fn build_plan(
    proto: &tract_onnx::pb::ModelProto,
    config: &ModelConfig,
    options: &LoadOptions,
) -> TractResult<Arc<dyn Runnable>> {
    let mut model = tract_onnx::onnx().model_for_proto_model(proto)?;
    let mut outputs = vec![model.find_outlet_label(OUTPUT).context("no output")?];
    for tap in &options.taps {
        outputs.push(
            model
                .find_outlet_label(tap)
                .with_context(|| format!("no tensor named {tap}"))?,
        );
    }
    model.select_output_outlets(&outputs)?;
    let mut typed = model.into_typed()?;
    if let RecurrencePath::Fused(kernel) = options.recurrence {
        if !kernel.is_supported() {
            bail!("the {kernel:?} recurrence kernel is not supported by this CPU");
        }
        fuse_recurrences(&mut typed, config, kernel)?;
    }
    match options.device {
        Device::Cpu => Ok(Arc::new(typed.into_optimized()?.into_runnable()?)),
        #[cfg(feature = "cuda")]
        Device::Cuda => Ok(Arc::from(crate::device::cuda::prepare(
            typed.into_decluttered()?,
        )?)),
        #[cfg(not(feature = "cuda"))]
        Device::Cuda => bail!("{}", crate::device::cuda_available().unwrap_err()),
    }
}

#[cfg(test)]
mod tests {
    use super::reflect;

    #[test]
    fn reflect_mirrors_about_the_last_sample() {
        let len = 4; // 0 1 2 3 | 2 1 0 1 2 3 2
        let got: Vec<usize> = (4..11).map(|i| reflect(i, len)).collect();
        assert_eq!(got, [2, 1, 0, 1, 2, 3, 2]);
        assert_eq!(reflect(5, 1), 0);
    }
}
