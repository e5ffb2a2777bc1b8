//! The WaveCRN speech denoiser's engine: model configuration, weights, ONNX export, and the
//! tract-based inference path with a fused SRU recurrence kernel.
//!
//! Nothing here depends on a plugin framework: the CLI, the plugin, the benches and `xtask`
//! all build on this crate.

pub mod config;
pub mod device;
pub mod error;
pub mod heap;
pub mod io;
pub mod model;
pub mod model_file;
pub mod offline;
pub mod rate_bridge;
pub mod reduction;
pub mod resample;

pub mod shipped;
pub mod sru;
pub mod stream;
pub mod two_bit;
pub mod upper_band;
pub mod weights;
pub mod windowed;

pub use config::{MaskKind, ModelConfig};
pub use device::{Device, DeviceChoice};
pub use error::{Error, Result};
pub use model::{LoadOptions, Model, RecurrencePath};
pub use weights::{Tensor, TensorFile, Weights};
