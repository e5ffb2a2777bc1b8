//! The VST3 in a real DAW, as a dialogue editor uses it: Ardour 7, headless (`ardour7-lua`
//! with the Dummy audio backend), a session with a mono and a stereo dialogue track, the
//! plugin inserted in Quality and in Low latency, the session saved, closed, opened again and
//! exported (Ardour's `SimpleExport`, what the editor's export dialog runs, from the running
//! session: the headless `ardour7-export` tool starts exporting before a restored Mode has
//! taken effect, see docs/hosts.md).
//!
//! Audio gets into the session the way Ardour's own files do: the script records each track
//! from the Dummy backend, and the test writes the noisy speech (or impulses) over the
//! recorded files, same length and format, before the session is opened again (headless
//! Ardour has no import call). Runs where Ardour is installed (`cargo xtask test` installs
//! it); elsewhere it says why and skips.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "common/speech.rs"]
#[allow(dead_code)]
mod speech;

/// The session's rate.
const RATE: u32 = 48_000;
/// Seconds each track records (the take comes out a little shorter).
const RECORD_SECONDS: f64 = 7.0;
/// Where the impulses sit, in seconds: after the Quality latency, since Ardour's export
/// starts the plugin at the session start without a pre-roll (see docs/hosts.md).
const IMPULSES_AT: [f64; 2] = [2.5, 4.5];

/// The Lua scripts' shared start: output unbuffered (a crash keeps what was printed), the
/// Dummy backend, and a result line the test looks for. (`ardour7-lua`'s `print` separates
/// its arguments with single spaces, not tabs, so the test parses words.)
fn script(body: &str) -> String {
    format!(
        "io.stdout:setvbuf(\"no\")\n\
         local ok, err = pcall(function()\n\
         AudioEngine:set_backend(\"None (Dummy)\", \"\", \"\")\n\
         local off = PBD.GroupControlDisposition.NoGroup\n\
         {body}\n\
         end)\n\
         print(\"RESULT \" .. tostring(ok) .. \" \" .. tostring(err))\n\
         close_session()\n"
    )
}

/// Runs a Lua script in `ardour7-lua` with `home` as the home folder; returns its output,
/// after checking that the script ran to its end.
///
/// Ardour 7.3 itself sometimes aborts with a heap error in `PortExportChannel`'s destructor,
/// when a session closes after an export or between two exports (2 of 8 runs of an export
/// script with every plugin taken out of the session). So the `render` script, the one that
/// exports, runs again (its exports removed first) when Ardour dies by a signal before its
/// result line, up to four times; past its result line, with every export written, such an
/// abort is accepted.
fn lua(home: &Path, dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(format!("{name}.lua"));
    std::fs::write(&path, script(body)).unwrap();
    let exports = name == "render";
    for attempt in 1..=4 {
        if exports {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                if e.path().extension().is_some_and(|x| x == "wav") {
                    std::fs::remove_file(e.path()).unwrap();
                }
            }
        }
        let out = Command::new("timeout")
            .args(["600", "ardour7-lua"])
            .arg(&path)
            .env("HOME", home)
            .output()
            .expect("ardour7-lua runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        eprintln!(
            "--- {name}.lua (attempt {attempt})\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let killed = out.status.code().is_none();
        if !text.contains("RESULT true") && exports && killed && attempt < 4 {
            continue;
        }
        assert!(
            text.contains("RESULT true"),
            "{name}.lua failed ({})",
            out.status
        );
        assert!(
            out.status.success() || (exports && killed),
            "{name}.lua: {}",
            out.status
        );
        return text;
    }
    unreachable!("the last attempt returns or panics")
}

/// An exported WAV's channels, as f32 (Ardour's WAV export preset writes 16-bit integers).
fn exported(path: &Path) -> Vec<Vec<f32>> {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = r.spec();
    let channels = spec.channels as usize;
    let samples: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => r.samples::<f32>().map(Result::unwrap).collect(),
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            r.samples::<i32>()
                .map(|v| v.unwrap() as f32 * scale)
                .collect()
        }
    };
    let mut planar = vec![vec![]; channels];
    for (i, v) in samples.into_iter().enumerate() {
        planar[i % channels].push(v);
    }
    planar
}

/// The recorded take of `track` (channel suffix included, e.g. `Stereo-1%L`) in the session.
fn take(session: &Path, track: &str) -> PathBuf {
    let name = session.file_name().unwrap();
    let dir = session.join("interchange").join(name).join("audiofiles");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_stem()
                .is_some_and(|s| s.to_string_lossy().ends_with(&format!("_{track}")))
        })
        .unwrap_or_else(|| panic!("no take of {track} in {}", dir.display()))
}

/// Writes `x` over a recorded take, keeping its length.
fn overwrite(path: &Path, x: &[f32]) {
    let frames = hound::WavReader::open(path).unwrap().duration() as usize;
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..frames {
        w.write_sample(x.get(i).copied().unwrap_or(0.0)).unwrap();
    }
    w.finalize().unwrap();
}

/// SNR of `test` against `clean` once `test` is scaled to fit it best (the master bus's pan
/// law scales a mono track), in dB.
fn fitted_snr(clean: &[f32], test: &[f32]) -> f64 {
    let dot: f64 = clean.iter().zip(test).map(|(a, b)| (*a * *b) as f64).sum();
    let energy: f64 = test.iter().map(|v| (*v * *v) as f64).sum();
    let k = dot / energy.max(1e-30);
    let (mut signal, mut error) = (0.0, 0.0);
    for (c, t) in clean.iter().zip(test) {
        signal += (*c as f64).powi(2);
        error += (*c as f64 - k * *t as f64).powi(2);
    }
    10.0 * (signal / error.max(1e-30)).log10()
}

/// The lag (within `reach`) at which `y` best matches `x`.
fn best_lag(x: &[f32], y: &[f32], reach: isize) -> isize {
    let n = x.len().min(y.len()) as isize;
    (-reach..=reach)
        .max_by(|a, b| {
            let score = |lag: isize| -> f64 {
                (reach..n - reach)
                    .map(|i| (x[i as usize] * y[(i + lag) as usize]) as f64)
                    .sum()
            };
            score(*a).total_cmp(&score(*b))
        })
        .unwrap()
}

#[test]
fn ardour_renders_the_vst3_denoised_aligned_and_restores_it() {
    let found = Command::new("sh")
        .args(["-c", "command -v ardour7-lua"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!(
            "SKIPPED: Ardour 7 is not installed (`apt-get install ardour`; `cargo xtask test` \
             installs it)"
        );
        return;
    }
    let Some(bundle) = wavecrn_tests::built_bundle("WaveCRN Denoise.vst3") else {
        return;
    };
    let Some((clean, noisy)) = speech::noisy_speech(RATE as f64, RECORD_SECONDS) else {
        eprintln!("SKIPPED: ../shared/data is missing");
        return;
    };
    let dir = std::env::temp_dir().join(format!("wavecrn-ardour-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let home = dir.join("home");
    std::fs::create_dir_all(home.join(".vst3")).unwrap();
    std::os::unix::fs::symlink(&bundle, home.join(".vst3/WaveCRN Denoise.vst3")).unwrap();
    // Ardour knows VST3 plugins from its scanner's cache, as after a scan in its editor.
    let scanned = Command::new("/usr/lib/ardour7/ardour-vst3-scanner")
        .arg(home.join(".vst3/WaveCRN Denoise.vst3"))
        .env("HOME", &home)
        .env("LD_LIBRARY_PATH", "/usr/lib/ardour7")
        .output()
        .expect("Ardour's VST3 scanner runs");
    assert!(
        String::from_utf8_lossy(&scanned.stderr).contains("Found Plugin: WaveCRN Denoise")
            || String::from_utf8_lossy(&scanned.stdout).contains("Found Plugin: WaveCRN Denoise"),
        "the scanner did not list the plugin: {}",
        String::from_utf8_lossy(&scanned.stderr)
    );
    let session = dir.join("dialogue");
    let s = session.display();

    // A session with four tracks, each recorded for a few seconds.
    lua(
        &home,
        &dir,
        "create",
        &format!(
            "create_session(\"{s}\", \"dialogue\", {RATE})\n\
             for _, t in ipairs({{{{\"Mono\", 1}}, {{\"Stereo\", 2}}, {{\"Impulse\", 1}}, {{\"Dry\", 1}}}}) do\n\
               local track = Session:new_audio_track(t[2], 2, nil, 1, t[1], ARDOUR.PresentationInfo.max_order, ARDOUR.TrackMode.Normal, true):front()\n\
               track:rec_enable_control():set_value(1, off)\n\
             end\n\
             Session:maybe_enable_record(false)\n\
             Session:request_roll(ARDOUR.TransportRequestSource.TRS_UI)\n\
             ARDOUR.LuaAPI.usleep({})\n\
             Session:request_stop(false, false, ARDOUR.TransportRequestSource.TRS_UI)\n\
             ARDOUR.LuaAPI.usleep(500000)\n\
             for t in Session:get_tracks():iter() do t:rec_enable_control():set_value(0, off) end\n\
             Session:save_state(\"\", false, false, false, false, false)",
            (RECORD_SECONDS * 1e6) as u64
        ),
    );

    // The takes become the dialogue: noisy speech on the mono track and both sides of the
    // stereo one, impulses on the other two.
    let mut impulses = vec![0.0f32; noisy.len()];
    let at: Vec<usize> = IMPULSES_AT
        .iter()
        .map(|s| (s * RATE as f64) as usize)
        .collect();
    for &i in &at {
        impulses[i] = 0.5;
    }
    for (track, x) in [
        ("Mono-1", &noisy),
        ("Stereo-1%L", &noisy),
        ("Stereo-1%R", &noisy),
        ("Impulse-1", &impulses),
        ("Dry-1", &impulses),
    ] {
        overwrite(&take(&session, track), x);
    }
    let frames = hound::WavReader::open(take(&session, "Mono-1"))
        .unwrap()
        .duration() as usize;

    // The plugin on three tracks; one snapshot per export, each with only its tracks heard.
    // Parameters by index: 0 Reduction (0-1), 1 Output gain, 2 Mode (0 Quality, 1 Balanced,
    // 2 Low latency), 3 Listen to removed noise, 4 Bypass.
    let settings = [
        ("Mono", "{[0] = 1, [2] = 0}"),
        ("Stereo", "{[0] = 0.9, [2] = 2}"),
        ("Impulse", "{[0] = 0, [2] = 0}"),
    ];
    let inserts: String = settings
        .iter()
        .map(|(track, params)| format!("insert(\"{track}\", {params})\n"))
        .collect();
    lua(
        &home,
        &dir,
        "mix",
        &format!(
            "load_session(\"{s}\", \"dialogue\")\n\
             local function insert(name, params)\n\
               local p = ARDOUR.LuaAPI.new_plugin(Session, \"WaveCRN Denoise\", ARDOUR.PluginType.VST3, \"\")\n\
               assert(not p:isnil(), \"Ardour does not know WaveCRN Denoise (VST3)\")\n\
               assert(Session:route_by_name(name):add_processor_by_index(p, 0, nil, true) == 0)\n\
               for i, v in pairs(params) do ARDOUR.LuaAPI.set_processor_param(p, i, v) end\n\
               print(\"LATENCY\", name, p:signal_latency())\n\
             end\n\
             {inserts}\
             Session:route_by_name(\"Impulse\"):pan_azimuth_control():set_value(0, off)\n\
             Session:route_by_name(\"Dry\"):pan_azimuth_control():set_value(1, off)\n\
             -- Control changes reach the session in its process cycle.\n\
             ARDOUR.LuaAPI.wait_for_process_callback(4, 1)\n\
             ARDOUR.LuaAPI.usleep(200000)\n\
             Session:save_state(\"\", false, false, false, false, false)"
        ),
    );

    // Closed and opened again: every parameter as it was set, and each track's latency that
    // of the mode it restored. Then the renders, as from the editor's export dialog (WAV at
    // the session rate), each with only its tracks heard.
    let render = lua(
        &home,
        &dir,
        "render",
        &format!(
            "load_session(\"{s}\", \"dialogue\")\n\
             -- Ardour activates the plugin before it restores its state; the restored Mode\n\
             -- takes effect in the first cycle and its latency reaches Ardour from\n\
             -- nice-plug's thread.\n\
             ARDOUR.LuaAPI.wait_for_process_callback(4, 1)\n\
             ARDOUR.LuaAPI.usleep(500000)\n\
             ARDOUR.LuaAPI.wait_for_process_callback(4, 1)\n\
             for _, name in ipairs({{\"Mono\", \"Stereo\", \"Impulse\"}}) do\n\
               local p = Session:route_by_name(name):nth_plugin(0)\n\
               for i = 0, 4 do print(\"PARAM\", name, i, ARDOUR.LuaAPI.get_processor_param(p, i, true)) end\n\
               print(\"LATENCY\", name, p:signal_latency())\n\
             end\n\
             local function render(names, file)\n\
               for t in Session:get_tracks():iter() do\n\
                 t:mute_control():set_value(names[t:name()] and 0 or 1, off)\n\
               end\n\
               ARDOUR.LuaAPI.wait_for_process_callback(4, 1)\n\
               ARDOUR.LuaAPI.usleep(200000)\n\
               local e = Session:simple_export()\n\
               e:set_name(file)\n\
               e:set_folder(\"{d}\")\n\
               e:set_range(0, Session:current_end_sample())\n\
               -- Ardour's \"WAV @ session-rate\" preset (export/wav.preset)\n\
               assert(e:set_preset(\"75969a1c-3133-4694-864b-a1fa50e43348\"))\n\
               assert(e:check_outputs())\n\
               assert(e:run_export(), \"export \" .. file)\n\
             end\n\
             render({{Mono = true}}, \"quality\")\n\
             render({{Stereo = true}}, \"low\")\n\
             render({{Impulse = true, Dry = true}}, \"align\")",
            d = dir.display()
        ),
    );
    let value = |track: &str, index: usize| -> f64 {
        let prefix = format!("PARAM {track} {index} ");
        render
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix:?} in the reopened session"))
    };
    let latency = |track: &str| -> usize {
        let prefix = format!("LATENCY {track} ");
        render
            .lines()
            .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no latency of {track}"))
    };
    for (track, reduction, mode) in [
        ("Mono", 1.0, 0.0),
        ("Stereo", 0.9, 2.0),
        ("Impulse", 0.0, 0.0),
    ] {
        assert!(
            (value(track, 0) - reduction).abs() < 1e-3,
            "{track}: Reduction"
        );
        assert_eq!(value(track, 2), mode, "{track}: Mode");
        assert_eq!((value(track, 3), value(track, 4)), (0.0, 0.0), "{track}");
    }
    let (quality, low) = (latency("Mono"), latency("Stereo"));
    assert!(
        low * 10 < quality && low > 0,
        "latencies: Quality {quality}, Low latency {low}"
    );

    // The renders: denoised, and lined up with the session's timeline to the sample.
    let judged = |y: &[f32], what: &str| {
        let from = quality.max(low) + RATE as usize / 10;
        let to = frames.min(y.len());
        let (before, after) = (
            fitted_snr(&clean[from..to], &noisy[from..to]),
            fitted_snr(&clean[from..to], &y[from..to]),
        );
        let lag = best_lag(&clean[from..to], &y[from..to], 480);
        eprintln!("{what}: SNR {before:.2} dB in, {after:.2} dB out, best lag {lag} frames");
        assert!(after > before + 1.0, "{what}: {before:.2} -> {after:.2} dB");
        assert_eq!(lag, 0, "{what}: not aligned with the session");
    };
    let export = |name: &str| exported(&dir.join(format!("{name}.wav")));
    let q = export("quality");
    judged(&q[0], "Quality, mono track");
    let l = export("low");
    judged(&l[0], "Low latency, stereo track, left");
    judged(&l[1], "Low latency, stereo track, right");
    // Reduction 0 % through the plugin (left) against no plugin at all (right).
    let a = export("align");
    let found = |x: &[f32]| -> Vec<usize> {
        x.iter()
            .enumerate()
            .filter(|(_, v)| v.abs() > 0.1)
            .map(|(i, _)| i)
            .collect()
    };
    assert_eq!(found(&a[1]), at, "the track without the plugin");
    assert_eq!(
        found(&a[0]),
        at,
        "the plugin's track, compensated by Ardour"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
