//! The built VST3 plugin loaded the way a DAW loads it, through the `vst3` crate's bindings:
//! the factory, the component with its audio processor and edit controller, stereo buses,
//! activation at common rates with odd block sizes, the reported latency against a measured
//! impulse delay, Reduction 0 % giving the delayed input bit for bit, finite output whatever
//! comes in, parameters through saved state (`getState`/`setState`), and real noisy speech
//! coming out cleaner.
//!
//! Like the CLAP test it needs the bundle (built by `cargo xtask test` with the audio-thread
//! allocation check, see `clap_host.rs`) and skips with a message without it, unless
//! `WAVECRN_REQUIRE_BUNDLE` is set.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr};
use std::ptr::null_mut;

use vst3::Steinberg::Vst::{
    AudioBusBuffers, AudioBusBuffers__type0, BusDirections_, IAudioProcessor, IAudioProcessorTrait,
    IComponent, IComponentTrait, IEditController, IEditControllerTrait, MediaTypes_, ParamID,
    ParameterInfo, ProcessData, ProcessModes_, ProcessSetup, SpeakerArr, SymbolicSampleSizes_,
};
use vst3::Steinberg::{
    kResultOk, tresult, IBStream, IBStreamTrait, IBStream_::IStreamSeekMode_, IPluginBaseTrait,
    IPluginFactory, IPluginFactoryTrait, PClassInfo, TUID,
};
use vst3::{Class, ComPtr, ComWrapper, Interface};
use wavecrn_tests::repo_root;

#[path = "common/speech.rs"]
mod speech;
use speech::{assert_cleaner, assert_delayed_exactly, impulse_and_noise, noisy_speech};

struct Loaded {
    component: ComPtr<IComponent>,
    processor: ComPtr<IAudioProcessor>,
    controller: ComPtr<IEditController>,
    params: HashMap<String, ParamID>,
    // Last: the library must outlive every object it made.
    _library: libloading::Library,
}

/// The plugin's audio module class, instantiated and initialised as a host does on Linux.
fn load() -> Option<Loaded> {
    let bundle = repo_root().join("target/bundled/WaveCRN Denoise.vst3");
    if !bundle.exists() {
        assert!(
            std::env::var_os("WAVECRN_REQUIRE_BUNDLE").is_none(),
            "{} is missing: run `cargo xtask bundle wavecrn --release`",
            bundle.display()
        );
        eprintln!("SKIPPED: {} is missing", bundle.display());
        return None;
    }
    let binary = bundle.join("Contents/x86_64-linux/WaveCRN Denoise.so");
    // SAFETY: the bundle is this repository's own plugin; the entry points have the VST3
    // SDK's signatures, and every COM call follows the SDK's order (initialise, set up,
    // activate, process, deactivate).
    unsafe {
        let library = libloading::Library::new(&binary).expect("the plugin library loads");
        let entry: libloading::Symbol<unsafe extern "C" fn(*mut c_void) -> bool> =
            library.get(b"ModuleEntry").expect("ModuleEntry");
        assert!(entry(null_mut()), "ModuleEntry failed");
        let get_factory: libloading::Symbol<unsafe extern "system" fn() -> *mut IPluginFactory> =
            library.get(b"GetPluginFactory").expect("GetPluginFactory");
        let factory = ComPtr::from_raw(get_factory()).expect("a factory");
        let mut cid: Option<TUID> = None;
        for i in 0..factory.countClasses() {
            let mut info: PClassInfo = std::mem::zeroed();
            assert_eq!(factory.getClassInfo(i, &mut info), kResultOk);
            let category = CStr::from_ptr(info.category.as_ptr()).to_string_lossy();
            if category == "Audio Module Class" {
                cid = Some(info.cid);
            }
        }
        let cid = cid.expect("an audio module class");
        let mut object: *mut c_void = null_mut();
        let created = factory.createInstance(
            cid.as_ptr(),
            IComponent::IID.as_ptr() as *const c_char,
            &mut object,
        );
        assert_eq!(created, kResultOk, "createInstance");
        let component = ComPtr::from_raw(object as *mut IComponent).expect("a component");
        assert_eq!(component.initialize(null_mut()), kResultOk);
        let processor = component
            .cast::<IAudioProcessor>()
            .expect("an audio processor");
        let controller = component
            .cast::<IEditController>()
            .expect("a single-component edit controller");
        let mut params = HashMap::new();
        for i in 0..controller.getParameterCount() {
            let mut info: ParameterInfo = std::mem::zeroed();
            assert_eq!(controller.getParameterInfo(i, &mut info), kResultOk);
            let end = info.title.iter().position(|&c| c == 0).unwrap_or(128);
            params.insert(String::from_utf16_lossy(&info.title[..end]), info.id);
        }
        Some(Loaded {
            component,
            processor,
            controller,
            params,
            _library: library,
        })
    }
}

impl Loaded {
    fn id(&self, name: &str) -> ParamID {
        *self
            .params
            .get(name)
            .unwrap_or_else(|| panic!("no parameter {name}"))
    }

    /// Sets normalised parameter values while inactive, as a host restoring a session does.
    fn set(&self, values: &[(&str, f64)]) {
        for (name, v) in values {
            // SAFETY: a plain controller call on a live object.
            let r = unsafe { self.controller.setParamNormalized(self.id(name), *v) };
            assert_eq!(r, kResultOk, "{name}");
        }
    }

    fn value(&self, name: &str) -> f64 {
        // SAFETY: as in `set`.
        unsafe { self.controller.getParamNormalized(self.id(name)) }
    }

    /// Activates at `rate` with stereo buses, processes `input` (planar, two channels) in
    /// blocks cycling through `blocks`, deactivates. Offline, the plugin waits for its worker;
    /// in real time it passes the aligned dry signal wherever the worker is behind. Returns
    /// the output and the latency reported after activation.
    fn run(
        &self,
        rate: f64,
        blocks: &[usize],
        input: &[Vec<f32>],
        offline: bool,
    ) -> (Vec<Vec<f32>>, u32) {
        let max = *blocks.iter().max().unwrap();
        let mode = if offline {
            ProcessModes_::kOffline
        } else {
            ProcessModes_::kRealtime
        } as i32;
        let (audio, main) = (MediaTypes_::kAudio as i32, 0);
        let (inward, outward) = (
            BusDirections_::kInput as i32,
            BusDirections_::kOutput as i32,
        );
        let len = input[0].len();
        let mut out = vec![vec![0.0f32; len]; 2];
        // SAFETY: the SDK's call order; every buffer handed over lives through the call and
        // holds the frames and channels announced.
        let latency = unsafe {
            let (mut ins, mut outs) = (SpeakerArr::kStereo, SpeakerArr::kStereo);
            assert_eq!(
                self.processor.setBusArrangements(&mut ins, 1, &mut outs, 1),
                kResultOk,
                "stereo in, stereo out"
            );
            assert_eq!(
                self.component.activateBus(audio, inward, main, 1),
                kResultOk
            );
            assert_eq!(
                self.component.activateBus(audio, outward, main, 1),
                kResultOk
            );
            let mut setup = ProcessSetup {
                processMode: mode,
                symbolicSampleSize: SymbolicSampleSizes_::kSample32 as i32,
                maxSamplesPerBlock: max as i32,
                sampleRate: rate,
            };
            // nice-plug 0.4.2 activates with the process mode of the *previous*
            // setupProcessing call (it stores the buffer configuration before updating the
            // mode), so a render's first activation would run in real-time mode. Calling it
            // twice, as hosts do when they change settings, hands the plugin the mode asked for.
            for _ in 0..2 {
                assert_eq!(self.processor.setupProcessing(&mut setup), kResultOk);
            }
            assert_eq!(self.component.setActive(1), kResultOk);
            let latency = self.processor.getLatencySamples();
            assert_eq!(self.processor.setProcessing(1), kResultOk);
            let mut block_in = vec![vec![0.0f32; max]; 2];
            let (mut start, mut k) = (0, 0);
            while start < len {
                let n = blocks[k % blocks.len()].min(len - start);
                for (b, x) in block_in.iter_mut().zip(input) {
                    b[..n].copy_from_slice(&x[start..start + n]);
                }
                let mut in_ptrs: Vec<*mut f32> =
                    block_in.iter_mut().map(|b| b.as_mut_ptr()).collect();
                let mut out_ptrs: Vec<*mut f32> =
                    out.iter_mut().map(|o| o[start..].as_mut_ptr()).collect();
                let bus = |ptrs: &mut Vec<*mut f32>| AudioBusBuffers {
                    numChannels: 2,
                    silenceFlags: 0,
                    __field0: AudioBusBuffers__type0 {
                        channelBuffers32: ptrs.as_mut_ptr(),
                    },
                };
                let (mut in_bus, mut out_bus) = (bus(&mut in_ptrs), bus(&mut out_ptrs));
                let mut data = ProcessData {
                    processMode: mode,
                    symbolicSampleSize: SymbolicSampleSizes_::kSample32 as i32,
                    numSamples: n as i32,
                    numInputs: 1,
                    numOutputs: 1,
                    inputs: &mut in_bus,
                    outputs: &mut out_bus,
                    inputParameterChanges: null_mut(),
                    outputParameterChanges: null_mut(),
                    inputEvents: null_mut(),
                    outputEvents: null_mut(),
                    processContext: null_mut(),
                };
                assert_eq!(self.processor.process(&mut data), kResultOk, "process");
                start += n;
                k += 1;
            }
            assert_eq!(self.processor.setProcessing(0), kResultOk);
            assert_eq!(self.component.setActive(0), kResultOk);
            latency
        };
        (out, latency)
    }
}

/// A growable in-memory IBStream, as hosts hand plugins for their state.
#[derive(Default)]
struct MemoryStream {
    bytes: RefCell<Vec<u8>>,
    at: RefCell<usize>,
}

impl Class for MemoryStream {
    type Interfaces = (IBStream,);
}

impl IBStreamTrait for MemoryStream {
    unsafe fn read(&self, buffer: *mut c_void, num_bytes: i32, num_read: *mut i32) -> tresult {
        let bytes = self.bytes.borrow();
        let mut at = self.at.borrow_mut();
        let n = (num_bytes.max(0) as usize).min(bytes.len() - *at);
        // SAFETY: the caller's buffer holds `num_bytes`.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes[*at..].as_ptr(), buffer as *mut u8, n);
            if !num_read.is_null() {
                *num_read = n as i32;
            }
        }
        *at += n;
        kResultOk
    }

    unsafe fn write(&self, buffer: *mut c_void, num_bytes: i32, written: *mut i32) -> tresult {
        let mut bytes = self.bytes.borrow_mut();
        let mut at = self.at.borrow_mut();
        let n = num_bytes.max(0) as usize;
        // SAFETY: the caller's buffer holds `num_bytes`.
        let src = unsafe { std::slice::from_raw_parts(buffer as *const u8, n) };
        if bytes.len() < *at + n {
            bytes.resize(*at + n, 0);
        }
        bytes[*at..*at + n].copy_from_slice(src);
        *at += n;
        if !written.is_null() {
            // SAFETY: a valid out-pointer from the caller.
            unsafe { *written = n as i32 };
        }
        kResultOk
    }

    unsafe fn seek(&self, pos: i64, mode: i32, result: *mut i64) -> tresult {
        let len = self.bytes.borrow().len() as i64;
        let mut at = self.at.borrow_mut();
        let base = match mode {
            m if m == IStreamSeekMode_::kIBSeekSet as i32 => 0,
            m if m == IStreamSeekMode_::kIBSeekCur as i32 => *at as i64,
            _ => len,
        };
        *at = (base + pos).clamp(0, len) as usize;
        if !result.is_null() {
            // SAFETY: a valid out-pointer from the caller.
            unsafe { *result = *at as i64 };
        }
        kResultOk
    }

    unsafe fn tell(&self, pos: *mut i64) -> tresult {
        if !pos.is_null() {
            // SAFETY: a valid out-pointer from the caller.
            unsafe { *pos = *self.at.borrow() as i64 };
        }
        kResultOk
    }
}

#[test]
fn hosts_see_an_honest_glitch_free_denoiser() {
    let Some(plugin) = load() else { return };
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
        // Mode is a three-step parameter: normalised 0, 0.5, 1.
        for mode in [0.0, 0.5, 1.0] {
            plugin.set(&[("Mode", mode), ("Reduction", 0.0)]);
            let input = impulse_and_noise(rate as usize * 5);
            let (out, latency) = plugin.run(rate, &[1, 17, 511, 4096], &input, false);
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
    let Some(plugin) = load() else { return };
    plugin.set(&[("Mode", 1.0), ("Reduction", 1.0)]);
    let len = 48_000;
    let x: Vec<f32> = (0..len)
        .map(|i| match i % 97 {
            0 => f32::NAN,
            1 => f32::INFINITY,
            2 => f32::NEG_INFINITY,
            3 => 1e-40,
            _ => ((i as f32) * 0.05).sin() * 0.3,
        })
        .collect();
    let (out, _) = plugin.run(48_000.0, &[17, 511], &[x.clone(), x], false);
    for ch in &out {
        assert!(ch
            .iter()
            .all(|v| v.is_finite() && (*v == 0.0 || v.is_normal())));
    }
}

#[test]
fn parameters_round_trip_through_saved_state() {
    let Some(plugin) = load() else { return };
    plugin.set(&[
        ("Reduction", 0.25),
        ("Mode", 1.0),
        ("Listen to removed noise", 1.0),
    ]);
    let stream = ComWrapper::new(MemoryStream::default());
    let ptr = stream.to_com_ptr::<IBStream>().unwrap();
    // SAFETY: the stream lives through both calls.
    unsafe {
        assert_eq!(plugin.component.getState(ptr.as_ptr()), kResultOk);
        assert!(!stream.bytes.borrow().is_empty(), "some state was written");
        let other = load().unwrap();
        ptr.seek(0, IStreamSeekMode_::kIBSeekSet as i32, null_mut());
        assert_eq!(other.component.setState(ptr.as_ptr()), kResultOk);
        for name in ["Reduction", "Mode", "Listen to removed noise"] {
            assert!(
                (other.value(name) - plugin.value(name)).abs() < 1e-6,
                "{name}: {} vs {}",
                other.value(name),
                plugin.value(name)
            );
        }
        assert!((other.value("Reduction") - 0.25).abs() < 1e-6);
    }
}

#[test]
fn noisy_speech_comes_out_cleaner() {
    let Some(plugin) = load() else { return };
    let rate = 48_000.0;
    let Some((clean, noisy)) = noisy_speech(rate, 8.0) else {
        return;
    };
    for mode in [0.0, 1.0] {
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
