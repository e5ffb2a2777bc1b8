//! A named set of float32 tensors: the weights of one network, read from safetensors.
//!
//! Names follow the PyTorch reference, so a training checkpoint and a reference-vector file
//! both load. The configuration is inferred from the tensors' shapes and checked against them.

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::{MaskKind, ModelConfig};
use crate::error::{Error, Result};

/// One float32 tensor: shape and row-major data.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "shape does not match data"
        );
        Self { shape, data }
    }
}

/// All tensors of a safetensors file (float32 ones), plus its header metadata.
#[derive(Clone, Debug, Default)]
pub struct TensorFile {
    pub tensors: BTreeMap<String, Tensor>,
    pub metadata: BTreeMap<String, String>,
}

impl TensorFile {
    /// Reads a safetensors file. Tensors of other dtypes are an error: nothing is silently cast.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&bytes).map_err(|e| Error::Weights(format!("{}: {e}", path.display())))
    }

    /// Parses safetensors bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| format!("not a safetensors file ({e})"))?;
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| format!("not a safetensors file ({e})"))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(format!("tensor {name} is {:?}, expected F32", view.dtype()));
            }
            let data = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            tensors.insert(name, Tensor::new(view.shape().to_vec(), data));
        }
        let metadata = meta
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        Ok(Self { tensors, metadata })
    }

    /// The tensor called `name`, or an error naming it.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| Error::Weights(format!("missing tensor {name}")))
    }
}

/// The weights of one WaveCRN network, checked against its configuration.
#[derive(Clone, Debug)]
pub struct Weights {
    pub config: ModelConfig,
    tensors: BTreeMap<String, Tensor>,
}

impl Weights {
    /// Checks `tensors` against `config`: every parameter present with the right shape and
    /// finite values. Extra tensors (activations, gradients, optimiser state) are ignored.
    pub fn new(config: ModelConfig, mut tensors: BTreeMap<String, Tensor>) -> Result<Self> {
        config.validate()?;
        let mut kept = BTreeMap::new();
        for (name, shape) in config.parameter_shapes() {
            let t = match tensors.remove(&name) {
                Some(t) => t,
                // Checkpoints written without the fixed rescale buffer mean "no rescale".
                None if name.ends_with("scale_x") => Tensor::new(vec![1], vec![1.0]),
                None => return Err(Error::Weights(format!("missing tensor {name}"))),
            };
            let t = if name.ends_with("scale_x") && t.data.len() == 1 {
                Tensor::new(vec![1], t.data)
            } else {
                t
            };
            if t.shape != shape {
                return Err(Error::Weights(format!(
                    "{name} has shape {:?}, the configuration needs {shape:?}",
                    t.shape
                )));
            }
            if let Some(bad) = t.data.iter().find(|v| !v.is_finite()) {
                return Err(Error::Weights(format!(
                    "{name} holds a non-finite value ({bad})"
                )));
            }
            kept.insert(name, t);
        }
        Ok(Self {
            config,
            tensors: kept,
        })
    }

    /// Reads weights from a safetensors file (training checkpoint or reference file), inferring
    /// the configuration from the tensors' shapes.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = TensorFile::read(path)?;
        let config =
            infer_config(&file).map_err(|e| Error::Weights(format!("{}: {e}", path.display())))?;
        Self::new(config, file.tensors)
            .map_err(|e| Error::Weights(format!("{}: {e}", path.display())))
    }

    /// The parameter called `name`. Panics on a name the configuration does not have: those
    /// are programming errors, since [`Weights::new`] checked every parameter.
    pub fn tensor(&self, name: &str) -> &Tensor {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("no parameter {name}"))
    }

    /// All parameters by name.
    pub fn tensors(&self) -> &BTreeMap<String, Tensor> {
        &self.tensors
    }
}

/// Works out the configuration from tensor shapes (and the file's metadata, where the shapes
/// alone cannot tell one 2H-wide direction from two H-wide ones).
pub fn infer_config(file: &TensorFile) -> Result<ModelConfig> {
    let conv = file.get("conv.weight")?;
    let [channels, 1, kernel] = conv.shape[..] else {
        return Err(Error::Weights(format!(
            "conv.weight has shape {:?}",
            conv.shape
        )));
    };
    let layers = (0..)
        .take_while(|i| {
            file.tensors
                .contains_key(&format!("sru.rnn_lst.{i}.weight"))
        })
        .count();
    if layers == 0 {
        return Err(Error::Weights(
            "no SRU layers (sru.rnn_lst.0.weight missing)".into(),
        ));
    }
    let outfc = file.get("outfc.weight")?;
    let width = *outfc.shape.get(1).unwrap_or(&0);
    let directions = match file.metadata.get("bidirectional").map(String::as_str) {
        Some("true") => 2,
        Some("false") => 1,
        _ => width / channels,
    };
    let mask = match file.metadata.get("mask").map(String::as_str) {
        Some("tanh") => MaskKind::Tanh,
        _ => MaskKind::Linear,
    };
    let sample_rate = match file.metadata.get("sample_rate") {
        Some(s) => s
            .parse()
            .map_err(|_| Error::Weights(format!("bad sample_rate {s}")))?,
        None => 16_000,
    };
    let config = ModelConfig {
        sample_rate,
        channels,
        kernel,
        stride: kernel / 2,
        layers,
        directions,
        mask,
    };
    config.validate()?;
    Ok(config)
}
