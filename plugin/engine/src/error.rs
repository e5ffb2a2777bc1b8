//! Errors the engine reports. Each says what was wrong with which input, so a user can act on it.

use std::path::PathBuf;

/// Everything that can go wrong between a model file and denoised samples.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid model configuration: {0}")]
    Config(String),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("weights do not fit the model: {0}")]
    Weights(String),
    #[error("not a usable WaveCRN model: {0}")]
    Model(String),
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("bad input: {0}")]
    Input(String),
    #[error("{0}")]
    Device(String),
}

/// Result with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
