//! What users run to make and judge models: export weights as ONNX, score models, train,
//! and the speed, latency and upper-band figures the docs quote.

pub mod bench;
pub mod bench_process;
pub mod bench_stream;
pub mod eval;
pub mod export;
pub mod peers;
pub mod train;
pub mod upper_band;
