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

/// On Linux, the standalone app links ALSA and JACK: without their development files the
/// build would end in a pkg-config panic and a backtrace. Say in one line what to install.
fn check_app_headers(args: &[String]) -> Result<()> {
    if !cfg!(target_os = "linux") || !args.iter().any(|a| a.contains("standalone")) {
        return Ok(());
    }
    let missing = missing_app_packages(None);
    if !missing.is_empty() {
        anyhow::bail!(
            "the standalone app needs the ALSA and JACK development files: install {} \
             (Debian/Ubuntu: `apt-get install pkg-config libasound2-dev libjack-jackd2-dev`), \
             or bundle without `--features standalone`",
            missing.join(" and ")
        );
    }
    Ok(())
}

/// The Debian packages of the app's libraries that pkg-config cannot find (searching
/// `libdir` instead of its own folders when given).
fn missing_app_packages(libdir: Option<&str>) -> Vec<&'static str> {
    [("alsa", "libasound2-dev"), ("jack", "libjack-jackd2-dev")]
        .into_iter()
        .filter(|(module, _)| {
            let mut cmd = std::process::Command::new("pkg-config");
            if let Some(dir) = libdir {
                cmd.env("PKG_CONFIG_LIBDIR", dir)
                    .env_remove("PKG_CONFIG_PATH");
            }
            !cmd.args(["--exists", module])
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|(_, package)| package)
        .collect()
}

pub fn run(args: Vec<String>) -> Result<()> {
    check_app_headers(&args)?;
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

    /// Where pkg-config finds nothing, both packages are named; where the test set-up has
    /// installed them, none is.
    #[test]
    fn missing_app_headers_are_named() {
        assert_eq!(
            missing_app_packages(Some("/nonexistent")),
            ["libasound2-dev", "libjack-jackd2-dev"]
        );
        if std::env::var_os("WAVECRN_REQUIRE_BUNDLE").is_some() {
            assert!(missing_app_packages(None).is_empty());
        }
    }
}
