//! The plugin's window (egui through nice-plug-egui): every parameter, live meters with a
//! short history of what is being removed, and the plugin's state as text (the latency it
//! reports, the model in use, a warning when the worker fell behind).
//!
//! The editor only reads: parameters from the shared parameter object, levels and state from
//! [`Meters`] (atomics the audio thread writes). Changes go through nice-plug's
//! `ParamSetter`, with gesture begin and end, so hosts record them as automation.

use std::sync::Arc;
use std::time::Instant;

use egui::{self, Color32, Pos2, Sense, Stroke, Vec2};
use nice_plug::context::gui::GuiContext;
use nice_plug::editor::dpi::{LogicalSize, NativeSize};
use nice_plug::editor::{EditorHandle, HostMethods, SpawnedEditor};
use nice_plug::prelude::*;
use nice_plug_egui::resizable_window::ResizableWindow;
use nice_plug_egui::widgets::ParamSlider;
use nice_plug_egui::{
    create_egui_editor, EguiEditor, EguiEditorHandle, EguiEditorState, EguiNiceSettings,
    NiceEguiApp, RepaintNotifier,
};
use parking_lot::Mutex;

use crate::meters::{Levels, Meters, FLOOR_DB, HISTORY_POINTS, LOAD_WARNING, READING_SECONDS};
use crate::params::{Mode, WavecrnParams};
pub use crate::params::{SavedSize, DEFAULT_SIZE};

/// The smallest size that keeps every control and line readable.
pub const MIN_SIZE: (u32, u32) = (380, 480);
/// The lowest level the meters and the trace show.
const METER_FLOOR_DB: f32 = -72.0;

const ACCENT: Color32 = Color32::from_rgb(82, 190, 160);
const WARNING: Color32 = Color32::from_rgb(235, 120, 70);

/// Everything the editor needs, shared with the plugin.
#[derive(Clone)]
pub struct EditorShared {
    pub params: Arc<WavecrnParams>,
    pub meters: Arc<Meters>,
    /// The audio thread asks for a redraw through this when a new reading is out.
    pub repaint: RepaintNotifier,
}

/// The editor nice-plug drives. It wraps an egui editor so that the window opens at the size
/// saved in the plugin's state: nice-plug makes the editor when it makes the plugin, before a
/// host restores that state, so the egui editor is remade with the saved size when it differs.
pub struct WavecrnEditor {
    shared: EditorShared,
    /// The egui editor and the size it was made with.
    current: Mutex<(EguiEditor<Panel>, (u32, u32))>,
}

const RESIZE_HINT: ResizeHint = ResizeHint::resizable()
    .with_min_logical_size(LogicalSize::new(MIN_SIZE.0 as f32, MIN_SIZE.1 as f32));

fn egui_editor(shared: &EditorShared, size: (u32, u32)) -> EguiEditor<Panel> {
    let state = EguiEditorState::from_size(LogicalSize::new(size.0 as f64, size.1 as f64), 1.0);
    create_egui_editor(
        state,
        shared.repaint.clone(),
        EguiNiceSettings::new()
            .with_tile("WaveCRN Denoise")
            .with_resize_hint(RESIZE_HINT),
        Panel::new(shared.clone()),
    )
    .expect("nice-plug-egui always makes an editor")
}

impl WavecrnEditor {
    pub fn new(shared: EditorShared) -> Self {
        let size = *shared.params.editor_size.read();
        Self {
            current: Mutex::new((egui_editor(&shared, size), size)),
            shared,
        }
    }

    /// The egui editor, remade first if the saved size changed since it was made.
    fn with_current<R>(&self, f: impl FnOnce(&EguiEditor<Panel>) -> R) -> R {
        let mut current = self.current.lock();
        let saved = *self.shared.params.editor_size.read();
        if current.1 != saved {
            *current = (egui_editor(&self.shared, saved), saved);
        }
        f(&current.0)
    }
}

impl Editor for WavecrnEditor {
    type Handle = EguiEditorHandle;

    fn spawn(
        &self,
        parent: Option<ParentWindowHandle>,
        wait_for_parent: bool,
        fallback_scale_factor: Option<f64>,
        gui_context: GuiContext,
        host: Option<HostMethods>,
    ) -> Result<SpawnedEditor<Self::Handle>, Box<dyn std::error::Error>> {
        let unparented = parent.is_none();
        let spawned = self.with_current(|e| {
            e.spawn(
                parent,
                wait_for_parent,
                fallback_scale_factor,
                gui_context,
                host,
            )
        })?;
        if cfg!(target_os = "linux") && unparented {
            // baseview's X11 window thread clears its stop flag when its event loop starts, so
            // a close that comes before that is lost and the host's `destroy` waits forever
            // (a CLAP host may destroy right after `create`). One answered request means the
            // loop is running. Unmapping a window nobody mapped yet changes nothing.
            spawned.handle.hide(&spawned.window)?;
        }
        Ok(spawned)
    }

    fn size(&self) -> NativeSize<u32> {
        self.with_current(|e| e.size())
    }

    fn resize_hint(&self) -> ResizeHint {
        RESIZE_HINT
    }

    fn track_info_updated(&self, info: TrackInfo) {
        self.with_current(|e| e.track_info_updated(info));
    }
}

/// The window's contents.
pub struct Panel {
    shared: EditorShared,
    gui: Option<GuiContext>,
    /// Reused for the trace, so drawing does not allocate per frame.
    history: Vec<f32>,
    /// The meters as drawn: they rise at once and fall at [`METER_FALL_DB_PER_S`], so a
    /// 25 ms pause does not blank them.
    shown: Levels,
    last_frame: Option<Instant>,
}

/// How fast a drawn meter falls back (dB per second).
const METER_FALL_DB_PER_S: f32 = 24.0;

/// `shown` moved toward `now`: up at once, down by at most `fall` dB.
fn ballistics(shown: Levels, now: Levels, fall: f32) -> Levels {
    let f = |s: f32, n: f32| if n >= s { n } else { n.max(s - fall) };
    Levels {
        input: f(shown.input, now.input),
        output: f(shown.output, now.output),
        removed: f(shown.removed, now.removed),
    }
}

impl Panel {
    fn new(shared: EditorShared) -> Self {
        Self {
            shared,
            gui: None,
            history: Vec::with_capacity(HISTORY_POINTS),
            shown: Levels {
                input: FLOOR_DB,
                output: FLOOR_DB,
                removed: FLOOR_DB,
            },
            last_frame: None,
        }
    }
}

impl NiceEguiApp for Panel {
    fn build(
        &mut self,
        egui_ctx: egui::Context,
        nice_gui_ctx: GuiContext,
        _frame: &mut nice_plug_egui::Frame,
    ) -> Result<(), nice_plug_egui::baseview::HandlerError> {
        egui_ctx.set_visuals(egui::Visuals::dark());
        self.gui = Some(nice_gui_ctx);
        Ok(())
    }

    fn editor_closed(&mut self) {
        self.gui = None;
    }

    fn resized(&mut self, new_size: nice_plug_egui::baseview::WindowSize) {
        let size = (
            new_size.logical.width.round().max(1.0) as u32,
            new_size.logical.height.round().max(1.0) as u32,
        );
        *self.shared.params.editor_size.write() = size;
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut nice_plug_egui::Frame) {
        let Some(gui) = self.gui.clone() else {
            return;
        };
        let setter = gui.param_setter();
        let shared = self.shared.clone();
        let now = Instant::now();
        let dt = self
            .last_frame
            .map_or(0.0, |t| now.duration_since(t).as_secs_f32());
        self.last_frame = Some(now);
        self.shown = ballistics(self.shown, shared.meters.levels(), METER_FALL_DB_PER_S * dt);
        let shown = self.shown;
        let history = &mut self.history;
        ResizableWindow::new("wavecrn-editor")
            .min_size(Vec2::new(MIN_SIZE.0 as f32, MIN_SIZE.1 as f32))
            .show(ui, |ui| {
                egui::Frame::new()
                    .inner_margin(egui::Margin::same(10))
                    .show(ui, |ui| {
                        ui.heading("WaveCRN Denoise");
                        ui.add_space(6.0);
                        controls(ui, &shared.params, &setter);
                        ui.add_space(8.0);
                        ui.separator();
                        meters(ui, shown);
                        ui.add_space(4.0);
                        trace(ui, &shared.meters, history);
                        ui.add_space(6.0);
                        ui.separator();
                        status(ui, &shared);
                    });
            });
        // The meters move between the audio thread's redraw requests too (decay, history).
        ui.ctx()
            .request_repaint_after(std::time::Duration::from_millis(50));
    }
}

/// Sets a parameter as one gesture, the way a click changes it.
fn set_once<P: Param>(setter: &ParamSetter, param: &P, value: P::Plain) {
    setter.begin_set_parameter(param);
    setter.set_parameter(param, value);
    setter.end_set_parameter(param);
}

/// Width of the label column of the controls and meters.
const LABEL_WIDTH: f32 = 150.0;

/// One row: a label in the label column, then `add` in the rest.
fn row(ui: &mut egui::Ui, label: &str, add: impl FnOnce(&mut egui::Ui)) {
    ui.horizontal(|ui| {
        ui.allocate_ui_with_layout(
            Vec2::new(LABEL_WIDTH, 20.0),
            egui::Layout::left_to_right(egui::Align::Center),
            |ui| {
                ui.set_min_width(LABEL_WIDTH);
                ui.label(label);
            },
        );
        add(ui);
    });
}

fn controls(ui: &mut egui::Ui, params: &WavecrnParams, setter: &ParamSetter) {
    ui.spacing_mut().item_spacing.y = 8.0;
    // Room for the value text after each slider.
    let slider = (ui.available_width() - LABEL_WIDTH - 90.0).max(100.0);
    row(ui, "Reduction", |ui| {
        ui.add(ParamSlider::for_param(&params.reduction, setter).with_width(slider));
    });
    row(ui, "Noise floor", |ui| {
        ui.add(ParamSlider::for_param(&params.noise_floor, setter).with_width(slider));
    });
    row(ui, "Output gain", |ui| {
        ui.add(ParamSlider::for_param(&params.output_gain, setter).with_width(slider));
    });
    row(ui, "Mode", |ui| {
        let current = params.mode.value();
        for mode in Mode::ALL {
            if ui.selectable_label(current == mode, mode.name()).clicked() && current != mode {
                set_once(setter, &params.mode, mode);
            }
        }
    });
    row(ui, "Listen to removed noise", |ui| {
        let mut listen = params.listen_noise.value();
        if ui.checkbox(&mut listen, "").changed() {
            set_once(setter, &params.listen_noise, listen);
        }
    });
    row(ui, "Bypass", |ui| {
        let mut bypass = params.bypass.value();
        if ui.checkbox(&mut bypass, "").changed() {
            set_once(setter, &params.bypass, bypass);
        }
    });
}

/// Where `db` falls between the meter floor and 0 dBFS, from 0 to 1.
fn meter_fraction(db: f32) -> f32 {
    ((db - METER_FLOOR_DB) / -METER_FLOOR_DB).clamp(0.0, 1.0)
}

fn level_text(db: f32) -> String {
    if db <= FLOOR_DB {
        "-inf dBFS".into()
    } else {
        format!("{db:.1} dBFS")
    }
}

fn meters(ui: &mut egui::Ui, levels: Levels) {
    for (name, db, color) in [
        ("Input", levels.input, Color32::from_gray(190)),
        ("Output", levels.output, ACCENT),
        ("Removed", levels.removed, WARNING),
    ] {
        row(ui, name, |ui| {
            let (rect, _) =
                ui.allocate_exact_size(Vec2::new(ui.available_width(), 16.0), Sense::hover());
            let painter = ui.painter_at(rect);
            painter.rect_filled(rect, 2.0, Color32::from_gray(40));
            let mut bar = rect;
            bar.set_width(rect.width() * meter_fraction(db));
            painter.rect_filled(bar, 2.0, color);
            painter.text(
                rect.right_center() - Vec2::new(4.0, 0.0),
                egui::Align2::RIGHT_CENTER,
                level_text(db),
                egui::FontId::monospace(11.0),
                Color32::WHITE,
            );
        });
    }
}

/// The removed level over the last few seconds, newest on the right.
fn trace(ui: &mut egui::Ui, meters: &Meters, history: &mut Vec<f32>) {
    let seconds = HISTORY_POINTS as f32 * READING_SECONDS;
    ui.label(format!("Removed, last {seconds:.0} s"));
    // Leave room below for the status lines (up to four with both warnings).
    let height = (ui.available_height() - 150.0).clamp(50.0, 240.0);
    let (rect, _) = ui.allocate_exact_size(Vec2::new(ui.available_width(), height), Sense::hover());
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 2.0, Color32::from_gray(28));
    let y = |db: f32| rect.bottom() - rect.height() * meter_fraction(db);
    for db in [-12.0, -24.0, -36.0, -48.0, -60.0] {
        painter.hline(
            rect.x_range(),
            y(db),
            Stroke::new(1.0, Color32::from_gray(55)),
        );
        painter.text(
            Pos2::new(rect.left() + 3.0, y(db)),
            egui::Align2::LEFT_BOTTOM,
            format!("{db:.0}"),
            egui::FontId::monospace(9.0),
            Color32::from_gray(120),
        );
    }
    meters.history(history);
    if history.len() >= 2 {
        let step = rect.width() / (HISTORY_POINTS - 1) as f32;
        let first = HISTORY_POINTS - history.len();
        let points: Vec<Pos2> = history
            .iter()
            .enumerate()
            .map(|(i, &db)| Pos2::new(rect.left() + (first + i) as f32 * step, y(db)))
            .collect();
        painter.add(egui::Shape::line(points, Stroke::new(1.5, WARNING)));
    }
    painter.rect_stroke(
        rect,
        2.0,
        Stroke::new(1.0, Color32::from_gray(70)),
        egui::StrokeKind::Inside,
    );
}

fn status(ui: &mut egui::Ui, shared: &EditorShared) {
    let s = shared.meters.status();
    if s.active {
        ui.label(format!(
            "Latency: {:.1} ms ({} samples at {:.1} kHz), reported to the host",
            s.latency_ms(),
            s.latency_frames,
            s.sample_rate / 1000.0
        ));
    } else {
        ui.label("Latency: not active yet (reported when the host starts the plugin)");
    }
    ui.label(format!(
        "Model: {} ({} mode)",
        // Read from the model files on the first frame, not when a host scans the plugin.
        crate::model_labels()[s.active_mode.to_index()],
        s.active_mode.name()
    ));
    if s.restart_pending {
        ui.colored_label(
            WARNING,
            "Mode change waits for the host to restart the plugin",
        );
    }
    if s.active {
        let load = format!(
            "Audio thread: {:.0} % of each buffer's time at most (last second)",
            s.load_peak * 100.0
        );
        if s.load_peak > LOAD_WARNING {
            ui.colored_label(
                WARNING,
                format!(
                    "{load}: raise the host's buffer size, or leave {}",
                    Mode::LowLatency.name()
                ),
            );
        } else {
            ui.label(load);
        }
    }
    if s.fallbacks > 0 {
        ui.colored_label(
            WARNING,
            format!(
                "Processing fell behind {} time{}: the output switched to the dry signal",
                s.fallbacks,
                if s.fallbacks == 1 { "" } else { "s" }
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meter_fraction_spans_floor_to_full_scale() {
        assert_eq!(meter_fraction(FLOOR_DB), 0.0);
        assert_eq!(meter_fraction(METER_FLOOR_DB), 0.0);
        assert_eq!(meter_fraction(0.0), 1.0);
        assert_eq!(meter_fraction(6.0), 1.0);
        assert!((meter_fraction(METER_FLOOR_DB / 2.0) - 0.5).abs() < 1e-6);
        assert_eq!(level_text(FLOOR_DB), "-inf dBFS");
        assert_eq!(level_text(-12.34), "-12.3 dBFS");
    }

    #[test]
    fn meters_rise_at_once_and_fall_slowly() {
        let l = |v: f32| Levels {
            input: v,
            output: v,
            removed: v,
        };
        assert_eq!(ballistics(l(-40.0), l(-10.0), 2.0), l(-10.0));
        assert_eq!(ballistics(l(-10.0), l(-50.0), 2.0), l(-12.0));
        assert_eq!(ballistics(l(-10.0), l(-11.0), 2.0), l(-11.0));
    }

    #[test]
    fn the_editor_reports_the_saved_size() {
        let shared = EditorShared {
            params: Arc::new(WavecrnParams::default()),
            meters: Arc::new(Meters::default()),
            repaint: RepaintNotifier::new(),
        };
        let editor = WavecrnEditor::new(shared.clone());
        let size = |e: &WavecrnEditor| {
            let s = e.size();
            (s.width, s.height)
        };
        assert_eq!(size(&editor), DEFAULT_SIZE);
        // A host restores a session saved with another size after making the editor.
        *shared.params.editor_size.write() = (600, 520);
        assert_eq!(size(&editor), (600, 520));
    }
}
