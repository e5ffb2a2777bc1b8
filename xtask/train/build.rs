//! Embeds LibTorch's folder as the run-time search path, so the trainer runs without
//! LD_LIBRARY_PATH, and tells the CUDA loader (`src/cuda.rs`) where to look.

fn main() {
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        println!("cargo:rustc-env=WAVECRN_LIBTORCH_LIB={dir}");
    }
}
