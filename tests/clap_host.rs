//! The built CLAP plugin loaded the way a DAW loads it (clack-host): activation at common rates
//! with odd block sizes, finite output, the reported latency against a measured impulse delay,
//! Reduction 0 % giving the delayed input bit for bit, parameters through saved state, and
//! real noisy speech coming out cleaner.
//!
//! It needs the bundle. `cargo xtask test` builds it first in the `checked` profile with
//! nice-plug's `assert_process_allocs`, so any allocation inside `process()` aborts the test
//! (`cargo xtask bundle wavecrn --profile checked --features assert_process_allocs`); a plain
//! `--release` bundle works too, without that check. Without a bundle the test says so and
//! skips, unless `WAVECRN_REQUIRE_BUNDLE` is set.

use std::collections::HashMap;
use std::ffi::CString;

use clack_extensions::latency::{HostLatency, HostLatencyImpl, PluginLatency};
use clack_extensions::params::{ParamInfoBuffer, PluginParams};
use clack_extensions::render::{PluginRender, RenderMode};
use clack_extensions::state::PluginState;
use clack_host::events::event_types::ParamValueEvent;
use clack_host::prelude::*;
use clack_host::utils::ClapId;
use wavecrn_tests::repo_root;

#[path = "common/speech.rs"]
mod speech;
use speech::{assert_cleaner, assert_delayed_exactly, impulse_and_noise, noisy_speech};

struct Shared;
impl SharedHandler<'_> for Shared {
    fn request_restart(&self) {}
    fn request_process(&self) {}
    fn request_callback(&self) {}
}

struct MainThread;
impl MainThreadHandler<'_> for MainThread {}
impl HostLatencyImpl for MainThread {
    fn changed(&self) {}
}

struct Host;
impl HostHandlers for Host {
    type Shared<'a> = Shared;
    type MainThread<'a> = MainThread;
    type AudioProcessor<'a> = ();

    fn declare_extensions(builder: &mut HostExtensions<Self>, _: &Self::Shared<'_>) {
        builder.register::<HostLatency>();
    }
}

/// The plugin, loaded and instantiated.
struct Loaded {
    _entry: PluginEntry,
    instance: PluginInstance<Host>,
    params: HashMap<String, ClapId>,
}

fn load() -> Option<Loaded> {
    let path = repo_root().join("target/bundled/WaveCRN Denoise.clap");
    if !path.exists() {
        assert!(
            std::env::var_os("WAVECRN_REQUIRE_BUNDLE").is_none(),
            "{} is missing: run `cargo xtask bundle wavecrn --release`",
            path.display()
        );
        eprintln!("SKIPPED: {} is missing", path.display());
        return None;
    }
    // SAFETY: the bundle is this repository's own plugin.
    let entry = unsafe { PluginEntry::load(&path) }.expect("the bundle loads");
    let info = HostInfo::new("wavecrn tests", "wavecrn", "https://example.invalid", "1").unwrap();
    let id = CString::new("com.wavecrn.denoise").unwrap();
    let mut instance =
        PluginInstance::<Host>::new(|_| Shared, |_| MainThread, &entry, &id, &info).unwrap();
    let mut params = HashMap::new();
    let handle = instance.plugin_handle();
    let ext: PluginParams = handle.get_extension().expect("the plugin has parameters");
    for i in 0..ext.count(&handle) {
        let mut buffer = ParamInfoBuffer::new();
        let info = ext.get_info(&handle, i, &mut buffer).unwrap();
        params.insert(String::from_utf8_lossy(info.name).into_owned(), info.id);
    }
    Some(Loaded {
        _entry: entry,
        instance,
        params,
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
        let processor = self
            .instance
            .activate(|_, _| (), config)
            .expect("activates");
        let latency = {
            let handle = self.instance.plugin_handle();
            let ext: PluginLatency = handle.get_extension().expect("reports latency");
            ext.get(&handle)
        };
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
            processor
                .process(
                    &ins,
                    &mut outs,
                    &InputEvents::empty(),
                    &mut OutputEvents::void(),
                    None,
                    None,
                )
                .expect("processes");
            for c in 0..ch {
                out[c].extend_from_slice(&out_buf[c][..n]);
            }
            at += n;
            k += 1;
        }
        self.instance.deactivate(processor.stop_processing());
        (out, latency)
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
    ] {
        assert!(plugin.params.contains_key(name), "parameter {name}");
    }
    for rate in [44_100.0, 48_000.0] {
        for mode in [0.0, 1.0, 2.0] {
            // An impulse through the dry path (Reduction 0 %): out after exactly the latency,
            // bit for bit, at odd block sizes.
            plugin.set(&[("Mode", mode), ("Reduction", 0.0)]);
            let input = impulse_and_noise(rate as usize * 5);
            let (out, latency) = plugin.run(rate, &[1, 17, 511, 4096], &input, true);
            let latency = latency as usize;
            assert_delayed_exactly(&input, &out, latency, &format!("mode {mode} at {rate} Hz"));
            eprintln!(
                "mode {mode} at {rate} Hz: latency {latency} frames ({:.1} ms)",
                latency as f64 / rate * 1000.0
            );
        }
    }
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
