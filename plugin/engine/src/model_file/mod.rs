//! The model file: a WaveCRN network as a standard ONNX graph with wavecrn's metadata.
//!
//! Everything about the format lives here: the names the graph and its metadata use, the one
//! decoder every reader goes through, and the two directions, [`export`] (weights to a graph)
//! and [`import`] (a graph back to the reference weights). The runtime ([`crate::model`]) and
//! the stream's causal stage read files through this module; `cargo xtask export` writes them.

use prost::Message;
use tract_onnx::pb;

use crate::config::ModelConfig;
use crate::error::{Error, Result};

pub mod export;
pub mod import;

pub use export::{store_weights_as_f16, to_onnx, to_onnx_bytes, OPSET};
pub use import::weights_from_onnx;
pub(crate) use import::StoredWeights;

/// Metadata key holding the [`ModelConfig`] as JSON.
pub const META_CONFIG: &str = "wavecrn.config";
/// Metadata key holding the model's name.
pub const META_NAME: &str = "wavecrn.name";
/// Metadata key holding the model's version.
pub const META_VERSION: &str = "wavecrn.version";
/// Name of the graph input: float32 (batch, 1, samples).
pub const INPUT: &str = "input";
/// Name of the graph output: float32 (batch, 1, samples).
pub const OUTPUT: &str = "output";

/// Name of the Scan node for SRU layer `layer`.
pub fn scan_node_name(layer: usize) -> String {
    format!("sru.{layer}.recurrence")
}

/// Name and version that go into the file's metadata.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
}

impl Default for ModelInfo {
    fn default() -> Self {
        Self {
            name: "wavecrn".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// Suffix of a weight stored as float16: the graph casts `NAME` + this back to float32 `NAME`.
pub const HALF_SUFFIX: &str = ":f16";

/// Decodes an ONNX file's bytes: the one place a model file is parsed.
pub fn decode(bytes: &[u8]) -> Result<pb::ModelProto> {
    pb::ModelProto::decode(bytes).map_err(|e| Error::Model(format!("not an ONNX file ({e})")))
}

/// The metadata value stored under `key`, if any.
pub fn metadata(proto: &pb::ModelProto, key: &str) -> Option<String> {
    proto
        .metadata_props
        .iter()
        .find(|p| p.key == key)
        .map(|p| p.value.clone())
}

/// The network's configuration, from the metadata the exporter writes.
pub fn read_config(proto: &pb::ModelProto) -> Result<ModelConfig> {
    let json = metadata(proto, META_CONFIG).ok_or_else(|| {
        Error::Model(format!(
            "no {META_CONFIG} metadata: not written by wavecrn's exporter"
        ))
    })?;
    ModelConfig::from_json(&json)
}

/// The name and version a model file carries in its metadata (empty where it has none),
/// read without loading the network.
pub fn model_info(bytes: &[u8]) -> Result<ModelInfo> {
    let proto = decode(bytes)?;
    let meta = |key| metadata(&proto, key).unwrap_or_default();
    Ok(ModelInfo {
        name: meta(META_NAME),
        version: meta(META_VERSION),
    })
}
