//! WaveCRN Denoise as a CLAP and VST3 plugin (and, with the `standalone` feature, an app).
//!
//! The plugin is a thin shell around the engine's streaming module: on activation it makes
//! one stream per mode (all share one worker thread), and on the audio thread it feeds the
//! active stream and mixes its aligned dry and denoised outputs. Channels are denoised
//! independently (stereo is two mono streams in one batch), so the stereo image is kept.

pub mod editor;
pub mod meters;
pub mod mix;
pub mod mode_switch;
pub mod params;
pub mod render_pace;
pub mod task_drain;

use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use nice_plug::prelude::*;
use nice_plug_egui::RepaintNotifier;
use wavecrn_engine::model_file::model_info;
use wavecrn_engine::shipped;
use wavecrn_engine::stream::{self, step_toward, AudioSide, Preset, StreamModels, WorkerThread};

use crate::editor::{EditorShared, WavecrnEditor};
use crate::meters::{Meters, Reading};
use crate::mix::{apply_floor, mix, Controls};
use crate::mode_switch::ModeSwitch;
use crate::params::{Mode, WavecrnParams};
use crate::render_pace::RenderPace;
use crate::task_drain::{QueueMarker, TaskDrain, DRAIN_PATIENCE};

/// How long the bypass crossfade takes.
const BYPASS_FADE_SECONDS: f32 = 0.01;

/// The plugin instance.
pub struct Wavecrn {
    params: Arc<WavecrnParams>,
    /// The modes' streams, in [`Preset::ALL`] order: all three where a Mode change switches
    /// at once (the standalone, and VST3: see `process`), only the active one in CLAP, where
    /// a Mode change restarts the plugin, so building the others would only slow activation.
    streams: [Option<AudioSide>; 3],
    worker: Option<WorkerThread>,
    active: Mode,
    /// A Mode change is waiting for the host to restart the plugin (see `process`).
    restart_requested: bool,
    /// The recent input, and the crossfade of a Mode change made in mid-signal.
    switch: ModeSwitch,
    /// The host said it renders offline, and its word holds (CLAP; see [`render_pace`]).
    declared_offline: bool,
    pace: RenderPace,
    sample_rate: f32,
    bypass_state: f32,
    /// Where "Listen to removed noise" is on its 10 ms fade (0: off, 1: on).
    listen_state: f32,
    reduction: Vec<f32>,
    floor: Vec<f32>,
    gain: Vec<f32>,
    bypass: Vec<f32>,
    listen: Vec<f32>,
    /// Levels and state for the editor, and the reading the audio thread is summing.
    meters: Arc<Meters>,
    reading: Reading,
    repaint: RepaintNotifier,
    /// Waits out this instance's queued host tasks when it deactivates (VST3).
    drain: TaskDrain,
}

impl Default for Wavecrn {
    fn default() -> Self {
        // Nothing heavy here: hosts create instances to scan them.
        Self {
            params: Arc::new(WavecrnParams::default()),
            streams: [None, None, None],
            worker: None,
            active: Mode::Quality,
            restart_requested: false,
            switch: ModeSwitch::new(0, 0, 48_000.0, 0),
            declared_offline: false,
            pace: RenderPace::new(48_000.0, 1),
            sample_rate: 48_000.0,
            bypass_state: 0.0,
            listen_state: 0.0,
            reduction: Vec::new(),
            floor: Vec::new(),
            gain: Vec::new(),
            bypass: Vec::new(),
            listen: Vec::new(),
            meters: Arc::new(Meters::default()),
            reading: Reading::default(),
            repaint: RepaintNotifier::new(),
            drain: TaskDrain::default(),
        }
    }
}

/// "name version" of the model each mode runs, in [`Preset::ALL`] order, read from the
/// shipped files' metadata once per process.
pub fn model_labels() -> Arc<[String; 3]> {
    static LABELS: OnceLock<Arc<[String; 3]>> = OnceLock::new();
    LABELS
        .get_or_init(|| {
            let label = |bytes: &[u8]| match model_info(bytes) {
                Ok(i) if !i.name.is_empty() => format!("{} {}", i.name, i.version),
                Ok(_) => "unnamed model".into(),
                Err(e) => format!("unreadable model ({e})"),
            };
            let bi = label(shipped::DENOISE);
            let causal = label(shipped::DENOISE_CAUSAL);
            Arc::new(Preset::ALL.map(|p| match p {
                Preset::LowLatency => causal.clone(),
                _ => bi.clone(),
            }))
        })
        .clone()
}

/// The shipped models, loaded once per process on first activation.
pub fn shipped_models() -> Result<StreamModels, String> {
    static MODELS: OnceLock<Result<StreamModels, String>> = OnceLock::new();
    MODELS
        .get_or_init(|| {
            StreamModels::from_bytes(shipped::DENOISE, shipped::DENOISE_CAUSAL)
                .map_err(|e| e.to_string())
        })
        .clone()
}

impl Wavecrn {
    /// How often, since activation, the output fell back to the dry signal because the worker
    /// was late (summed over the modes).
    pub fn fallbacks(&self) -> u64 {
        self.streams
            .iter()
            .flatten()
            .map(AudioSide::fallbacks)
            .sum()
    }

    /// The latency the active mode reports, in host frames.
    pub fn latency(&self) -> Option<usize> {
        self.streams[self.active.to_index()]
            .as_ref()
            .map(AudioSide::latency)
    }
}

impl Plugin for Wavecrn {
    const NAME: &'static str = "WaveCRN Denoise";
    const VENDOR: &'static str = "wavecrn";
    const URL: &'static str = "https://github.com/wavecrn/wavecrn";
    const EMAIL: &'static str = "team@wavecrn.invalid";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = &[
        AudioIOLayout {
            main_input_channels: NonZeroU32::new(2),
            main_output_channels: NonZeroU32::new(2),
            ..AudioIOLayout::const_default()
        },
        AudioIOLayout {
            main_input_channels: NonZeroU32::new(1),
            main_output_channels: NonZeroU32::new(1),
            ..AudioIOLayout::const_default()
        },
    ];

    type Editor = WavecrnEditor;
    type SysExMessage = ();
    type BackgroundTask = QueueMarker;

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    fn task_executor(&mut self) -> TaskExecutor<Self> {
        Box::new(QueueMarker::reached)
    }

    fn editor(&mut self, executor: AsyncExecutor<Self>) -> Option<Self::Editor> {
        // nice-plug calls this once, when the instance is made, in every format.
        self.drain = TaskDrain::new(executor);
        Some(WavecrnEditor::new(EditorShared {
            params: self.params.clone(),
            meters: self.meters.clone(),
            repaint: self.repaint.clone(),
        }))
    }

    fn activate(
        &mut self,
        layout: &AudioIOLayout,
        config: &BufferConfig,
        context: &mut impl ActivateContext<Self>,
    ) -> bool {
        let models = match shipped_models() {
            Ok(m) => m,
            Err(e) => {
                nice_error!("WaveCRN: cannot load the model: {e}");
                return false;
            }
        };
        let channels = layout.main_output_channels.map_or(2, NonZeroU32::get) as usize;
        let rate = config.sample_rate as f64;
        let max_block = config.max_buffer_size.max(1) as usize;
        // Stop the old worker before its streams go.
        self.worker = None;
        // A Mode change that asked for this restart takes effect here, with its latency.
        self.active = self.params.mode.value();
        self.restart_requested = false;
        let standalone = context.plugin_api() == PluginApi::Standalone;
        let every_mode = context.plugin_api() != PluginApi::Clap;
        if context.plugin_api() != PluginApi::Vst3 {
            self.drain.disable();
        }
        let mut streams = [None, None, None];
        let mut workers = Vec::new();
        for (i, preset) in Preset::ALL.into_iter().enumerate() {
            if i != self.active.to_index() && !every_mode {
                continue;
            }
            match stream::stream(&models, preset, rate, channels, max_block) {
                Ok((audio, worker)) => {
                    streams[i] = Some(audio);
                    workers.extend(worker);
                }
                Err(e) => {
                    nice_error!("WaveCRN: cannot stream at {rate} Hz: {e}");
                    return false;
                }
            }
        }
        match WorkerThread::spawn(workers, Duration::from_micros(500)) {
            Ok(w) => self.worker = Some(w),
            Err(e) => {
                nice_error!("WaveCRN: cannot start the worker thread: {e}");
                return false;
            }
        }
        // Where modes switch in mid-signal, the input is kept as long as the slowest mode's
        // latency, so the mode switched to starts from the signal (see `mode_switch`).
        let history = if every_mode {
            streams
                .iter()
                .flatten()
                .map(AudioSide::latency)
                .max()
                .unwrap_or(0)
        } else {
            0
        };
        self.switch = ModeSwitch::new(channels.min(2), max_block, rate, history);
        self.streams = streams;
        // nice-plug's VST3 wrapper reports the mode of the host's previous setupProcessing
        // call, so there the pace of the audio decides alone.
        self.declared_offline =
            config.process_mode == ProcessMode::Offline && context.plugin_api() == PluginApi::Clap;
        self.pace = RenderPace::new(rate, max_block);
        self.sample_rate = config.sample_rate;
        self.reduction = vec![0.0; max_block];
        self.floor = vec![0.0; max_block];
        self.gain = vec![0.0; max_block];
        self.bypass = vec![0.0; max_block];
        self.bypass_state = if self.params.bypass.value() { 1.0 } else { 0.0 };
        self.listen = vec![0.0; max_block];
        self.listen_state = if self.params.listen_noise.value() {
            1.0
        } else {
            0.0
        };
        let Some(latency) = self.latency() else {
            return false;
        };
        let latency = latency as u32;
        if !standalone {
            // Reported only here: hosts read a plugin's latency when it activates.
            context.set_latency_samples(latency);
        }
        self.reading = Reading::new(config.sample_rate);
        self.meters
            .activated(latency, config.sample_rate, self.active);
        true
    }

    fn reset(&mut self) {
        for s in self.streams.iter_mut().flatten() {
            s.reset();
        }
    }

    fn deactivate(&mut self) {
        if !self.drain.wait(DRAIN_PATIENCE) {
            nice_log!("WaveCRN: the host's task thread did not catch up before deactivation");
        }
        if self.streams.iter().any(Option::is_some) {
            nice_log!(
                "WaveCRN: the output fell back to the dry signal {} times",
                self.fallbacks()
            );
        }
        self.worker = None;
        self.streams = [None, None, None];
        self.meters.deactivated();
    }

    fn process(
        &mut self,
        buffer: &mut Buffer,
        _aux: &mut AuxiliaryBuffers,
        context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        let started = Instant::now();
        if self.streams[self.active.to_index()].is_none() {
            return ProcessStatus::Error("not activated");
        }
        let wanted = self.params.mode.value();
        if wanted != self.active {
            if let Some(stream) = self.streams[wanted.to_index()].as_mut() {
                // The standalone has no host to tell; VST3 hosts get the new latency with
                // `restartComponent(kLatencyChanged)` (from nice-plug's own thread), on which
                // some re-activate the plugin and others, Ardour 7 among them, only ask for
                // the latency again: switching at once suits both. The output crossfades
                // from the mode left to the new one, which starts from the recent input.
                self.switch.switch(stream, self.active.to_index());
                self.active = wanted;
                let latency = stream.latency() as u32;
                if context.plugin_api() == PluginApi::Vst3 {
                    context.set_latency_samples(latency);
                }
                self.meters.switched(latency, wanted);
            } else if !self.restart_requested {
                // CLAP lets the latency change only while the plugin is deactivated: ask the
                // host for a restart and keep the current mode, and its latency, until then.
                // The new mode starts in the next `activate`.
                context.request_restart();
                self.restart_requested = true;
                self.meters.set_restart_pending(true);
            }
        }
        let mode = self.active.to_index();
        let listen_target = if self.params.listen_noise.value() {
            1.0
        } else {
            0.0
        };
        let bypass_target = if self.params.bypass.value() { 1.0 } else { 0.0 };
        let bypass_step = 1.0 / (BYPASS_FADE_SECONDS * self.sample_rate);
        let total = buffer.samples();
        let offline = self.pace.block(total, Instant::now()) || self.declared_offline;
        let Some(max) = self.streams[mode].as_ref().map(AudioSide::max_block) else {
            return ProcessStatus::Error("not activated");
        };
        let channels = buffer.as_slice();
        let ch = channels.len().min(2);
        let mut at = 0;
        while at < total {
            let len = (total - at).min(max);
            let mut input: [&[f32]; 2] = [&[], &[]];
            for c in 0..ch {
                input[c] = &channels[c][at..at + len];
                self.reading.add_input(input[c]);
            }
            let audio = self.streams[mode].as_mut().expect("checked above");
            audio.process(&input[..ch], offline);
            // While a Mode change crossfades, the mode left takes the block too.
            let leaving = self.switch.leaving();
            if let Some(left) = leaving.and_then(|l| self.streams[l].as_mut()) {
                left.process(&input[..ch], offline);
            }
            let fading = match (
                leaving.and_then(|l| self.streams[l].as_ref()),
                &self.streams[mode],
            ) {
                (Some(left), Some(arriving)) => {
                    self.switch.blend(left, arriving, ch);
                    true
                }
                _ => false,
            };
            let audio = self.streams[mode].as_ref().expect("checked above");
            self.switch.record(&input[..ch]);
            self.params
                .reduction
                .smoothed
                .next_block(&mut self.reduction, len);
            self.params
                .noise_floor
                .smoothed
                .next_block(&mut self.floor, len);
            apply_floor(&mut self.reduction[..len], &self.floor[..len]);
            self.params
                .output_gain
                .smoothed
                .next_block(&mut self.gain, len);
            for b in &mut self.bypass[..len] {
                self.bypass_state = step_toward(self.bypass_state, bypass_target, bypass_step);
                *b = self.bypass_state;
            }
            // The listen switch fades as bypass does: no click when it flips.
            for l in &mut self.listen[..len] {
                self.listen_state = step_toward(self.listen_state, listen_target, bypass_step);
                *l = self.listen_state;
            }
            let controls = Controls {
                reduction: &self.reduction[..len],
                gain: &self.gain[..len],
                bypass: &self.bypass[..len],
                listen: &self.listen[..len],
            };
            for (c, out) in channels.iter_mut().take(ch).enumerate() {
                let out = &mut out[at..at + len];
                let (dry, wet) = if fading {
                    (self.switch.dry(c, len), self.switch.wet(c, len))
                } else {
                    (audio.dry(c), audio.wet(c))
                };
                mix(dry, wet, &controls, out);
                // What the denoiser takes away at the current Reduction, as it is heard.
                let removed = dry
                    .iter()
                    .zip(wet)
                    .zip(controls.reduction.iter().zip(controls.bypass))
                    .map(|((d, w), (r, b))| r * (d - w) * (1.0 - b));
                self.reading.add_output(out, removed);
            }
            if self.reading.end_block(len, ch, &self.meters) {
                self.repaint.request_repaint();
            }
            at += len;
        }
        self.meters.set_fallbacks(self.fallbacks());
        self.reading
            .add_call(started.elapsed(), total, &self.meters);
        ProcessStatus::Normal
    }
}

impl ClapPlugin for Wavecrn {
    const CLAP_ID: &'static str = "com.wavecrn.denoise";
    const CLAP_DESCRIPTION: Option<&'static str> =
        Some("Speech denoiser: WaveCRN on the raw waveform");
    const CLAP_MANUAL_URL: Option<&'static str> = None;
    const CLAP_SUPPORT_URL: Option<&'static str> = None;
    const CLAP_FEATURES: &'static [ClapFeature] = &[
        ClapFeature::AudioEffect,
        ClapFeature::Restoration,
        ClapFeature::Stereo,
        ClapFeature::Mono,
    ];
}

impl Vst3Plugin for Wavecrn {
    const VST3_CLASS_ID: [u8; 16] = *b"WaveCRNDenoise01";
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] =
        &[Vst3SubCategory::Fx, Vst3SubCategory::Restoration];
}

nice_export_clap!(Wavecrn);
nice_export_vst3!(Wavecrn);
