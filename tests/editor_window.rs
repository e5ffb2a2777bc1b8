//! The plugin's editor, on a real X server (Xvfb), opened the way a CLAP host opens it: the
//! `gui` extension embeds it in a window the host made, while the audio thread runs noisy
//! speech through the plugin. Screenshots (PNG, in `target/editor-window/`) must show a drawn
//! editor whose meters move; a click in the editor must reach the host as a parameter change
//! with its gesture; a change from the host must show in the editor; a destroy right after a
//! create must return, and the library must stay mapped after the host unloads it.
//!
//! It needs the CLAP bundle (see `clap_host.rs`) and `Xvfb` (Debian's `xvfb`, which
//! `cargo xtask test` installs); without either it says so and skips, unless
//! `WAVECRN_REQUIRE_BUNDLE` is set.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clack_extensions::gui::{
    GuiApiType, GuiConfiguration, GuiSize, HostGui, HostGuiImpl, PluginGui, Window as ClapWindow,
};
use clack_extensions::params::{
    HostParams, HostParamsImplMainThread, HostParamsImplShared, ParamClearFlags, ParamInfoBuffer,
    ParamRescanFlags, PluginParams,
};
use clack_extensions::state::PluginState;
use clack_host::events::event_types::{
    ParamGestureBeginEvent, ParamGestureEndEvent, ParamValueEvent,
};
use clack_host::events::io::EventBuffer;
use clack_host::prelude::*;
use clack_host::utils::ClapId;
use wavecrn_tests::repo_root;
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    ConnectionExt as _, CreateWindowAux, EventMask, ImageFormat, Window, WindowClass,
};
use x11rb::protocol::xtest::ConnectionExt as _;
use x11rb::rust_connection::RustConnection;

#[path = "common/speech.rs"]
#[allow(dead_code)]
mod speech;

const RATE: f64 = 48_000.0;
const BLOCK: usize = 512;

/// An X server of the test's own, stopped when dropped.
struct Xvfb {
    child: Child,
    display: String,
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Xvfb on a display it picks itself (`-displayfd`), or says why not.
fn start_xvfb() -> Option<Xvfb> {
    let required = std::env::var_os("WAVECRN_REQUIRE_BUNDLE").is_some();
    let mut child = match Command::new("Xvfb")
        .args([
            "-displayfd",
            "1",
            "-screen",
            "0",
            "1024x768x24",
            "-nolisten",
            "tcp",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            assert!(
                !required,
                "cannot start Xvfb ({e}): install the xvfb package"
            );
            eprintln!("SKIPPED: cannot start Xvfb ({e})");
            return None;
        }
    };
    // Xvfb writes its display number once it accepts connections.
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let n: u32 = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("Xvfb said {line:?}"));
    Some(Xvfb {
        child,
        display: format!(":{n}"),
    })
}

#[derive(Default)]
struct Shared {
    callback_requested: AtomicBool,
    flush_requested: AtomicBool,
    closed: AtomicBool,
}

impl SharedHandler<'_> for Shared {
    fn request_restart(&self) {}
    fn request_process(&self) {}
    fn request_callback(&self) {
        self.callback_requested.store(true, Ordering::SeqCst);
    }
}

impl HostGuiImpl for Shared {
    fn resize_hints_changed(&self) {}
    fn request_resize(&self, _size: GuiSize) -> Result<(), HostError> {
        Ok(())
    }
    fn request_show(&self) -> Result<(), HostError> {
        Ok(())
    }
    fn request_hide(&self) -> Result<(), HostError> {
        Ok(())
    }
    fn closed(&self, _was_destroyed: bool) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

impl HostParamsImplShared for Shared {
    fn request_flush(&self) {
        self.flush_requested.store(true, Ordering::SeqCst);
    }
}

struct MainThread;
impl MainThreadHandler<'_> for MainThread {}
impl HostParamsImplMainThread for MainThread {
    fn rescan(&self, _flags: ParamRescanFlags) {}
    fn clear(&self, _id: ClapId, _flags: ParamClearFlags) {}
}

struct Host;
impl HostHandlers for Host {
    type Shared<'a> = Shared;
    type MainThread<'a> = MainThread;
    type AudioProcessor<'a> = ();

    fn declare_extensions(builder: &mut HostExtensions<Self>, _: &Self::Shared<'_>) {
        builder.register::<HostGui>().register::<HostParams>();
    }
}

/// The host's audio side: noisy speech (or silence) through the plugin in real time, block by
/// block, recording the parameter events the plugin sends out.
struct Audio {
    processor: StartedPluginAudioProcessor<Host>,
    input: Vec<Vec<f32>>,
    output: Vec<Vec<f32>>,
    ports: (AudioPorts, AudioPorts),
    in_events: EventBuffer,
    out_events: EventBuffer,
    /// Where in the speech the next block starts.
    at: usize,
    /// Parameter values the plugin sent to the host.
    seen_out: Vec<(ClapId, f64)>,
    /// Gestures begun and ended.
    gestures: (usize, usize),
}

impl Audio {
    /// Runs `seconds` of `speech` (or silence), `host_events` in the first block; between
    /// blocks the host runs the plugin's main-thread callbacks, and the editor draws at its
    /// own pace.
    fn run(
        &mut self,
        instance: &mut PluginInstance<Host>,
        speech: &[f32],
        seconds: f64,
        silent: bool,
        host_events: &[ParamValueEvent],
    ) {
        let start = Instant::now();
        let blocks = (seconds * RATE / BLOCK as f64) as usize;
        for b in 0..blocks {
            for ch in self.input.iter_mut() {
                for (i, v) in ch.iter_mut().enumerate() {
                    *v = if silent {
                        0.0
                    } else {
                        speech[(self.at + i) % speech.len()]
                    };
                }
            }
            self.at += BLOCK;
            self.in_events.clear();
            if b == 0 {
                for e in host_events {
                    self.in_events.push(e);
                }
            }
            self.out_events.clear();
            let ins = self.ports.0.with_input_buffers([AudioPortBuffer {
                latency: 0,
                channels: AudioPortBufferType::f32_input_only(
                    self.input
                        .iter_mut()
                        .map(|b| InputChannel::variable(&mut b[..])),
                ),
            }]);
            let mut outs = self.ports.1.with_output_buffers([AudioPortBuffer {
                latency: 0,
                channels: AudioPortBufferType::f32_output_only(
                    self.output.iter_mut().map(|b| &mut b[..]),
                ),
            }]);
            self.processor
                .process(
                    &ins,
                    &mut outs,
                    &InputEvents::from_buffer(&self.in_events),
                    &mut OutputEvents::from_buffer(&mut self.out_events),
                    None,
                    None,
                )
                .expect("processes");
            for e in self.out_events.iter() {
                if let Some(v) = e.as_event::<ParamValueEvent>() {
                    self.seen_out.push((v.param_id().unwrap(), v.value()));
                }
                if e.as_event::<ParamGestureBeginEvent>().is_some() {
                    self.gestures.0 += 1;
                }
                if e.as_event::<ParamGestureEndEvent>().is_some() {
                    self.gestures.1 += 1;
                }
            }
            if instance
                .access_shared_handler(|s| s.callback_requested.swap(false, Ordering::SeqCst))
            {
                instance.call_on_main_thread_callback();
            }
            let due = Duration::from_secs_f64((b + 1) as f64 * BLOCK as f64 / RATE);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
}

/// An RGB screenshot.
struct Shot {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

impl Shot {
    fn grab(conn: &RustConnection, window: Window, width: u16, height: u16) -> Shot {
        let reply = conn
            .get_image(ImageFormat::Z_PIXMAP, window, 0, 0, width, height, !0)
            .unwrap()
            .reply()
            .unwrap();
        // 24-bit depth comes as 32-bit pixels, blue first.
        let rgb = reply
            .data
            .chunks_exact(4)
            .flat_map(|p| [p[2], p[1], p[0]])
            .collect();
        Shot {
            width: width as usize,
            height: height as usize,
            rgb,
        }
    }

    fn save(&self, path: &Path) {
        let file = std::fs::File::create(path).unwrap();
        let mut encoder = png::Encoder::new(file, self.width as u32, self.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder
            .write_header()
            .unwrap()
            .write_image_data(&self.rgb)
            .unwrap();
    }

    /// How many distinct colours it has (a blank or one-colour window has one).
    fn colours(&self) -> usize {
        let mut seen: Vec<[u8; 3]> = self
            .rgb
            .chunks_exact(3)
            .map(|p| [p[0], p[1], p[2]])
            .collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    }

    /// Pixels that differ from `other` inside rows `rows` (all columns).
    fn changed(&self, other: &Shot, rows: std::ops::Range<usize>) -> usize {
        let w = self.width * 3;
        rows.map(|y| {
            self.rgb[y * w..(y + 1) * w]
                .chunks_exact(3)
                .zip(other.rgb[y * w..(y + 1) * w].chunks_exact(3))
                .filter(|(a, b)| a != b)
                .count()
        })
        .sum()
    }
}

fn artefacts() -> PathBuf {
    let dir = repo_root().join("target/editor-window");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Moves the pointer to (x, y) in `window` and clicks the left button, through XTEST.
fn click(conn: &RustConnection, root: Window, window: Window, x: i16, y: i16) {
    let at = conn
        .translate_coordinates(window, root, x, y)
        .unwrap()
        .reply()
        .unwrap();
    let (rx, ry) = (at.dst_x, at.dst_y);
    // MotionNotify 6, ButtonPress 4, ButtonRelease 5.
    conn.xtest_fake_input(6, 0, 0, root, rx, ry, 0).unwrap();
    conn.flush().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    conn.xtest_fake_input(4, 1, 0, root, rx, ry, 0).unwrap();
    conn.flush().unwrap();
    std::thread::sleep(Duration::from_millis(60));
    conn.xtest_fake_input(5, 1, 0, root, rx, ry, 0).unwrap();
    conn.flush().unwrap();
}

#[test]
fn the_editor_opens_with_moving_meters_and_talks_to_the_host() {
    let Some(bundle) = wavecrn_tests::built_bundle("WaveCRN Denoise.clap") else {
        return;
    };
    let Some((_, noisy)) = speech::noisy_speech(RATE, 6.0) else {
        return;
    };
    let Some(xvfb) = start_xvfb() else { return };
    // An editor call that never returns (a lost close) fails the test instead of hanging it.
    let _watchdog = Watchdog::start(Duration::from_secs(300));
    // The plugin's window connects to the display named here (the only test in this binary).
    std::env::set_var("DISPLAY", &xvfb.display);
    let (conn, screen_index) = RustConnection::connect(Some(&xvfb.display)).unwrap();
    let root = conn.setup().roots[screen_index].root;

    // SAFETY: the bundle is this repository's own plugin.
    let entry = unsafe { PluginEntry::load(&bundle) }.expect("the bundle loads");
    let info = HostInfo::new(
        "wavecrn editor test",
        "wavecrn",
        "https://example.invalid",
        "1",
    )
    .unwrap();
    let id = CString::new("com.wavecrn.denoise").unwrap();
    let mut instance =
        PluginInstance::<Host>::new(|_| Shared::default(), |_| MainThread, &entry, &id, &info)
            .unwrap();
    let params: PluginParams = instance.plugin_handle().get_extension().unwrap();
    let mut ids = std::collections::HashMap::new();
    {
        let handle = instance.plugin_handle();
        for i in 0..params.count(&handle) {
            let mut buffer = ParamInfoBuffer::new();
            let p = params.get_info(&handle, i, &mut buffer).unwrap();
            ids.insert(String::from_utf8_lossy(p.name).into_owned(), p.id);
        }
    }
    let (mode, reduction) = (ids["Mode"], ids["Reduction"]);
    // Low latency, so the meters follow the input within milliseconds.
    {
        let events = [ParamValueEvent::new(0, mode, Pckn::match_all(), 2.0)];
        let mut handle = instance.inactive_plugin_handle().unwrap();
        params.flush(
            &mut handle,
            &InputEvents::from_buffer(&events),
            &mut OutputEvents::void(),
        );
    }

    // The host's window, and the editor in it.
    let gui: PluginGui = instance.plugin_handle().get_extension().expect("has a GUI");
    let gui_config = GuiConfiguration {
        api_type: GuiApiType::X11,
        is_floating: false,
    };
    assert!(gui.is_api_supported(&instance.plugin_handle(), gui_config));
    gui.create(&instance.plugin_handle(), gui_config)
        .expect("the editor opens");
    let size = gui.get_size(&instance.plugin_handle()).expect("a size");
    assert!(size.width >= 300 && size.height >= 300, "{size:?}");
    let (w, h) = (size.width as u16, size.height as u16);
    let parent = conn.generate_id().unwrap();
    conn.create_window(
        x11rb::COPY_DEPTH_FROM_PARENT,
        parent,
        root,
        0,
        0,
        w,
        h,
        0,
        WindowClass::INPUT_OUTPUT,
        0,
        &CreateWindowAux::new()
            .background_pixel(0)
            .event_mask(EventMask::STRUCTURE_NOTIFY),
    )
    .unwrap();
    conn.map_window(parent).unwrap();
    // A round trip, so the server has made the window before the plugin's connection uses it.
    conn.get_input_focus().unwrap().reply().unwrap();
    // SAFETY: the parent window lives until the end of the test, after `destroy`.
    unsafe {
        gui.set_parent(
            &instance.plugin_handle(),
            ClapWindow::from_x11_handle(parent as _),
        )
    }
    .expect("the editor takes the host's window");
    gui.show(&instance.plugin_handle()).expect("shows");

    // Audio: noisy speech in real time, block by block, on this thread.
    let config = PluginAudioConfiguration {
        sample_rate: RATE,
        min_frames_count: 1,
        max_frames_count: BLOCK as u32,
    };
    let processor = instance.activate(|_, _| (), config).unwrap();
    let processor = processor.start_processing().unwrap();
    let mut audio = Audio {
        processor,
        input: vec![vec![0.0f32; BLOCK]; 2],
        output: vec![vec![0.0f32; BLOCK]; 2],
        ports: (
            AudioPorts::with_capacity(2, 1),
            AudioPorts::with_capacity(2, 1),
        ),
        in_events: EventBuffer::with_capacity(16),
        out_events: EventBuffer::with_capacity(256),
        at: 0,
        seen_out: Vec::new(),
        gestures: (0, 0),
    };
    let dir = artefacts();
    audio.run(&mut instance, &noisy, 2.0, false, &[]);
    let first = Shot::grab(&conn, parent, w, h);
    first.save(&dir.join("editor-1.png"));
    audio.run(&mut instance, &noisy, 1.5, false, &[]);
    let second = Shot::grab(&conn, parent, w, h);
    second.save(&dir.join("editor-2.png"));
    assert!(
        first.colours() > 50 && second.colours() > 50,
        "the editor looks blank ({} and {} colours): see {}",
        first.colours(),
        second.colours(),
        dir.display()
    );
    let moved = first.changed(&second, 0..first.height);
    assert!(
        moved > 200,
        "the meters did not move between the screenshots ({moved} pixels)"
    );

    // A click on "Balanced" in the editor reaches the host as a Mode change, in one gesture.
    // (Where the button is, in the default layout: see target/editor-window/editor-1.png.)
    assert!(
        audio.seen_out.is_empty(),
        "nothing was changed yet: {:?}",
        audio.seen_out
    );
    click(&conn, root, parent, BALANCED_AT.0, BALANCED_AT.1);
    audio.run(&mut instance, &noisy, 0.6, false, &[]);
    assert!(
        audio.seen_out.iter().any(|&(id, v)| id == mode && v == 1.0),
        "the host saw no Mode change to Balanced: {:?}",
        audio.seen_out
    );
    let (begun, ended) = audio.gestures;
    assert!(
        begun >= 1 && begun == ended,
        "gestures: {begun} begun, {ended} ended"
    );

    // A change from the host shows in the editor: Reduction to 0 moves its slider. Silence
    // first, so the meters rest and only the slider can change the picture.
    audio.run(&mut instance, &noisy, 1.0, true, &[]);
    let before = Shot::grab(&conn, parent, w, h);
    let to_zero = [ParamValueEvent::new(0, reduction, Pckn::match_all(), 0.0)];
    audio.run(&mut instance, &noisy, 0.5, true, &to_zero);
    let after = Shot::grab(&conn, parent, w, h);
    after.save(&dir.join("editor-3.png"));
    let slider = after.changed(&before, SLIDER_ROWS);
    assert!(
        slider > 100,
        "the Reduction slider did not move ({slider} pixels changed)"
    );

    instance.deactivate(audio.processor.stop_processing());

    // The host resizes the window; the new size is saved with the session, and a new
    // instance given that state opens at it.
    assert!(gui.can_resize(&instance.plugin_handle()));
    let resized = GuiSize {
        width: 600,
        height: 520,
    };
    conn.configure_window(
        parent,
        &x11rb::protocol::xproto::ConfigureWindowAux::new()
            .width(resized.width)
            .height(resized.height),
    )
    .unwrap();
    conn.get_input_focus().unwrap().reply().unwrap();
    gui.set_size(&instance.plugin_handle(), resized)
        .expect("the editor takes the host's size");
    let start = Instant::now();
    let mut saved = Vec::new();
    loop {
        if instance.access_shared_handler(|s| s.callback_requested.swap(false, Ordering::SeqCst)) {
            instance.call_on_main_thread_callback();
        }
        saved.clear();
        let handle = instance.plugin_handle();
        let state: PluginState = handle.get_extension().expect("state extension");
        state.save(&handle, &mut saved).unwrap();
        if String::from_utf8_lossy(&saved).contains("[600,520]") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the saved state never held the new size: {}",
            String::from_utf8_lossy(&saved)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A few frames at the new size before the picture.
    std::thread::sleep(Duration::from_millis(500));
    let after_resize = Shot::grab(&conn, parent, 600, 520);
    after_resize.save(&dir.join("editor-resized.png"));
    gui.destroy(&instance.plugin_handle());
    assert!(!instance.access_shared_handler(|s| s.closed.load(Ordering::SeqCst)));

    let mut other =
        PluginInstance::<Host>::new(|_| Shared::default(), |_| MainThread, &entry, &id, &info)
            .unwrap();
    {
        let handle = other.plugin_handle();
        let state: PluginState = handle.get_extension().unwrap();
        state.load(&handle, &mut saved.as_slice()).unwrap();
    }
    let gui_other: PluginGui = other.plugin_handle().get_extension().unwrap();
    gui_other
        .create(&other.plugin_handle(), gui_config)
        .expect("the editor opens");
    let size = gui_other.get_size(&other.plugin_handle()).unwrap();
    assert_eq!((size.width, size.height), (600, 520));
    gui_other.destroy(&other.plugin_handle());

    // A host may destroy the editor right after making it (a probe, a track closed at once):
    // every `destroy` must return (the watchdog set at the start turns a hang into a failure).
    for _ in 0..20 {
        gui_other
            .create(&other.plugin_handle(), gui_config)
            .expect("the editor opens again");
        gui_other.destroy(&other.plugin_handle());
    }

    // The editor's libraries leave threads behind (the clipboard's X reader, Mesa's workers),
    // so a host that unloads the plugin must not unmap it under them.
    drop(other);
    drop(instance);
    drop(entry);
    let library = bundle.canonicalize().unwrap();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    assert!(
        maps.contains(library.to_str().unwrap()),
        "the plugin library was unmapped when the host unloaded it"
    );
}

/// Ends the test process with a message unless dropped in time.
struct Watchdog(#[allow(dead_code)] std::sync::mpsc::Sender<()>);

impl Watchdog {
    fn start(limit: Duration) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                // Straight to stderr: the test harness holds back `eprintln!` until the test
                // ends, which a hang never does.
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "the editor test hung for {limit:?} (an editor call that never returned)"
                );
                std::process::abort();
            }
        });
        Self(tx)
    }
}

/// The "Balanced" button's centre in the default-size editor, in window pixels.
const BALANCED_AT: (i16, i16) = (268, 170);
/// Rows of the default-size editor that hold the Reduction slider.
const SLIDER_ROWS: std::ops::Range<usize> = 40..70;

/// The top-level window whose title names the plugin, if one is mapped.
fn find_window(conn: &RustConnection, root: Window) -> Option<(Window, u16, u16)> {
    use x11rb::protocol::xproto::{AtomEnum, MapState};
    let tree = conn.query_tree(root).ok()?.reply().ok()?;
    tree.children.into_iter().find_map(|w| {
        let name = conn
            .get_property(false, w, AtomEnum::WM_NAME, AtomEnum::STRING, 0, 256)
            .ok()?
            .reply()
            .ok()?;
        let mapped =
            conn.get_window_attributes(w).ok()?.reply().ok()?.map_state == MapState::VIEWABLE;
        let geometry = conn.get_geometry(w).ok()?.reply().ok()?;
        (mapped && String::from_utf8_lossy(&name.value).contains("WaveCRN")).then_some((
            w,
            geometry.width,
            geometry.height,
        ))
    })
}

#[test]
fn the_standalone_app_opens_the_same_editor() {
    // The app as installed from the bundles, else as built.
    let app = [
        "bundled/WaveCRN Denoise",
        "checked/wavecrn-standalone",
        "release/wavecrn-standalone",
    ]
    .map(|path| repo_root().join("target").join(path))
    .into_iter()
    .find(|p| p.exists());
    let Some(app) = app else {
        assert!(
            std::env::var_os("WAVECRN_REQUIRE_BUNDLE").is_none(),
            "wavecrn-standalone is missing: run `cargo xtask bundle wavecrn --release --features standalone`"
        );
        eprintln!("SKIPPED: wavecrn-standalone is missing");
        return;
    };
    let Some(xvfb) = start_xvfb() else { return };
    let (conn, screen_index) = RustConnection::connect(Some(&xvfb.display)).unwrap();
    let root = conn.setup().roots[screen_index].root;
    // No sound card needed: the dummy backend runs the plugin without audio devices.
    let mut child = Command::new(&app)
        .args(["--backend", "dummy"])
        .env("DISPLAY", &xvfb.display)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let found = loop {
        if let Some(found) = find_window(&conn, root) {
            break Some(found);
        }
        if start.elapsed() > Duration::from_secs(30) || child.try_wait().unwrap().is_some() {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let Some((window, w, h)) = found else {
        let _ = child.kill();
        panic!("the standalone app opened no window");
    };
    // Let it draw a few frames.
    std::thread::sleep(Duration::from_secs(2));
    let shot = Shot::grab(&conn, window, w, h);
    shot.save(&artefacts().join("standalone.png"));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!((w as u32, h as u32), wavecrn::editor::DEFAULT_SIZE);
    assert!(shot.colours() > 50, "the standalone editor looks blank");
}
