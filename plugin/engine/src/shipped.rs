//! The models that ship inside the binaries. How each was trained, and its scores, are in
//! `models/<name>.md`.

/// The bidirectional denoiser (the paper's configuration): the Quality model.
pub const DENOISE: &[u8] = include_bytes!("../../../models/wavecrn-denoise.onnx");

/// The one-direction denoiser: the Low latency model.
pub const DENOISE_CAUSAL: &[u8] = include_bytes!("../../../models/wavecrn-denoise-causal.onnx");
