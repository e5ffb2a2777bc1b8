//! Shared helpers for the end-to-end tests: where fixtures and the shared data live.

use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A file under `tests/fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(rel)
}

/// A file under the shared folder beside the repository (`../shared`, or `$WAVECRN_SHARED`),
/// or `None` with a message on stderr when it is absent, so a test can skip clearly.
pub fn shared(rel: &str) -> Option<PathBuf> {
    let root = std::env::var_os("WAVECRN_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared"));
    let path = root.join(rel);
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "SKIPPED: {} is absent (set WAVECRN_SHARED to the shared folder)",
            path.display()
        );
        None
    }
}

/// The reference cases from the original PyTorch code: the two small ones (fixtures) and the
/// paper configuration (from the shared folder, where it is there).
pub fn reference_cases() -> Vec<PathBuf> {
    let mut cases = vec![
        fixture("reference/small_bidir.safetensors"),
        fixture("reference/small_causal.safetensors"),
    ];
    cases.extend(shared("reference/paper_bidir.safetensors"));
    cases
}
