//! The models that ship inside the binaries. How each was trained, and its scores, are in
//! `models/<name>.md`, embedded here too so an installed binary can say what it carries.

/// The bidirectional denoiser: the Quality model (the CLI's default, the plugin's Quality and
/// Balanced modes).
pub const DENOISE: &[u8] = include_bytes!("../../../models/wavecrn-denoise.onnx");

/// The one-direction denoiser: the Low latency model.
pub const DENOISE_CAUSAL: &[u8] = include_bytes!("../../../models/wavecrn-denoise-causal.onnx");

/// The 2-bit restorer: the paper's second task (`wavecrn restore`). Only the command line
/// embeds it; the plugin never names it, so the linker leaves it out there.
pub const RESTORE: &[u8] = include_bytes!("../../../models/wavecrn-restore.onnx");

/// What a model's input is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// Noisy speech (`wavecrn denoise`).
    Denoise,
    /// The sign of clean speech, 2-bit compression (`wavecrn restore`).
    Restore,
}

/// An embedded model, by the name users give it.
#[derive(Clone, Copy, Debug)]
pub struct Embedded {
    /// What `--model` takes.
    pub name: &'static str,
    /// Its file under `models/`.
    pub file: &'static str,
    /// What it is for, in a few words.
    pub role: &'static str,
    pub task: Task,
    pub bytes: &'static [u8],
    /// Its model card (Markdown).
    pub card: &'static str,
}

/// Every embedded model, the default first.
pub const MODELS: [Embedded; 3] = [
    Embedded {
        name: "quality",
        file: "wavecrn-denoise.onnx",
        role: "bidirectional denoiser: the default, and the plugin's Quality and Balanced modes",
        task: Task::Denoise,
        bytes: DENOISE,
        card: include_str!("../../../models/wavecrn-denoise.md"),
    },
    Embedded {
        name: "low-latency",
        file: "wavecrn-denoise-causal.onnx",
        role: "causal denoiser: the plugin's Low latency mode (hop by hop, 3 ms)",
        task: Task::Denoise,
        bytes: DENOISE_CAUSAL,
        card: include_str!("../../../models/wavecrn-denoise-causal.md"),
    },
    Embedded {
        name: "restore",
        file: "wavecrn-restore.onnx",
        role: "2-bit restorer: speech back from the sign of each sample (`wavecrn restore`)",
        task: Task::Restore,
        bytes: RESTORE,
        card: include_str!("../../../models/wavecrn-restore.md"),
    },
];

/// The embedded model called `name` (case-insensitive; `low_latency` and `causal` name the
/// Low latency one too).
pub fn by_name(name: &str) -> Option<&'static Embedded> {
    let name = name.to_ascii_lowercase().replace('_', "-");
    let name = if name == "causal" {
        "low-latency"
    } else {
        name.as_str()
    };
    MODELS.iter().find(|m| m.name == name)
}

impl Embedded {
    /// The card's headline: its bold status paragraph, as plain text on one line.
    pub fn headline(&self) -> String {
        let start = self.card.find("**").map_or(0, |i| i + 2);
        let rest = &self.card[start..];
        let end = rest.find("**").unwrap_or(rest.len());
        let text = rest[..end].split_whitespace().collect::<Vec<_>>().join(" ");
        text.strip_prefix("Status: ").unwrap_or(&text).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_model_has_a_name_and_a_headline() {
        // By content: a `const` slice has no one address to compare.
        assert_ne!(DENOISE, DENOISE_CAUSAL);
        assert_eq!(by_name("quality").unwrap().bytes, DENOISE);
        assert_eq!(by_name("Low_Latency").unwrap().bytes, DENOISE_CAUSAL);
        assert_eq!(by_name("causal").unwrap().bytes, DENOISE_CAUSAL);
        assert_eq!(by_name("restore").unwrap().task, Task::Restore);
        assert!(by_name("models/wavecrn-denoise.onnx").is_none());
        for m in MODELS {
            let h = m.headline();
            assert!(
                h.len() > 40 && !h.contains("**") && !h.contains('\n'),
                "{h}"
            );
        }
    }
}
