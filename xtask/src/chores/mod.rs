//! What builds, packs and checks the project: plugin bundles, the test suite and its set-up,
//! the LibTorch the trainer links to, and the GPU check and its pack.

pub mod bundle;
pub mod gpu_check;
pub mod gpu_pack;
pub mod libtorch;
pub mod test;
