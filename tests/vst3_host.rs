//! The built VST3 plugin loaded the way a DAW loads it, through the `vst3` crate's bindings:
//! the factory, the component with its audio processor and edit controller, stereo buses,
//! activation at common rates with odd block sizes, the reported latency against a measured
//! impulse delay, Reduction 0 % giving the delayed input bit for bit, finite output whatever
//! comes in, parameters through saved state (`getState`/`setState`), a Mode change (sent in
//! `process` as a host's automation is) taking effect at once with its new latency reported
//! through `restartComponent(kLatencyChanged)`, which never comes from the audio thread, and
//! real noisy speech coming out cleaner. `process` runs on a thread of its
//! own, as in a host.
//!
//! Like the CLAP test it needs the bundle (built by `cargo xtask test` with the audio-thread
//! allocation check, see `clap_host.rs`) and skips with a message without it, unless
//! `WAVECRN_REQUIRE_BUNDLE` is set.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use vst3::Steinberg::Vst::{
    AudioBusBuffers, AudioBusBuffers__type0, BusDirections_, IAudioProcessor, IAudioProcessorTrait,
    IComponent, IComponentHandler, IComponentHandlerTrait, IComponentTrait, IEditController,
    IEditControllerTrait, IParamValueQueue, IParamValueQueueTrait, IParameterChanges,
    IParameterChangesTrait, MediaTypes_, ParamID, ParamValue, ParameterInfo, ProcessData,
    ProcessModes_, ProcessSetup, RestartFlags_, SpeakerArr, SymbolicSampleSizes_,
};
use vst3::Steinberg::{
    int32, kInvalidArgument, kResultOk, tresult, IBStream, IBStreamTrait,
    IBStream_::IStreamSeekMode_, IPluginBaseTrait, IPluginFactory, IPluginFactoryTrait, PClassInfo,
    TUID,
};
use vst3::{Class, ComPtr, ComWrapper, Interface};

#[path = "common/speech.rs"]
mod speech;
use speech::{
    assert_cleaner, assert_delayed_exactly, assert_restarted_into_low_latency, impulse_and_noise,
    noisy_speech, tone_and_noise,
};

struct Loaded {
    component: ComPtr<IComponent>,
    processor: ComPtr<IAudioProcessor>,
    controller: ComPtr<IEditController>,
    handler: ComWrapper<ComponentHandler>,
    params: HashMap<String, ParamID>,
    // Last: the library must outlive every object it made.
    _library: libloading::Library,
}

/// The plugin's audio module class, instantiated and initialised as a host does on Linux.
fn load() -> Option<Loaded> {
    let bundle = wavecrn_tests::built_bundle("WaveCRN Denoise.vst3")?;
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
        let handler = ComWrapper::new(ComponentHandler::default());
        let handler_ptr = handler.to_com_ptr::<IComponentHandler>().unwrap();
        assert_eq!(
            controller.setComponentHandler(handler_ptr.as_ptr()),
            kResultOk
        );
        Some(Loaded {
            component,
            processor,
            controller,
            handler,
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
        let run = self.run_with_changes(rate, blocks, input, offline, &|_, _| vec![]);
        assert!(
            run.switches.is_empty(),
            "latency changed without a Mode change"
        );
        (run.out, run.latency)
    }

    /// [`Self::run`], with `changes(block, frames)` giving each block's parameter changes
    /// (id, sample offset, normalised value), handed to `process` as hosts hand automation.
    /// Also returns the id of the thread `process` ran on, and each change of the reported
    /// latency while active: (the first frame of the block after which it changed, the new
    /// latency).
    fn run_with_changes(
        &self,
        rate: f64,
        blocks: &[usize],
        input: &[Vec<f32>],
        offline: bool,
        changes: &(dyn Fn(usize, usize) -> Vec<(ParamID, i32, f64)> + Sync),
    ) -> Processed {
        self.run_then(rate, blocks, input, offline, changes, &|| {})
    }

    /// [`Self::run_with_changes`], calling `before_deactivating` once the audio thread has
    /// stopped and before the plugin is deactivated.
    fn run_then(
        &self,
        rate: f64,
        blocks: &[usize],
        input: &[Vec<f32>],
        offline: bool,
        changes: &(dyn Fn(usize, usize) -> Vec<(ParamID, i32, f64)> + Sync),
        before_deactivating: &dyn Fn(),
    ) -> Processed {
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
            let processor = &self.processor;
            let out = &mut out;
            let mut switches = vec![];
            let switches_seen = &mut switches;
            let audio_thread = std::thread::scope(|scope| {
                scope
                    .spawn(move || {
                        assert_eq!(processor.setProcessing(1), kResultOk);
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
                            let block_changes =
                                ComWrapper::new(ParameterChanges::new(changes(k, n)));
                            let block_changes =
                                block_changes.to_com_ptr::<IParameterChanges>().unwrap();
                            let mut data = ProcessData {
                                processMode: mode,
                                symbolicSampleSize: SymbolicSampleSizes_::kSample32 as i32,
                                numSamples: n as i32,
                                numInputs: 1,
                                numOutputs: 1,
                                inputs: &mut in_bus,
                                outputs: &mut out_bus,
                                inputParameterChanges: block_changes.as_ptr(),
                                outputParameterChanges: null_mut(),
                                inputEvents: null_mut(),
                                outputEvents: null_mut(),
                                processContext: null_mut(),
                            };
                            assert_eq!(processor.process(&mut data), kResultOk, "process");
                            let now = processor.getLatencySamples();
                            let last = switches_seen.last().map_or(latency, |s: &(usize, u32)| s.1);
                            if now != last {
                                switches_seen.push((start + n, now));
                            }
                            start += n;
                            k += 1;
                        }
                        assert_eq!(processor.setProcessing(0), kResultOk);
                        std::thread::current().id()
                    })
                    .join()
                    .expect("the audio thread")
            });
            before_deactivating();
            assert_eq!(self.component.setActive(0), kResultOk);
            (latency, audio_thread, switches)
        };
        Processed {
            out,
            latency: latency.0,
            audio_thread: latency.1,
            switches: latency.2,
        }
    }

    /// Waits up to two seconds for the plugin to ask the host for a latency restart; returns
    /// the threads it asked from, and forgets them.
    fn latency_restarts(&self) -> Vec<ThreadId> {
        let latency = RestartFlags_::kLatencyChanged;
        let until = Instant::now() + Duration::from_secs(2);
        loop {
            let asked: Vec<ThreadId> = self
                .handler
                .restarts
                .lock()
                .unwrap()
                .drain(..)
                .filter(|(flags, _)| flags & latency != 0)
                .map(|(_, thread)| thread)
                .collect();
            if !asked.is_empty() || Instant::now() > until {
                return asked;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The host's side of the edit controller: records the restarts the plugin asks for, and
/// can hold them at its [`Gate`].
#[derive(Default)]
struct ComponentHandler {
    restarts: Mutex<Vec<(i32, ThreadId)>>,
    gate: Gate,
}

/// While closed, holds every `restartComponent` call, as a host busy on its main thread
/// holds a request it marshals there.
#[derive(Default)]
struct Gate {
    closed: Mutex<bool>,
    changed: Condvar,
    holding: AtomicBool,
}

impl Gate {
    fn close(&self) {
        *self.closed.lock().unwrap() = true;
    }

    fn open(&self) {
        *self.closed.lock().unwrap() = false;
        self.changed.notify_all();
    }

    fn pass(&self) {
        let mut closed = self.closed.lock().unwrap();
        while *closed {
            self.holding.store(true, Ordering::SeqCst);
            closed = self.changed.wait(closed).unwrap();
        }
    }

    /// Whether a call came to the closed gate within `patience`.
    fn held_one_within(&self, patience: Duration) -> bool {
        let until = Instant::now() + patience;
        while !self.holding.load(Ordering::SeqCst) {
            if Instant::now() > until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }
}

impl Class for ComponentHandler {
    type Interfaces = (IComponentHandler,);
}

impl IComponentHandlerTrait for ComponentHandler {
    unsafe fn beginEdit(&self, _id: ParamID) -> tresult {
        kResultOk
    }
    unsafe fn performEdit(&self, _id: ParamID, _value: ParamValue) -> tresult {
        kResultOk
    }
    unsafe fn endEdit(&self, _id: ParamID) -> tresult {
        kResultOk
    }
    unsafe fn restartComponent(&self, flags: int32) -> tresult {
        let thread = std::thread::current().id();
        self.restarts.lock().unwrap().push((flags, thread));
        self.gate.pass();
        kResultOk
    }
}

/// One parameter's changes within a block.
struct ValueQueue {
    id: ParamID,
    points: Vec<(i32, f64)>,
}

impl Class for ValueQueue {
    type Interfaces = (IParamValueQueue,);
}

impl IParamValueQueueTrait for ValueQueue {
    unsafe fn getParameterId(&self) -> ParamID {
        self.id
    }
    unsafe fn getPointCount(&self) -> int32 {
        self.points.len() as int32
    }
    unsafe fn getPoint(&self, index: int32, offset: *mut int32, value: *mut ParamValue) -> tresult {
        let Some(&(at, v)) = self.points.get(index as usize) else {
            return kInvalidArgument;
        };
        // SAFETY: valid out-pointers from the caller.
        unsafe {
            *offset = at;
            *value = v;
        }
        kResultOk
    }
    unsafe fn addPoint(&self, _offset: int32, _value: ParamValue, _index: *mut int32) -> tresult {
        kInvalidArgument
    }
}

/// A block's parameter changes, one queue per parameter, as hosts hand them to `process`.
struct ParameterChanges {
    queues: Vec<ComWrapper<ValueQueue>>,
}

impl ParameterChanges {
    fn new(changes: Vec<(ParamID, i32, f64)>) -> Self {
        let mut by_id: Vec<(ParamID, Vec<(i32, f64)>)> = Vec::new();
        for (id, at, v) in changes {
            match by_id.iter_mut().find(|(i, _)| *i == id) {
                Some((_, points)) => points.push((at, v)),
                None => by_id.push((id, vec![(at, v)])),
            }
        }
        let queues = by_id
            .into_iter()
            .map(|(id, mut points)| {
                points.sort_by_key(|p| p.0);
                ComWrapper::new(ValueQueue { id, points })
            })
            .collect();
        Self { queues }
    }
}

impl Class for ParameterChanges {
    type Interfaces = (IParameterChanges,);
}

impl IParameterChangesTrait for ParameterChanges {
    unsafe fn getParameterCount(&self) -> int32 {
        self.queues.len() as int32
    }
    unsafe fn getParameterData(&self, index: int32) -> *mut IParamValueQueue {
        self.queues
            .get(index as usize)
            .and_then(|q| q.as_com_ref::<IParamValueQueue>())
            .map_or(null_mut(), |q| q.as_ptr())
    }
    unsafe fn addParameterData(
        &self,
        _id: *const ParamID,
        _index: *mut int32,
    ) -> *mut IParamValueQueue {
        null_mut()
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

/// What [`Loaded::run_with_changes`] gives back: the output, the latency reported after
/// activation, the thread `process` ran on, and each change of the reported latency while
/// active (the first frame of the block after which it changed, the new latency).
struct Processed {
    out: Vec<Vec<f32>>,
    latency: u32,
    audio_thread: ThreadId,
    switches: Vec<(usize, u32)>,
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
        "Noise floor",
    ] {
        assert!(plugin.params.contains_key(name), "parameter {name}");
    }
    // From under telephone rates (as clap-validator tries on the CLAP side) to DXD and beyond.
    for rate in [
        1_234.567_8,
        8_000.0,
        12_345.678,
        44_100.0,
        48_000.0,
        192_000.0,
        768_000.0,
    ] {
        // Mode is a three-step parameter: normalised 0, 0.5, 1.
        for mode in [0.0, 0.5, 1.0] {
            plugin.set(&[("Mode", mode), ("Reduction", 0.0)]);
            // Long enough for Quality's latency (2.65 s at 8 kHz, 6.2 s at 1234.57 Hz) to be under
            // half of it.
            let input =
                impulse_and_noise((rate * if rate < 8_000.0 { 16.0 } else { 6.0 }) as usize);
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

/// From frame `switch` on, the output (at Reduction 0 %: the input delayed) goes from the
/// input delayed by `before` to the input delayed by `after` over the 10 ms crossfade, every
/// frame of it between the two, and is the latter bit for bit from its end: no silence, no cut.
fn assert_crossfaded(
    input: &[Vec<f32>],
    out: &[Vec<f32>],
    switch: usize,
    before: u32,
    after: u32,
    rate: f64,
) {
    let fade = (0.01 * rate).round() as usize;
    let (before, after) = (before as usize, after as usize);
    for (c, (x, y)) in input.iter().zip(out).enumerate() {
        for t in switch..switch + fade {
            let (a, b) = (x[t - before], x[t - after]);
            assert!(
                y[t] >= a.min(b) - 1e-6 && y[t] <= a.max(b) + 1e-6,
                "channel {c}, frame {t} of the crossfade: {} not between {a} and {b}",
                y[t]
            );
        }
        for t in switch + fade..y.len() {
            assert_eq!(y[t], x[t - after], "channel {c}, frame {t}");
        }
    }
}

#[test]
fn a_mode_change_switches_at_once_and_tells_the_host_the_new_latency() {
    let _shared = TASK_THREAD.lock().unwrap_or_else(|e| e.into_inner());
    let Some(plugin) = load() else { return };
    let rate = 48_000.0;
    let input = impulse_and_noise(rate as usize * 5);
    plugin.set(&[("Mode", 0.0), ("Reduction", 0.0)]);
    // The first activation reports a latency the host has not seen: nice-plug asks for a
    // restart then. After that, no restart without a reason.
    plugin.run(rate, &[512], &input, true);
    plugin.latency_restarts();
    let (out, quality) = plugin.run(rate, &[512], &input, true);
    assert_delayed_exactly(&input, &out, quality as usize, "Quality");

    // Mode -> Low latency (normalised 1) in the last frame of a block once Quality's output
    // has begun, through `process`: the plugin switches within that block, reports the new
    // latency, and tells the host with restartComponent(kLatencyChanged), from a thread other
    // than the audio thread (Ardour 7.3 only reads the latency again; others re-activate).
    let mode = plugin.id("Mode");
    let block = quality as usize / 512 + 4;
    let Processed {
        out,
        latency,
        audio_thread,
        switches,
    } = plugin.run_with_changes(rate, &[512], &input, true, &|k, n| {
        if k == block {
            vec![(mode, n as i32 - 1, 1.0)]
        } else {
            vec![]
        }
    });
    assert_eq!(latency, quality);
    let &[(after, low)] = switches.as_slice() else {
        panic!("one latency change expected, got {switches:?}");
    };
    assert_eq!(
        after,
        (block + 1) * 512,
        "the latency changed after the wrong block"
    );
    assert!(low * 10 < quality, "{low} vs {quality}");
    let asked = plugin.latency_restarts();
    assert!(
        !asked.is_empty(),
        "no restartComponent(kLatencyChanged) after a Mode change"
    );
    assert!(
        asked.iter().all(|t| *t != audio_thread),
        "restartComponent called from the audio thread"
    );
    // Quality (Reduction 0 %: the input, delayed) up to the block of the change; then a
    // crossfade to the input delayed by the new latency, and that, bit for bit.
    // (Channel 1 holds noise from the first frame; channel 0 only an impulse.)
    let switch = (quality as usize..out[1].len())
        .find(|&t| out[1][t] != input[1][t - quality as usize])
        .expect("the output never left Quality");
    assert!(
        (block * 512..=(block + 1) * 512).contains(&switch),
        "Quality left at frame {switch}, the change came in block {block}"
    );
    assert_crossfaded(&input, &out, switch, quality, low, rate);

    // A host that re-activates on the request gets Low latency from the start, measured.
    let (out, low_latency) = plugin.run(rate, &[64, 1, 17], &input, true);
    assert_eq!(low_latency, low);
    assert_restarted_into_low_latency(&input, &out, low_latency, quality);

    // And back, Low latency -> Quality: the slower mode starts from the recent input, not
    // from a latency's worth of silence (it repeats what its extra latency needs).
    // (The plugin is in Low latency since the change above; the change back comes once
    // Quality's latency has passed, so its whole delay line is input.)
    let block = quality as usize / 512 + 20;
    let Processed {
        out,
        latency,
        switches,
        ..
    } = plugin.run_with_changes(rate, &[512], &input, true, &|k, n| {
        if k == block {
            vec![(mode, n as i32 - 1, 0.0)]
        } else {
            vec![]
        }
    });
    assert_eq!(latency, low);
    let latencies: Vec<u32> = switches.iter().map(|s| s.1).collect();
    assert_eq!(latencies, [quality], "{switches:?}");
    let switch = ((block - 1) * 512..out[1].len())
        .find(|&t| out[1][t] != input[1][t - low as usize])
        .expect("the output never left Low latency");
    assert!(
        (block * 512..=(block + 1) * 512).contains(&switch),
        "Low latency left at frame {switch}, the change came in block {block}"
    );
    assert_crossfaded(&input, &out, switch, low, quality, rate);
}

#[test]
fn every_parameter_automated_at_random_offsets() {
    let Some(plugin) = load() else { return };
    let rate = 48_000.0;
    let input = tone_and_noise(rate as usize * 3);
    let ids: Vec<ParamID> = plugin.params.values().copied().collect();
    // A small deterministic generator, shared by the audio thread's change lists.
    let state = Mutex::new(7u64);
    let next = || {
        let mut s = state.lock().unwrap();
        *s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*s >> 11) as f64 / (1u64 << 53) as f64
    };
    for round in 0..3 {
        let Processed {
            out, audio_thread, ..
        } = plugin.run_with_changes(
            rate,
            &[1, 17, 511, 4096, 64],
            &input,
            round == 1,
            &|_, n| {
                let count = (next() * 4.0) as usize;
                (0..count)
                    .map(|_| {
                        let id = ids[(next() * ids.len() as f64) as usize % ids.len()];
                        let at = match (next() * 3.0) as usize {
                            0 => 0,
                            1 => n - 1,
                            _ => (next() * n as f64) as usize % n,
                        };
                        (id, at as i32, next())
                    })
                    .collect()
            },
        );
        for c in &out {
            assert!(
                c.iter().all(|v| v.is_finite() && v.abs() < 16.0),
                "round {round}: output not finite or out of bounds"
            );
        }
        // As a host does: restart when asked (the next round activates again).
        let asked = plugin.latency_restarts();
        assert!(
            asked.iter().all(|t| *t != audio_thread),
            "restartComponent called from the audio thread"
        );
    }
}

/// Held by the tests that hold up or time nice-plug's task thread, which every instance in
/// the process shares.
static TASK_THREAD: Mutex<()> = Mutex::new(());

#[test]
fn an_instance_removed_with_host_tasks_queued_leaves_the_others_working() {
    // nice-plug runs the host-side tasks of every instance (an automated parameter's value for
    // the editor, a latency restart) on one shared thread, which stops for good at a task whose
    // instance is gone. So an instance deleted right after automation, while that thread is
    // still busy (here: held up by a host slow in `restartComponent`), must not leave tasks
    // behind, or the other instances' latency changes never reach the host and removing the
    // last of them aborts it.
    let _shared = TASK_THREAD.lock().unwrap_or_else(|e| e.into_inner());
    let (Some(kept), Some(removed)) = (load(), load()) else {
        return;
    };
    let removed_ids: Vec<ParamID> = removed.params.values().copied().collect();
    let removed = RefCell::new(Some(removed));
    let rate = 48_000.0;
    let input = tone_and_noise(rate as usize / 4);
    let block = 64;
    let blocks = input[0].len().div_ceil(block);
    let mode = kept.id("Mode");
    kept.set(&[("Mode", 0.0)]);
    kept.run(rate, &[block], &input, false);
    kept.latency_restarts();
    let gate_opened = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // The kept instance switches to Low latency in its last block; its restart request
        // waits at the host's closed gate, on the shared thread, while the other instance
        // is automated, deactivated and deleted. The gate opens a little after that
        // instance's last block.
        kept.run_then(
            rate,
            &[block],
            &input,
            false,
            &|k, n| {
                if k + 1 == blocks {
                    kept.handler.gate.close();
                    vec![(mode, n as i32 - 1, 1.0)]
                } else {
                    vec![]
                }
            },
            &|| {
                assert!(
                    kept.handler.gate.held_one_within(Duration::from_secs(5)),
                    "the Mode change's restart never reached the host"
                );
                let plugin = removed.borrow_mut().take().expect("the second instance");
                plugin.run_with_changes(rate, &[block], &input, false, &|k, n| {
                    if k + 1 == blocks && !gate_opened.swap(true, Ordering::SeqCst) {
                        scope.spawn(|| {
                            std::thread::sleep(Duration::from_millis(300));
                            kept.handler.gate.open();
                        });
                    }
                    removed_ids
                        .iter()
                        .enumerate()
                        .map(|(i, &id)| (id, (i * 7 % n) as i32, ((k + i) % 5) as f64 / 4.0))
                        .collect()
                });
                // Deleted as soon as it is deactivated, as a host deletes a plugin.
                drop(plugin);
            },
        );
    });
    kept.latency_restarts();
    // Back to Quality: its restart must reach the host.
    kept.run_with_changes(rate, &[block], &input, false, &|k, n| {
        if k == 1 {
            vec![(mode, n as i32 - 1, 0.0)]
        } else {
            vec![]
        }
    });
    if kept.latency_restarts().is_empty() {
        // Releasing it now would abort the test process instead of failing this test.
        std::mem::forget(kept);
        panic!("the shared task thread stopped: a Mode change no longer reaches the host");
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

/// As clap-validator's `state-invalid-empty` and `state-invalid-random` do on the CLAP side: a
/// host that hands over an empty or garbled state gets a refusal, and the plugin keeps the
/// parameters it had and goes on processing.
#[test]
fn empty_or_random_state_is_refused_and_changes_nothing() {
    let Some(plugin) = load() else { return };
    plugin.set(&[("Reduction", 0.4), ("Mode", 0.5)]);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    };
    let mut states = vec![Vec::new(), random(1), random(64)];
    states.extend((0..3).map(|_| random(1 << 20)));
    for bytes in states {
        let len = bytes.len();
        let stream = ComWrapper::new(MemoryStream {
            bytes: RefCell::new(bytes),
            at: RefCell::new(0),
        });
        let ptr = stream.to_com_ptr::<IBStream>().unwrap();
        // SAFETY: the stream lives through the call.
        let result = unsafe { plugin.component.setState(ptr.as_ptr()) };
        assert_ne!(
            result, kResultOk,
            "{len} bytes of garbage accepted as a state"
        );
        assert!(
            (plugin.value("Reduction") - 0.4).abs() < 1e-6,
            "{len} bytes"
        );
        assert!((plugin.value("Mode") - 0.5).abs() < 1e-6, "{len} bytes");
    }
    let input = tone_and_noise(48_000);
    let (out, _) = plugin.run(48_000.0, &[512], &input, false);
    assert!(out.iter().flatten().all(|v| v.is_finite()));
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
