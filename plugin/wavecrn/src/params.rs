//! The plugin's parameters: what a user can automate, and what a session saves.

use std::sync::Arc;

use nice_plug::prelude::*;
use parking_lot::RwLock;
use wavecrn_engine::stream::Preset;

use crate::mix::NO_FLOOR_DB;

/// The size the editor opens at in a new instance, in logical pixels.
pub const DEFAULT_SIZE: (u32, u32) = (460, 530);

/// The editor's window size, kept with the parameters so a session saves it (and the
/// parameters need nothing from the editor).
pub type SavedSize = Arc<RwLock<(u32, u32)>>;

/// How the denoiser runs: latency against quality.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The bidirectional model with a long look ahead (about 2 s of latency): for
    /// post-production, where latency does not matter.
    #[id = "quality"]
    Quality,
    /// The bidirectional model with a short look ahead (about 0.6 s).
    #[id = "balanced"]
    Balanced,
    /// The causal model, hop by hop: for monitoring and live use.
    #[id = "low-latency"]
    #[name = "Low latency"]
    LowLatency,
}

impl Mode {
    /// Every mode, in the order the plugin keeps their streams ([`Enum::to_index`]), which is
    /// [`Preset::ALL`]'s.
    pub const ALL: [Mode; 3] = [Mode::Quality, Mode::Balanced, Mode::LowLatency];

    /// The engine's stream preset this mode runs.
    pub fn preset(self) -> Preset {
        match self {
            Mode::Quality => Preset::Quality,
            Mode::Balanced => Preset::Balanced,
            Mode::LowLatency => Preset::LowLatency,
        }
    }

    /// The name users see, as the host shows the parameter's value.
    pub fn name(self) -> &'static str {
        Self::variants()[self.to_index()]
    }
}

#[derive(Params)]
pub struct WavecrnParams {
    /// How much of the denoised signal replaces the input: 0 % is the input, delayed.
    #[id = "reduction"]
    pub reduction: FloatParam,
    #[id = "output-gain"]
    pub output_gain: FloatParam,
    /// Changing it changes the latency: in CLAP the plugin asks the host for a restart and the
    /// new mode starts then; in VST3 and the standalone app it switches at once.
    #[id = "mode"]
    pub mode: EnumParam<Mode>,
    /// Output what the denoiser takes away instead of what it keeps.
    #[id = "listen-noise"]
    pub listen_noise: BoolParam,
    #[id = "bypass"]
    pub bypass: BoolParam,
    /// The most the denoiser may take away, in dB (an attenuation limit): a little noise left
    /// so the room still sounds like a room. At its top it is Off. Last, so that the other
    /// parameters keep their host indices.
    #[id = "noise-floor"]
    pub noise_floor: FloatParam,
    /// The editor's window size (logical pixels), saved with the session.
    #[persist = "editor-size"]
    pub editor_size: SavedSize,
}

impl Default for WavecrnParams {
    fn default() -> Self {
        Self {
            reduction: FloatParam::new("Reduction", 1.0, FloatRange::Linear { min: 0.0, max: 1.0 })
                .with_smoother(SmoothingStyle::Linear(20.0))
                .with_unit(" %")
                .with_value_to_string(formatters::v2s_f32_percentage(0))
                .with_string_to_value(formatters::s2v_f32_percentage()),
            noise_floor: FloatParam::new(
                "Noise floor",
                NO_FLOOR_DB,
                FloatRange::Linear {
                    min: 0.0,
                    max: NO_FLOOR_DB,
                },
            )
            .with_smoother(SmoothingStyle::Linear(20.0))
            .with_step_size(1.0)
            .with_value_to_string(Arc::new(|db| {
                if db >= NO_FLOOR_DB {
                    "Off".to_string()
                } else {
                    format!("{db:.0} dB")
                }
            }))
            .with_string_to_value(Arc::new(|s| {
                let s = s.trim();
                if s.eq_ignore_ascii_case("off") {
                    Some(NO_FLOOR_DB)
                } else {
                    s.trim_end_matches("dB").trim().parse().ok()
                }
            })),
            output_gain: FloatParam::new(
                "Output gain",
                1.0,
                FloatRange::Skewed {
                    min: util::db_to_gain(-24.0),
                    max: util::db_to_gain(12.0),
                    factor: FloatRange::gain_skew_factor(-24.0, 12.0),
                },
            )
            .with_smoother(SmoothingStyle::Logarithmic(20.0))
            .with_unit(" dB")
            .with_value_to_string(formatters::v2s_f32_gain_to_db(1))
            .with_string_to_value(formatters::s2v_f32_gain_to_db()),
            mode: EnumParam::new("Mode", Mode::Quality),
            listen_noise: BoolParam::new("Listen to removed noise", false),
            bypass: BoolParam::new("Bypass", false).make_bypass(),
            editor_size: Arc::new(RwLock::new(DEFAULT_SIZE)),
        }
    }
}

#[cfg(test)]
mod mode_tests {
    use super::*;

    /// The plugin indexes its streams and model labels by a mode's index in the order of
    /// [`Preset::ALL`].
    #[test]
    fn modes_and_presets_line_up() {
        assert_eq!(Mode::ALL.map(Mode::preset), Preset::ALL);
        for (i, m) in Mode::ALL.into_iter().enumerate() {
            assert_eq!((m.to_index(), Mode::from_index(i)), (i, m));
        }
        assert_eq!(Mode::LowLatency.name(), "Low latency");
    }
}
