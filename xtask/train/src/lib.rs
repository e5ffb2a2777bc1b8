//! Training WaveCRN on LibTorch.
//!
//! The network is the engine's [`ModelConfig`](wavecrn_engine::ModelConfig) with the same
//! weight names, so a checkpoint exports with `cargo xtask export` unchanged. LibTorch's
//! autograd differentiates the convolutions, layer norms and matrix products; the SRU
//! recurrence, which would otherwise be one small LibTorch op per time step, runs as a fused
//! forward and backward kernel ([`recurrence`]) joined to autograd layer by layer
//! ([`model`]).

pub mod adam;
pub mod args;
pub mod bench;
pub mod checkpoint;
pub mod cuda;
pub mod data;
pub mod init;
pub mod loss;
pub mod model;
pub mod plot;
pub mod recurrence;
pub mod run;
pub mod schedule;
pub mod trace;
pub mod validation;
