//! The `wavecrn` command line tool's library half: audio files in (lossless and lossy) and out, and the
//! file-to-file denoising pipeline, shared with `xtask` (evaluation reads files the same way).

pub mod audio;
pub mod bwf;
pub mod heap;
pub mod lossy;
pub mod pipeline;
