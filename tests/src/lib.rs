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

/// A bundle under `target/bundled/` (`"WaveCRN Denoise.clap"`), or `None` with a message when
/// it has not been built; a missing bundle fails instead where `WAVECRN_REQUIRE_BUNDLE` is set
/// (`cargo xtask test` builds them first).
pub fn built_bundle(name: &str) -> Option<PathBuf> {
    let path = repo_root().join("target/bundled").join(name);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("WAVECRN_REQUIRE_BUNDLE").is_none(),
        "{} is missing: run `cargo xtask bundle wavecrn --release`",
        path.display()
    );
    eprintln!("SKIPPED: {} is missing", path.display());
    None
}
