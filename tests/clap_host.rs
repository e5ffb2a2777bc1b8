//! The built CLAP plugin loaded the way a DAW loads it (clack-host): activation at every rate
//! from 8 to 768 kHz with odd block sizes, finite output, the reported latency against a
//! measured impulse delay, Reduction 0 % giving the delayed input bit for bit, parameters
//! through saved state, every parameter automated and modulated at random sample offsets, a
//! Mode change taking effect (with its new latency) only when the host restarts the plugin,
//! the latency callback only ever inside `activate`, and real noisy speech coming out cleaner.
//!
//! It needs the bundle. `cargo xtask test` builds it first in the `checked` profile with
//! nice-plug's `assert_process_allocs`, so any allocation inside `process()` aborts the test
//! (`cargo xtask bundle wavecrn --profile checked --features assert_process_allocs`); a plain
//! `--release` bundle works too, without that check. Without a bundle the test says so and
//! skips, unless `WAVECRN_REQUIRE_BUNDLE` is set.

use std::collections::HashMap;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use clack_extensions::latency::{HostLatency, HostLatencyImpl, PluginLatency};
use clack_extensions::params::{ParamInfoBuffer, ParamInfoFlags, PluginParams};
use clack_extensions::render::{PluginRender, RenderMode};
use clack_extensions::state::PluginState;
use clack_host::events::event_types::{ParamModEvent, ParamValueEvent};
use clack_host::events::io::EventBuffer;
use clack_host::prelude::*;
use clack_host::utils::ClapId;

#[path = "common/speech.rs"]
mod speech;
use speech::{
    assert_cleaner, assert_delayed_exactly, assert_restarted_into_low_latency, impulse_and_noise,
    noisy_speech, tone_and_noise,
};

/// What the host records of the plugin's calls into it.
#[derive(Default)]
struct Shared {
    restart_requested: AtomicBool,
    callback_requested: AtomicBool,
    /// Set by the test around `activate`, the only place the latency may change.
    activating: AtomicBool,
    latency_changed_in_activate: AtomicU32,
    latency_changed_elsewhere: AtomicU32,
}

impl SharedHandler<'_> for Shared {
    fn request_restart(&self) {
        self.restart_requested.store(true, Ordering::SeqCst);
    }
    fn request_process(&self) {}
    fn request_callback(&self) {
        self.callback_requested.store(true, Ordering::SeqCst);
    }
}

struct MainThread<'a> {
    shared: &'a Shared,
}
impl<'a> MainThreadHandler<'a> for MainThread<'a> {}
impl HostLatencyImpl for MainThread<'_> {
    fn changed(&self) {
        let s = self.shared;
        let counter = match s.activating.load(Ordering::SeqCst) {
            true => &s.latency_changed_in_activate,
            false => &s.latency_changed_elsewhere,
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

struct Host;
impl HostHandlers for Host {
    type Shared<'a> = Shared;
    type MainThread<'a> = MainThread<'a>;
    type AudioProcessor<'a> = ();

    fn declare_extensions(builder: &mut HostExtensions<Self>, _: &Self::Shared<'_>) {
        builder.register::<HostLatency>();
    }
}

/// A parameter as the plugin describes it.
#[derive(Clone, Copy)]
struct ParamRange {
    id: ClapId,
    min: f64,
    max: f64,
    stepped: bool,
}

/// The plugin, loaded and instantiated.
struct Loaded {
    _entry: PluginEntry,
    instance: PluginInstance<Host>,
    params: HashMap<String, ClapId>,
    ranges: Vec<ParamRange>,
}

fn load() -> Option<Loaded> {
    let path = wavecrn_tests::built_bundle("WaveCRN Denoise.clap")?;
    // SAFETY: the bundle is this repository's own plugin.
    let entry = unsafe { PluginEntry::load(&path) }.expect("the bundle loads");
    let info = HostInfo::new("wavecrn tests", "wavecrn", "https://example.invalid", "1").unwrap();
    let id = CString::new("com.wavecrn.denoise").unwrap();
    let mut instance = PluginInstance::<Host>::new(
        |_| Shared::default(),
        |shared| MainThread { shared },
        &entry,
        &id,
        &info,
    )
    .unwrap();
    let mut params = HashMap::new();
    let mut ranges = Vec::new();
    let handle = instance.plugin_handle();
    let ext: PluginParams = handle.get_extension().expect("the plugin has parameters");
    for i in 0..ext.count(&handle) {
        let mut buffer = ParamInfoBuffer::new();
        let info = ext.get_info(&handle, i, &mut buffer).unwrap();
        params.insert(String::from_utf8_lossy(info.name).into_owned(), info.id);
        ranges.push(ParamRange {
            id: info.id,
            min: info.min_value,
            max: info.max_value,
            stepped: info.flags.contains(ParamInfoFlags::IS_STEPPED),
        });
    }
    Some(Loaded {
        _entry: entry,
        instance,
        params,
        ranges,
    })
}

impl Loaded {
    fn set(&mut self, values: &[(&str, f64)]) {
        let events: Vec<ParamValueEvent> = values
            .iter()
            .map(|(name, v)| {
                let id = *self
                    .params
                    .get(*name)
                    .unwrap_or_else(|| panic!("no parameter {name}"));
                ParamValueEvent::new(0, id, Pckn::match_all(), *v)
            })
            .collect();
        let ext: PluginParams = self
            .instance
            .plugin_shared_handle()
            .get_extension()
            .unwrap();
        let mut handle = self.instance.inactive_plugin_handle().expect("inactive");
        ext.flush(
            &mut handle,
            &InputEvents::from_buffer(&events),
            &mut OutputEvents::void(),
        );
    }

    fn value(&mut self, name: &str) -> f64 {
        let id = self.params[name];
        let handle = self.instance.plugin_handle();
        let ext: PluginParams = handle.get_extension().unwrap();
        ext.get_value(&handle, id).unwrap()
    }

    /// Runs what the plugin asked the host to run on the main thread, as a host's event loop
    /// does.
    fn pump(&mut self) {
        let asked = self
            .instance
            .access_shared_handler(|s| s.callback_requested.swap(false, Ordering::SeqCst));
        if asked {
            self.instance.call_on_main_thread_callback();
        }
    }

    /// Reads one of the host's records.
    fn record<R>(&self, read: impl FnOnce(&Shared) -> R) -> R {
        self.instance.access_shared_handler(read)
    }

    /// Activates at `rate`, processes `input` (planar) in blocks cycling through `blocks` (as
    /// fast as it can: in real-time mode the plugin falls back to the dry signal wherever its
    /// worker is behind, offline it waits), deactivates. Returns the output and the latency
    /// reported after activation.
    fn run(
        &mut self,
        rate: f64,
        blocks: &[usize],
        input: &[Vec<f32>],
        offline: bool,
    ) -> (Vec<Vec<f32>>, u32) {
        self.run_with_events(rate, blocks, input, offline, &mut |_, _, _| {})
    }

    /// [`Self::run`], with `events(block, frames, buffer)` adding each block's input events.
    /// Between blocks and after deactivation the host runs the plugin's main-thread
    /// callbacks; the latency the plugin reports must not change while it is active.
    fn run_with_events(
        &mut self,
        rate: f64,
        blocks: &[usize],
        input: &[Vec<f32>],
        offline: bool,
        events: &mut dyn FnMut(usize, usize, &mut EventBuffer),
    ) -> (Vec<Vec<f32>>, u32) {
        let max = *blocks.iter().max().unwrap();
        {
            let handle = self.instance.plugin_handle();
            let render: PluginRender = handle.get_extension().expect("render extension");
            let mode = if offline {
                RenderMode::Offline
            } else {
                RenderMode::Realtime
            };
            render.set(&handle, mode).expect("render mode set");
        }
        let config = PluginAudioConfiguration {
            sample_rate: rate,
            min_frames_count: 1,
            max_frames_count: max as u32,
        };
        self.record(|s| s.activating.store(true, Ordering::SeqCst));
        let processor = self.instance.activate(|_, _| (), config);
        self.record(|s| s.activating.store(false, Ordering::SeqCst));
        let processor = processor.unwrap_or_else(|e| panic!("activates at {rate} Hz: {e}"));
        let latency = self.latency();
        let ch = input.len();
        let mut processor = processor.start_processing().unwrap();
        let (mut inputs, mut outputs) = (
            AudioPorts::with_capacity(ch, 1),
            AudioPorts::with_capacity(ch, 1),
        );
        let mut out = vec![Vec::new(); ch];
        let (mut at, mut k) = (0, 0);
        let mut in_buf = vec![vec![0.0f32; max]; ch];
        let mut out_buf = vec![vec![0.0f32; max]; ch];
        let mut in_events = EventBuffer::with_capacity(64);
        let mut out_events = EventBuffer::with_capacity(64);
        while at < input[0].len() {
            let n = blocks[k % blocks.len()].min(input[0].len() - at);
            for c in 0..ch {
                in_buf[c][..n].copy_from_slice(&input[c][at..at + n]);
            }
            let ins = inputs.with_input_buffers([AudioPortBuffer {
                latency: 0,
                channels: AudioPortBufferType::f32_input_only(
                    in_buf
                        .iter_mut()
                        .map(|b| InputChannel::variable(&mut b[..n])),
                ),
            }]);
            let mut outs = outputs.with_output_buffers([AudioPortBuffer {
                latency: 0,
                channels: AudioPortBufferType::f32_output_only(
                    out_buf.iter_mut().map(|b| &mut b[..n]),
                ),
            }]);
            in_events.clear();
            events(k, n, &mut in_events);
            in_events.sort();
            processor
                .process(
                    &ins,
                    &mut outs,
                    &InputEvents::from_buffer(&in_events),
                    &mut OutputEvents::from_buffer(&mut out_events),
                    None,
                    None,
                )
                .expect("processes");
            out_events.clear();
            self.pump();
            assert_eq!(self.latency(), latency, "latency changed while active");
            for c in 0..ch {
                out[c].extend_from_slice(&out_buf[c][..n]);
            }
            at += n;
            k += 1;
        }
        self.instance.deactivate(processor.stop_processing());
        self.pump();
        (out, latency)
    }

    fn latency(&mut self) -> u32 {
        let handle = self.instance.plugin_handle();
        let ext: PluginLatency = handle.get_extension().expect("reports latency");
        ext.get(&handle)
    }
}

/// Every rate clap-validator activates at, from under telephone to DXD and beyond, the
/// fractional ones included.
const RATES: [f64; 13] = [
    1_234.567_8,
    8_000.0,
    12_345.678,
    22_050.0,
    44_100.0,
    45_678.901,
    48_000.0,
    88_200.0,
    96_000.0,
    123_456.78,
    192_000.0,
    384_000.0,
    768_000.0,
];

/// A small deterministic generator for the fuzz test.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        ((self.next() * n as f64) as usize).min(n - 1)
    }
}

#[test]
fn hosts_see_an_honest_glitch_free_denoiser() {
    let Some(mut plugin) = load() else { return };
    for name in [
        "Reduction",
        "Output gain",
        "Mode",
        "Listen to removed noise",
        "Bypass",
        "Noise floor",
    ] {
        assert!(plugin.params.contains_key(name), "parameter {name}");
    }
    for rate in RATES {
        for mode in [0.0, 1.0, 2.0] {
            // An impulse through the dry path (Reduction 0 %): out after exactly the latency,
            // bit for bit, at odd block sizes.
            plugin.set(&[("Mode", mode), ("Reduction", 0.0)]);
            // Long enough for Quality's latency (2.65 s at 8 kHz, 6.2 s at 1234.57 Hz) to be under
            // half of it.
            let input =
                impulse_and_noise((rate * if rate < 8_000.0 { 16.0 } else { 6.0 }) as usize);
            let (out, latency) = plugin.run(rate, &[1, 17, 511, 4096], &input, true);
            let latency = latency as usize;
            assert_delayed_exactly(&input, &out, latency, &format!("mode {mode} at {rate} Hz"));
            eprintln!(
                "mode {mode} at {rate} Hz: latency {latency} frames ({:.1} ms)",
                latency as f64 / rate * 1000.0
            );
        }
    }
    let changed_elsewhere = plugin.record(|s| s.latency_changed_elsewhere.load(Ordering::SeqCst));
    assert_eq!(changed_elsewhere, 0, "latency callback outside activate");
}

#[test]
fn a_mode_change_waits_for_the_hosts_restart() {
    let Some(mut plugin) = load() else { return };
    let rate = 48_000.0;
    let input = impulse_and_noise(rate as usize * 5);
    plugin.set(&[("Mode", 0.0), ("Reduction", 0.0)]);
    // The first activation reports a latency the host has not seen: nice-plug then asks for
    // one restart, in which it tells the host. After that, no restart without a reason.
    plugin.run(rate, &[512], &input, true);
    let restart = |p: &Loaded| p.record(|s| s.restart_requested.swap(false, Ordering::SeqCst));
    restart(&plugin);
    let (out, quality) = plugin.run(rate, &[512], &input, true);
    assert!(
        !restart(&plugin),
        "a restart was requested with nothing changed"
    );
    assert_delayed_exactly(&input, &out, quality as usize, "Quality");

    // Mode -> Low latency in the last frame of the fourth block: the plugin asks for a
    // restart and keeps Quality, and its latency, until then.
    let low = plugin.params["Mode"];
    let (out, latency) = plugin.run_with_events(rate, &[512], &input, true, &mut |k, n, b| {
        if k == 3 {
            b.push(&ParamValueEvent::new(
                n as u32 - 1,
                low,
                Pckn::match_all(),
                2.0,
            ));
        }
    });
    assert_eq!(latency, quality);
    assert_delayed_exactly(&input, &out, quality as usize, "Quality until the restart");
    assert!(restart(&plugin), "no restart requested after a Mode change");

    // The host restarts the plugin: Low latency, with its own latency, measured.
    let (out, low_latency) = plugin.run(rate, &[64, 1, 17], &input, true);
    assert_restarted_into_low_latency(&input, &out, low_latency, quality);
    assert_eq!(plugin.value("Mode"), 2.0);
    let (inside, elsewhere) = plugin.record(|s| {
        (
            s.latency_changed_in_activate.load(Ordering::SeqCst),
            s.latency_changed_elsewhere.load(Ordering::SeqCst),
        )
    });
    assert!(inside >= 1, "the host was never told of the new latency");
    assert_eq!(elsewhere, 0, "latency callback outside activate");
}

#[test]
fn every_parameter_automated_and_modulated_at_random_offsets() {
    let Some(mut plugin) = load() else { return };
    let rate = 48_000.0;
    let input = tone_and_noise(rate as usize * 3);
    let ranges = plugin.ranges.clone();
    let mut rng = Lcg(7);
    // As a host does: whenever the plugin asks for a restart, restart it and go on.
    for round in 0..4 {
        let (out, _) = plugin.run_with_events(
            rate,
            &[1, 17, 511, 4096, 64],
            &input,
            round % 2 == 1,
            &mut |_, n, b| {
                for _ in 0..rng.below(4) {
                    let p = ranges[rng.below(ranges.len())];
                    let time = match rng.below(3) {
                        0 => 0,
                        1 => n - 1,
                        _ => rng.below(n),
                    } as u32;
                    let mut v = p.min + rng.next() * (p.max - p.min);
                    if p.stepped {
                        v = v.round();
                    }
                    b.push(&ParamValueEvent::new(time, p.id, Pckn::match_all(), v));
                    if !p.stepped && rng.below(2) == 0 {
                        let amount = (rng.next() - 0.5) * (p.max - p.min);
                        b.push(&ParamModEvent::new(time, p.id, Pckn::match_all(), amount));
                    }
                }
            },
        );
        for c in &out {
            assert!(
                c.iter().all(|v| v.is_finite() && v.abs() < 16.0),
                "round {round}: output not finite or out of bounds"
            );
        }
        plugin.record(|s| s.restart_requested.store(false, Ordering::SeqCst));
    }
    let elsewhere = plugin.record(|s| s.latency_changed_elsewhere.load(Ordering::SeqCst));
    assert_eq!(elsewhere, 0, "latency callback outside activate");
}

#[test]
fn output_is_finite_and_normal_whatever_comes_in() {
    let Some(mut plugin) = load() else { return };
    plugin.set(&[("Mode", 2.0), ("Reduction", 1.0)]);
    let len = 48_000 * 2;
    let mut x: Vec<f32> = (0..len).map(|i| (i as f32 * 0.01).sin() * 0.3).collect();
    for i in (0..len).step_by(997) {
        x[i] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e-42][i % 4];
    }
    let (out, _) = plugin.run(48_000.0, &[1, 17, 511, 4096], &[x.clone(), x], false);
    for c in &out {
        assert!(
            c.iter()
                .all(|v| v.is_finite() && (*v == 0.0 || v.is_normal())),
            "non-finite or denormal output"
        );
    }
}

#[test]
fn parameters_round_trip_through_saved_state() {
    let Some(mut plugin) = load() else { return };
    plugin.set(&[
        ("Reduction", 0.42),
        ("Mode", 2.0),
        ("Listen to removed noise", 1.0),
    ]);
    let mut saved = Vec::new();
    {
        let handle = plugin.instance.plugin_handle();
        let ext: PluginState = handle.get_extension().expect("state extension");
        ext.save(&handle, &mut saved).unwrap();
    }
    let Some(mut other) = load() else { return };
    {
        let handle = other.instance.plugin_handle();
        let ext: PluginState = handle.get_extension().unwrap();
        ext.load(&handle, &mut saved.as_slice()).unwrap();
    }
    assert!((other.value("Reduction") - 0.42).abs() < 1e-6);
    assert_eq!(other.value("Mode"), 2.0);
    assert_eq!(other.value("Listen to removed noise"), 1.0);
}

#[test]
fn noisy_speech_comes_out_cleaner() {
    let Some(mut plugin) = load() else { return };
    let rate = 48_000.0;
    let Some((clean, noisy)) = noisy_speech(rate, 8.0) else {
        return;
    };
    for mode in [0.0, 2.0] {
        plugin.set(&[("Mode", mode), ("Reduction", 1.0)]);
        let (out, latency) = plugin.run(
            rate,
            &[511, 17, 4096],
            &[noisy.clone(), noisy.clone()],
            true,
        );
        assert_cleaner(
            &clean,
            &noisy,
            &out[0],
            latency as usize,
            &format!("mode {mode}"),
        );
    }
}
