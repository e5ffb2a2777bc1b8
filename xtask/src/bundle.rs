//! `cargo xtask bundle`: nice-plug's bundler for the CLAP and VST3 bundles, then the right
//! standalone app beside them.
//!
//! The bundler takes the binary named after the package as the package's standalone app. In
//! this workspace that name (`wavecrn`) is the command-line tool's, and the plugin's app is
//! `wavecrn-standalone`, so what the bundler writes as "the standalone" would be the CLI under
//! the plugin's name. It is replaced with the app when this build made one
//! (`--features standalone`) and removed otherwise.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The app binary the plugin package builds with its `standalone` feature.
const APP: &str = "wavecrn-standalone";

pub fn run(args: Vec<String>) -> Result<()> {
    nice_plug_xtask::main_with_args(
        "cargo xtask",
        std::iter::once("bundle".to_string()).chain(args.iter().cloned()),
    )?;
    let target = crate::root().join("target");
    let Some(bundled) = standalone_in_bundle(&target.join("bundled"))? else {
        return Ok(());
    };
    let app = target
        .join(profile_dir(&args))
        .join(format!("{APP}{}", std::env::consts::EXE_SUFFIX));
    let wants_app = args.iter().any(|a| a.contains("standalone"));
    if wants_app && app.exists() {
        std::fs::copy(&app, &bundled)
            .with_context(|| format!("cannot copy {} to {}", app.display(), bundled.display()))?;
        eprintln!(
            "The standalone app is {} (a copy of {APP})",
            bundled.display()
        );
    } else {
        std::fs::remove_file(&bundled)
            .with_context(|| format!("cannot remove {}", bundled.display()))?;
    }
    Ok(())
}

/// The standalone binary the bundler wrote, if it wrote one.
fn standalone_in_bundle(bundled: &Path) -> Result<Option<PathBuf>> {
    let config = std::fs::read_to_string(crate::root().join("bundler.toml"))
        .context("cannot read bundler.toml")?;
    let name = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("name = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .context("bundler.toml names no bundle")?;
    let candidates = [
        bundled.join(format!("{name}{}", std::env::consts::EXE_SUFFIX)),
        bundled.join(format!("{name}.app/Contents/MacOS/{name}")),
    ];
    Ok(candidates.into_iter().find(|p| p.is_file()))
}

/// The folder under `target/` that cargo builds into for these arguments.
fn profile_dir(args: &[String]) -> String {
    let mut profile = "debug".to_string();
    let mut args = args.iter();
    while let Some(a) = args.next() {
        if a == "--release" {
            profile = "release".into();
        } else if let Some(p) = a.strip_prefix("--profile=") {
            profile = p.into();
        } else if a == "--profile" {
            profile = args.next().cloned().unwrap_or(profile);
        }
    }
    // Cargo's `dev` profile builds into `debug`.
    if profile == "dev" {
        profile = "debug".into();
    }
    profile
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_folders_follow_cargo() {
        let dir = |a: &[&str]| profile_dir(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(dir(&["wavecrn"]), "debug");
        assert_eq!(dir(&["wavecrn", "--release"]), "release");
        assert_eq!(dir(&["wavecrn", "--profile=checked"]), "checked");
        assert_eq!(
            dir(&["wavecrn", "--profile", "checked", "--features", "x"]),
            "checked"
        );
        assert_eq!(dir(&["wavecrn", "--profile", "dev"]), "debug");
    }
}
