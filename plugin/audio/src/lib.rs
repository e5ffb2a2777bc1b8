//! Audio files for every wavecrn tool: the command line, the trainer, the evaluation and the
//! benches read and write audio through this crate alone.
//!
//! - [`file`]: one file in pieces, any supported format in ([`file::Reader`]: WAV, FLAC, and
//!   the lossy formats of [`lossy`]), WAV or FLAC out ([`file::Writer`]);
//! - [`bwf`]: the Broadcast WAV chunks a production file carries through;
//! - [`folder`]: whole files and folders as mono at a chosen rate;
//! - [`pairs`]: noisy and clean folders paired by file name.
//!
//! Resampling is the engine's (`wavecrn_engine::resample`), so files and streams share one
//! converter.

pub mod bwf;
pub mod file;
pub mod folder;
pub mod lossy;
pub mod pairs;
