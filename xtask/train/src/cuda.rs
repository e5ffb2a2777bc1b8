//! Making LibTorch's CUDA back end visible. The trainer calls nothing in `libtorch_cuda.so`
//! directly, so an `--as-needed` link drops it and LibTorch then reports no GPU even on a
//! GPU machine. Loading it by hand at start-up registers its kernels.

/// Loads `libtorch_cuda.so` once, if one is there to load: beside the LibTorch this binary
/// was built against, on the library search path, or at `$WAVECRN_LIBTORCH_CUDA`. A CPU-only
/// LibTorch has none, and then this does nothing.
pub fn load_libtorch_cuda() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let mut candidates: Vec<String> = vec![];
        if let Ok(path) = std::env::var("WAVECRN_LIBTORCH_CUDA") {
            candidates.push(path);
        }
        if let Some(dir) = option_env!("WAVECRN_LIBTORCH_LIB") {
            candidates.push(format!("{dir}/libtorch_cuda.so"));
        }
        candidates.push("libtorch_cuda.so".into());
        for path in candidates {
            if path.contains('/') && !std::path::Path::new(&path).exists() {
                continue;
            }
            let Ok(name) = std::ffi::CString::new(path) else {
                continue;
            };
            // SAFETY: dlopen with a valid C string; the handle is kept for the process's life.
            let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
            if !handle.is_null() {
                return;
            }
        }
    });
}
