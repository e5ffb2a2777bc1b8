//! Noisy and clean recordings of the same takes, in two folders, paired by file name (the
//! VoiceBank+DEMAND layout), for training and evaluation on fixed pairs.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::folder::read_folder_mono;

/// A noisy recording and its clean original, the same length.
#[derive(Clone, Debug)]
pub struct Recording {
    pub name: String,
    pub noisy: Vec<f32>,
    pub clean: Vec<f32>,
}

/// Loads `noisy_dir` and `clean_dir` and pairs their files by name.
pub fn load_pairs(noisy_dir: &Path, clean_dir: &Path, rate: u32) -> Result<Vec<Recording>> {
    let read = |dir: &Path| -> Result<BTreeMap<String, Vec<f32>>> {
        Ok(read_folder_mono(dir, rate)?.into_iter().collect())
    };
    let noisy = read(noisy_dir)?;
    let mut clean = read(clean_dir)?;
    let mut out = vec![];
    for (name, noisy) in noisy {
        let clean = clean.remove(&name).with_context(|| {
            format!(
                "{} has `{name}` but {} has no (non-silent) file of that name",
                noisy_dir.display(),
                clean_dir.display()
            )
        })?;
        let n = noisy.len().min(clean.len());
        if noisy.len().abs_diff(clean.len()) > rate as usize / 10 {
            bail!(
                "`{name}` is {} samples noisy but {} samples clean: not a pair",
                noisy.len(),
                clean.len()
            );
        }
        out.push(Recording {
            name,
            noisy: noisy[..n].to_vec(),
            clean: clean[..n].to_vec(),
        });
    }
    if let Some(name) = clean.keys().next() {
        bail!(
            "{} has `{name}` but {} has no file of that name",
            clean_dir.display(),
            noisy_dir.display()
        );
    }
    if out.is_empty() {
        bail!(
            "no pairs in {} and {}",
            noisy_dir.display(),
            clean_dir.display()
        );
    }
    Ok(out)
}
