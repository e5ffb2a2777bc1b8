//! Real-time streaming: host audio in blocks of any size, at any rate, through the model on a
//! worker thread, out again with a constant latency.
//!
//! ```text
//!  audio thread (AudioSide)                 worker thread (WorkerSide)
//!  block -> sanitise -> [input ring] ------> resample to 16 kHz -> model stage -> resample back
//!  block <- dry delayed by the latency,      + the band above 8 kHz, gain-tracked
//!           wet from [output ring] <-------
//! ```
//!
//! Every stage on the worker keeps its output aligned with its input sample for sample, so the
//! processed signal needs no delay of its own: it only arrives late. The output ring starts
//! `latency` frames behind the input, and `latency` covers the latest any stage releases a
//! sample, the largest host block, a fade and a margin for the worker's own time. When the
//! worker is later than that anyway, the audio side hands out the delayed dry signal (faded)
//! and drops the processed frames it missed when they come.
//!
//! The Low latency preset runs the same chain on the audio thread instead ("inline", no rings:
//! the audio side hands each block to the chain and keeps what comes out until it is due): the
//! causal model costs a bounded, small amount per hop, allocates nothing once warmed up, and
//! its latency is then only the chain's own (no host block, no margin), under 10 ms at 48 kHz.

mod audio;
mod causal;
mod chain;
mod stage;
mod worker;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use ringbuf::traits::Split;
use ringbuf::HeapRb;

pub use crate::windowed::{Window, WindowStage};
pub use audio::{step_toward, AudioSide};
use audio::{Inline, Processing};
pub use causal::CausalStage;
use chain::{Chain, ChainSpec};
pub use stage::ModelStage;
pub use worker::WorkerSide;

use crate::error::{Error, Result};
use crate::model::{LoadOptions, Model};

/// How a stream runs the model: the trade between latency and fidelity to the whole-file
/// result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Preset {
    /// Bidirectional model, long windows: closest to the whole-file output.
    Quality,
    /// Bidirectional model, short windows: a third of the latency.
    Balanced,
    /// Causal model, hop by hop.
    LowLatency,
}

impl Preset {
    pub const ALL: [Preset; 3] = [Preset::Quality, Preset::Balanced, Preset::LowLatency];

    /// The windows a bidirectional model runs on, in model samples (at 16 kHz).
    pub fn window(self) -> Option<Window> {
        let ms = |ms: usize| ms * 16;
        match self {
            Preset::Quality => Some(Window {
                context: ms(480),
                chunk: ms(960),
                lookahead: ms(480),
            }),
            Preset::Balanced => Some(Window {
                context: ms(240),
                chunk: ms(240),
                lookahead: ms(240),
            }),
            Preset::LowLatency => None,
        }
    }

    /// Whether the chain runs on the audio thread, hop by hop with the short low-latency
    /// converters. The windowed presets, whose latency is in the hundreds of milliseconds
    /// anyway, run on the worker thread with the same FFT converters as the file path, so
    /// they come out as close to it as their windows allow.
    pub fn inline(self) -> bool {
        self.window().is_none()
    }
}

/// The two models a plugin streams with, as ONNX bytes.
#[derive(Clone)]
pub struct StreamModels {
    /// The bidirectional model (Quality and Balanced).
    pub bidirectional: Arc<Model>,
    /// The causal model's ONNX bytes (Low latency).
    pub causal: Arc<[u8]>,
}

impl StreamModels {
    /// Loads both models, checking each is of the kind its mode needs.
    pub fn from_bytes(bidirectional: &[u8], causal: &[u8]) -> Result<Self> {
        let bi = Model::from_bytes(bidirectional, &LoadOptions::default())?;
        if bi.config().directions != 2 {
            return Err(Error::Model(
                "the Quality model must be bidirectional".into(),
            ));
        }
        CausalStage::from_onnx(causal, 1)?;
        Ok(Self {
            bidirectional: Arc::new(bi),
            causal: causal.into(),
        })
    }

    fn stage(&self, preset: Preset, channels: usize) -> Result<Box<dyn ModelStage>> {
        Ok(match preset.window() {
            Some(window) => Box::new(WindowStage::new(
                (*self.bidirectional).clone(),
                window,
                channels,
            )),
            None => Box::new(CausalStage::from_onnx(&self.causal, channels)?),
        })
    }

    fn chain(&self, preset: Preset, host_rate: f64, channels: usize) -> Result<ChainSpec> {
        Ok(ChainSpec {
            host_rate,
            model_rate: self.bidirectional.config().sample_rate as f64,
            channels,
            live: preset.inline(),
        })
    }
}

/// What the two halves share: the restart handshake and the diagnostics counters.
#[derive(Default)]
struct Shared {
    /// Bumped by the audio side to make the worker start over.
    epoch: AtomicU64,
    /// The last epoch the worker has started over for.
    acked: AtomicU64,
    fallbacks: AtomicU64,
    busy_nanos: AtomicU64,
}

/// Makes a stream: its audio side (for the audio thread) and, for presets that do not run
/// inline, its worker side (for a worker thread, see [`WorkerThread`]).
///
/// `max_block` is the largest block the host will send; for a worker, it is part of the
/// latency, as the worker can only start on a block once the host has handed it over.
pub fn stream(
    models: &StreamModels,
    preset: Preset,
    host_rate: f64,
    channels: usize,
    max_block: usize,
) -> Result<(AudioSide, Option<WorkerSide>)> {
    if channels == 0 || max_block == 0 {
        return Err(Error::Input("a stream needs channels and frames".into()));
    }
    let latency = latency(models, preset, host_rate, max_block)?;
    let fade = fade_frames(host_rate);
    // Room for everything in flight, and for a worker that is seconds late.
    let ring = (latency + 4 * max_block + (2.0 * host_rate) as usize) * channels;
    let shared = Arc::new(Shared::default());
    let chain = Chain::new(
        models.stage(preset, channels)?,
        models.chain(preset, host_rate, channels)?,
    )?;
    let (processing, worker) = if preset.inline() {
        (
            Processing::Inline(Box::new(Inline::new(chain, channels))),
            None,
        )
    } else {
        let (in_prod, in_cons) = HeapRb::<f32>::new(ring).split();
        let (out_prod, out_cons) = HeapRb::<f32>::new(ring).split();
        let worker = WorkerSide::new(in_cons, out_prod, shared.clone(), chain, channels);
        let processing = Processing::Worker {
            input: in_prod,
            output: out_cons,
        };
        (processing, Some(worker))
    };
    let mut audio = AudioSide::new(
        processing,
        shared,
        audio::Sizes {
            channels,
            max_block,
            latency,
            fade,
            host_rate,
        },
    );
    audio.warm_up();
    Ok((audio, worker))
}

/// The lowest host rate a stream runs at. Below 16 kHz the model's band is simply the host's
/// whole band; 1 kHz is under the lowest rate a CLAP validator activates at (1234.57 Hz), and
/// nothing lower is audio anyone records.
pub const MIN_HOST_RATE: f64 = 1_000.0;
/// The highest host rate a stream runs at: the highest a CLAP validator tries (DXD sessions run
/// at 352.8 and 384 kHz). Everything above the model's band is passed through gain-tracked,
/// as at 48 kHz.
pub const MAX_HOST_RATE: f64 = 768_000.0;

fn fade_frames(host_rate: f64) -> usize {
    (host_rate * 0.001).round() as usize
}

/// The latency of a stream in host frames, fixed by its preset, the host's rate and its
/// largest block.
pub fn latency(
    models: &StreamModels,
    preset: Preset,
    host_rate: f64,
    max_block: usize,
) -> Result<usize> {
    if !(MIN_HOST_RATE..=MAX_HOST_RATE).contains(&host_rate) {
        return Err(Error::Input(format!(
            "cannot stream at {host_rate} Hz ({} kHz to {} kHz)",
            MIN_HOST_RATE / 1000.0,
            MAX_HOST_RATE / 1000.0
        )));
    }
    let model_rate = models.bidirectional.config().sample_rate as f64;
    let Some(window) = preset.window() else {
        // Inline: the chain's own lateness, measured on the chain itself.
        let chain = models.chain(preset, host_rate, 1)?;
        return chain::chain_lateness(models.stage(preset, 1)?, chain);
    };
    let down = chain::resampler_lateness(host_rate, model_rate)? as f64;
    let up = chain::resampler_lateness(model_rate, host_rate)? as f64;
    let lag = (window.chunk + window.lookahead) as f64;
    let in_model = (lag + up) * host_rate / model_rate;
    let pipeline = (down + in_model).ceil() as usize + 2;
    // Time the worker is given, beyond the model's own lag, to finish a piece: half a chunk.
    let margin = (window.chunk as f64 / model_rate / 2.0 * host_rate).ceil() as usize;
    Ok(pipeline + max_block + fade_frames(host_rate) + margin)
}

/// A thread that keeps a set of streams' worker sides going until dropped.
pub struct WorkerThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    errors: Arc<AtomicU64>,
}

impl WorkerThread {
    /// Starts a thread polling `workers`, sleeping `idle` whenever none had input.
    pub fn spawn(mut workers: Vec<WorkerSide>, idle: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(AtomicU64::new(0));
        let (s, e) = (stop.clone(), errors.clone());
        let handle = std::thread::Builder::new()
            .name("wavecrn-worker".into())
            .spawn(move || {
                flush_denormals();
                while !s.load(Ordering::Acquire) {
                    let mut busy = false;
                    for w in &mut workers {
                        match w.poll() {
                            Ok(b) => busy |= b,
                            // The audio side falls back to dry and counts it; keep going.
                            Err(_) => {
                                e.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    if !busy {
                        std::thread::sleep(idle);
                    }
                }
            })?;
        Ok(Self {
            stop,
            handle: Some(handle),
            errors,
        })
    }

    /// How many times a worker side failed (each one shows as a dry stretch in the output).
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

/// Makes this thread's float arithmetic treat denormal inputs and results as zero (x86's
/// FTZ and DAZ, Arm's FZ), as the plugin's audio thread does: filters and trackers that decay
/// towards silence would otherwise run through denormals, tens of times slower.
pub fn flush_denormals() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: sets two mode bits of this thread's MXCSR (flush-to-zero, bit 15, and
    // denormals-are-zero, bit 6), leaving the rest as it was.
    unsafe {
        let mut csr: u32 = 0;
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack));
        csr |= (1 << 15) | (1 << 6);
        std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack));
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: sets the flush-to-zero bit (24) of this thread's FPCR.
    unsafe {
        let mut fpcr: u64;
        std::arch::asm!("mrs {}, fpcr", out(reg) fpcr, options(nomem, nostack));
        fpcr |= 1 << 24;
        std::arch::asm!("msr fpcr, {}", in(reg) fpcr, options(nomem, nostack));
    }
}

impl Drop for WorkerThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
