//! The worker's half of a windowed stream: host-rate input from the audio thread through the
//! chain (resampled to the model's rate, denoised, resampled back, the band above the model's
//! reach restored) and handed back through a ring. Everything here may allocate and take its
//! time; none of it runs on the audio thread.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use ringbuf::traits::{Consumer, Observer, Producer};
use ringbuf::{HeapCons, HeapProd};

use super::chain::Chain;
use super::Shared;
use crate::error::Result;

/// The worker's end of one stream.
pub struct WorkerSide {
    input: HeapCons<f32>,
    output: HeapProd<f32>,
    shared: Arc<Shared>,
    channels: usize,
    chain: Chain,
    acked: u64,
    frames: Vec<f32>,
    planar: Vec<Vec<f32>>,
    mixed: Vec<f32>,
}

impl WorkerSide {
    pub(super) fn new(
        input: HeapCons<f32>,
        output: HeapProd<f32>,
        shared: Arc<Shared>,
        chain: Chain,
        channels: usize,
    ) -> Self {
        Self {
            input,
            output,
            shared,
            channels,
            chain,
            acked: 0,
            frames: Vec::new(),
            planar: vec![Vec::new(); channels],
            mixed: Vec::new(),
        }
    }

    /// Processes whatever input is waiting. Returns whether there was any.
    pub fn poll(&mut self) -> Result<bool> {
        let epoch = self.shared.epoch.load(Ordering::Acquire);
        if epoch != self.acked {
            // The audio thread has stopped feeding us: drop its old input, start afresh.
            self.input.clear();
            self.chain.reset();
            self.acked = epoch;
            self.shared.acked.store(epoch, Ordering::Release);
            return Ok(true);
        }
        let ch = self.channels;
        let frames = self.input.occupied_len() / ch;
        if frames == 0 {
            return Ok(false);
        }
        self.frames.resize(frames * ch, 0.0);
        let got = self.input.pop_slice(&mut self.frames);
        debug_assert_eq!(got, frames * ch);
        for (c, p) in self.planar.iter_mut().enumerate() {
            p.clear();
            p.extend(self.frames.iter().skip(c).step_by(ch));
        }
        let started = std::time::Instant::now();
        self.mixed.clear();
        let mixed = &mut self.mixed;
        self.chain.run_into(&self.planar, |v| mixed.push(v))?;
        self.shared
            .busy_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        // The audio thread sizes this ring for the worst case; if it is full anyway the audio
        // thread has stopped reading and will reset the stream.
        self.output.push_slice(&self.mixed);
        Ok(true)
    }
}
