//! Reading the lossy formats podcasts and interviews arrive in: MP3, AAC (M4A/MP4 or ADTS)
//! and Ogg Vorbis through symphonia, Ogg Opus through ropus (a pure-Rust port of the
//! reference decoder; symphonia has no Opus decoder of its own). Each gives planar f32 in
//! pieces, as the lossless readers in [`crate::file`] do, with the codecs' start and end
//! padding trimmed (encoder delay, Opus pre-skip), so the output lines up with the original
//! recording.
//!
//! A damaged packet is an error, not a skip: a denoised file with a gap the user never hears
//! about is worse than no file.

use std::fs::File;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{Decoder, DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// The lossy codecs read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Mp3,
    Aac,
    Vorbis,
    Opus,
}

impl Codec {
    /// The codec's usual name.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Mp3 => "MP3",
            Codec::Aac => "AAC",
            Codec::Vorbis => "Ogg Vorbis",
            Codec::Opus => "Ogg Opus",
        }
    }
}

/// What an open lossy file holds.
#[derive(Clone, Copy, Debug)]
pub struct LossySpec {
    pub codec: Codec,
    pub sample_rate: u32,
    pub channels: usize,
    /// Frames in the file, when the container says.
    pub frames: Option<u64>,
}

/// A lossy file being decoded in pieces.
pub struct LossyReader {
    source: Source,
    /// Decoded frames not yet handed out, one vector per channel.
    pending: Vec<Vec<f32>>,
    ended: bool,
    /// What the container says to play of the decoded audio (an MP4 edit list).
    trim: Trim,
}

/// Which decoded frames are the recording: `skip` from the start (the encoder's priming),
/// then at most `keep` (the rest is end padding).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Trim {
    skip: u64,
    keep: Option<u64>,
}

enum Source {
    Symphonia {
        format: Box<dyn FormatReader>,
        decoder: Box<dyn Decoder>,
        track: u32,
        samples: Option<SampleBuffer<f32>>,
    },
    Opus(Box<OggOpus>),
}

/// Whether the file's first bytes look like one of the formats read here (by content, not
/// name: an ID3 tag or an MPEG frame sync, an MP4 `ftyp` box, an ADTS header, an Ogg page).
pub fn sniff(magic: &[u8; 12]) -> bool {
    let mpeg_sync = magic[0] == 0xFF && magic[1] & 0xE0 == 0xE0;
    magic.starts_with(b"ID3") || magic.starts_with(b"OggS") || &magic[4..8] == b"ftyp" || mpeg_sync
}

impl LossyReader {
    /// Opens `path` (already sniffed as lossy) and reads as far as its first audio.
    pub fn open(path: &Path) -> Result<(Self, LossySpec)> {
        if let Some(opus) = OggOpus::open(path)? {
            let spec = LossySpec {
                codec: Codec::Opus,
                sample_rate: OPUS_RATE,
                channels: opus.channels,
                frames: opus.frames,
            };
            let reader = LossyReader {
                source: Source::Opus(Box::new(opus)),
                pending: vec![vec![]; spec.channels],
                ended: false,
                trim: Trim::default(),
            };
            return Ok((reader, spec));
        }
        let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let stream = MediaSourceStream::new(Box::new(file), Default::default());
        let mut hint = Hint::new();
        if let Some(ext) = path.extension() {
            hint.with_extension(&ext.to_string_lossy());
        }
        let options = FormatOptions {
            enable_gapless: true,
            ..Default::default()
        };
        let probed = symphonia::default::get_probe()
            .format(&hint, stream, &options, &MetadataOptions::default())
            .map_err(|e| anyhow!("not a readable audio file ({e})"))?;
        let format = probed.format;
        let track = format
            .tracks()
            .iter()
            .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
            .context("the file holds no audio track")?;
        let params = track.codec_params.clone();
        let codec = match params.codec {
            symphonia::core::codecs::CODEC_TYPE_MP3 => Codec::Mp3,
            symphonia::core::codecs::CODEC_TYPE_AAC => Codec::Aac,
            symphonia::core::codecs::CODEC_TYPE_VORBIS => Codec::Vorbis,
            other => {
                let name = symphonia::default::get_codecs()
                    .get_codec(other)
                    .map_or("an unknown codec", |d| d.short_name);
                bail!("its audio is {name}, which is not read (MP3, AAC, Vorbis and Opus are)")
            }
        };
        let decoder = symphonia::default::get_codecs()
            .make(&params, &DecoderOptions::default())
            .map_err(|e| anyhow!("cannot decode its {} audio ({e})", codec.name()))?;
        let sample_rate = params
            .sample_rate
            .context("the file does not say its sample rate")?;
        // symphonia 0.5 does not apply an MP4's edit list (AAC's priming and end padding).
        let trim = match codec {
            Codec::Aac => mp4_edit(path, sample_rate)?.unwrap_or_default(),
            _ => Trim::default(),
        };
        let mut reader = LossyReader {
            source: Source::Symphonia {
                track: track.id,
                format,
                decoder,
                samples: None,
            },
            pending: vec![],
            ended: false,
            trim,
        };
        // Some containers name the channels only in the first packet's header: decode it
        // before saying what the file holds.
        let channels = match params.channels {
            Some(c) => c.count(),
            None => {
                reader.pending = vec![vec![]; 8];
                reader.decode_more()?;
                reader.pending.len()
            }
        };
        if reader.pending.is_empty() {
            reader.pending = vec![vec![]; channels];
        }
        let frames = match trim.keep {
            Some(keep) => Some(keep),
            None => params.n_frames.map(|n| n.saturating_sub(trim.skip)),
        };
        let spec = LossySpec {
            codec,
            sample_rate,
            channels,
            frames,
        };
        Ok((reader, spec))
    }

    /// Reads up to `max` frames, appending them to `out` (one vector per channel). Returns the
    /// number of frames read: 0 at the end.
    pub fn read(&mut self, max: usize, out: &mut [Vec<f32>]) -> Result<usize> {
        let max = match self.trim.keep {
            Some(left) => max.min(left.min(usize::MAX as u64) as usize),
            None => max,
        };
        loop {
            while self.pending[0].len() < max && !self.ended {
                self.decode_more()?;
            }
            if self.trim.skip == 0 {
                break;
            }
            // The encoder's priming comes off first.
            let drop = (self.trim.skip.min(usize::MAX as u64) as usize).min(self.pending[0].len());
            for p in &mut self.pending {
                p.drain(..drop);
            }
            self.trim.skip -= drop as u64;
            if drop == 0 {
                break;
            }
        }
        let n = self.pending[0].len().min(max);
        if let Some(left) = &mut self.trim.keep {
            *left -= n as u64;
        }
        for (o, p) in out.iter_mut().zip(self.pending.iter_mut()) {
            o.extend(p.drain(..n).map(|v| if v.is_finite() { v } else { 0.0 }));
        }
        Ok(n)
    }

    /// Decodes the next packet into `pending`, or marks the end.
    fn decode_more(&mut self) -> Result<()> {
        match &mut self.source {
            Source::Opus(opus) => match opus.next_frames()? {
                Some(planar) => {
                    for (p, c) in self.pending.iter_mut().zip(planar) {
                        p.extend(c);
                    }
                }
                None => self.ended = true,
            },
            Source::Symphonia {
                format,
                decoder,
                track,
                samples,
            } => loop {
                let packet = match format.next_packet() {
                    Ok(p) => p,
                    Err(SymphoniaError::IoError(e))
                        if e.kind() == std::io::ErrorKind::UnexpectedEof =>
                    {
                        self.ended = true;
                        return Ok(());
                    }
                    // A chained stream starting over: what follows is another recording.
                    Err(SymphoniaError::ResetRequired) => {
                        self.ended = true;
                        return Ok(());
                    }
                    Err(e) => bail!("corrupt data ({e})"),
                };
                if packet.track_id() != *track {
                    continue;
                }
                let decoded = decoder
                    .decode(&packet)
                    .map_err(|e| anyhow!("corrupt audio ({e})"))?;
                let spec = *decoded.spec();
                let channels = spec.channels.count();
                if decoded.frames() == 0 {
                    continue;
                }
                let buffer = match samples {
                    Some(b) if b.capacity() >= decoded.capacity() * channels => b,
                    _ => samples.insert(SampleBuffer::new(decoded.capacity() as u64, spec)),
                };
                buffer.copy_interleaved_ref(decoded);
                // The first packet may be what tells the channel count (see `open`).
                if self.pending.len() != channels {
                    if self.pending.iter().any(|p| !p.is_empty()) {
                        bail!("the channel count changes within the file");
                    }
                    self.pending = vec![vec![]; channels];
                }
                for (i, v) in buffer.samples().iter().enumerate() {
                    self.pending[i % channels].push(*v);
                }
                return Ok(());
            },
        }
        Ok(())
    }
}

/// The edit list of an MP4 file's audio track, in frames at `sample_rate`: where the
/// recording starts in the decoded audio and how long it is (ISO/IEC 14496-12 `elst`; an
/// encoder writes its priming as the first edit's media time). `None` when the file is not an
/// MP4, or its audio track has no edit list.
fn mp4_edit(path: &Path, sample_rate: u32) -> Result<Option<Trim>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let len = file.metadata()?.len();
    // The top-level boxes, for `moov` (small, wherever it is in the file).
    let mut at = 0u64;
    let moov = loop {
        if at + 8 > len {
            return Ok(None);
        }
        file.seek(SeekFrom::Start(at))?;
        let mut head = [0u8; 16];
        file.read_exact(&mut head[..8])?;
        let mut size = u32::from_be_bytes(head[..4].try_into().unwrap()) as u64;
        let mut header = 8;
        if size == 1 {
            file.read_exact(&mut head[8..16])?;
            size = u64::from_be_bytes(head[8..16].try_into().unwrap());
            header = 16;
        } else if size == 0 {
            size = len - at;
        }
        if at == 0 && &head[4..8] != b"ftyp" {
            return Ok(None);
        }
        if size < header || at + size > len {
            return Ok(None);
        }
        if &head[4..8] == b"moov" {
            let mut body = vec![0u8; (size - header) as usize];
            file.read_exact(&mut body)?;
            break body;
        }
        at += size;
    };
    let movie_scale = child(&moov, b"mvhd").and_then(|b| timescale(b, 12, 20));
    for trak in children(&moov, b"trak") {
        let Some(mdia) = child(trak, b"mdia") else {
            continue;
        };
        // The sound track: its handler type (after version/flags and pre_defined) is `soun`.
        let sound = child(mdia, b"hdlr").is_some_and(|h| h.get(8..12) == Some(b"soun"));
        if !sound {
            continue;
        }
        let media_scale = child(mdia, b"mdhd").and_then(|b| timescale(b, 12, 20));
        let Some(elst) = child(trak, b"edts").and_then(|e| child(e, b"elst")) else {
            return Ok(None);
        };
        let (Some(movie_scale), Some(media_scale)) = (movie_scale, media_scale) else {
            return Ok(None);
        };
        let version = elst.first().copied().unwrap_or(0);
        let count = be_u32(elst, 4).unwrap_or(0) as usize;
        let entry = if version == 1 { 20 } else { 12 };
        for k in 0..count {
            let e = 8 + k * entry;
            let (duration, media_time) = if version == 1 {
                let (Some(d), Some(t)) = (be_u64(elst, e), be_u64(elst, e + 8)) else {
                    break;
                };
                (d, t as i64)
            } else {
                let (Some(d), Some(t)) = (be_u32(elst, e), be_u32(elst, e + 4)) else {
                    break;
                };
                (d as u64, t as i32 as i64)
            };
            // An empty edit (media time -1) only delays the track: skip to the first real one.
            if media_time < 0 {
                continue;
            }
            let frames = |t: u64, scale: u32| {
                (t as u128 * sample_rate as u128 / scale.max(1) as u128) as u64
            };
            return Ok(Some(Trim {
                skip: frames(media_time as u64, media_scale),
                keep: (duration > 0).then(|| frames(duration, movie_scale)),
            }));
        }
        return Ok(None);
    }
    Ok(None)
}

/// The boxes named `kind` directly inside `body`.
fn children<'a>(body: &'a [u8], kind: &'a [u8; 4]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        while at + 8 <= body.len() {
            let size = be_u32(body, at)? as usize;
            let (start, end) = match size {
                1 => (at + 16, at + be_u64(body, at + 8)? as usize),
                0 => (at + 8, body.len()),
                n => (at + 8, at + n),
            };
            if end > body.len() || end < start {
                return None;
            }
            let found = &body[at + 4..at + 8] == kind;
            at = end;
            if found {
                return Some(&body[start..end]);
            }
        }
        None
    })
}

/// The first box named `kind` directly inside `body`.
fn child<'a>(body: &'a [u8], kind: &'a [u8; 4]) -> Option<&'a [u8]> {
    children(body, kind).next()
}

/// The timescale of an `mvhd` or `mdhd` box: at byte `v0` of its body in version 0, `v1` in
/// version 1.
fn timescale(body: &[u8], v0: usize, v1: usize) -> Option<u32> {
    be_u32(body, if body.first() == Some(&1) { v1 } else { v0 })
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Opus always decodes at 48 kHz (RFC 7845: the header's input rate is only a hint).
const OPUS_RATE: u32 = 48_000;
/// The longest Opus packet: 120 ms.
const OPUS_MAX_FRAMES: usize = 5_760;

/// An Ogg Opus file (RFC 7845), read packet by packet.
struct OggOpus {
    packets: ogg::PacketReader<std::io::BufReader<File>>,
    serial: u32,
    decoder: ropus::Decoder,
    channels: usize,
    /// Frames still to drop from the start (the header's pre-skip).
    skip: usize,
    /// Frames handed out so far, and where the last page's granule position says the audio
    /// ends (the encoder's end padding comes off).
    done: u64,
    end: Option<u64>,
    gain: f32,
    frames: Option<u64>,
    scratch: Vec<f32>,
}

impl OggOpus {
    /// Opens `path` if its first Ogg packet is an Opus header; `None` for any other content.
    fn open(path: &Path) -> Result<Option<Self>> {
        let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut packets = ogg::PacketReader::new(std::io::BufReader::new(file));
        let head = match packets.read_packet() {
            Ok(Some(p)) if p.data.starts_with(b"OpusHead") => p,
            _ => return Ok(None),
        };
        let h = &head.data;
        if h.len() < 19 {
            bail!("a truncated Opus header");
        }
        let channels = h[9] as usize;
        let pre_skip = u16::from_le_bytes([h[10], h[11]]) as usize;
        let gain_q8 = i16::from_le_bytes([h[16], h[17]]);
        let mapping = h[18];
        if mapping != 0 || !(1..=2).contains(&channels) {
            bail!("Opus with {channels} channels (mapping family {mapping}) is not read: mono and stereo are");
        }
        let decoder = ropus::Decoder::new(
            OPUS_RATE,
            if channels == 1 {
                ropus::Channels::Mono
            } else {
                ropus::Channels::Stereo
            },
        )
        .map_err(|e| anyhow!("cannot start the Opus decoder ({e:?})"))?;
        let serial = head.stream_serial();
        // The comment header comes next; the audio after it.
        match packets.read_packet() {
            Ok(Some(p)) if p.data.starts_with(b"OpusTags") => {}
            _ => bail!("the Opus comment header is missing"),
        }
        let frames = last_granule(path, serial).map(|g| g.saturating_sub(pre_skip as u64));
        Ok(Some(OggOpus {
            packets,
            serial,
            decoder,
            channels,
            skip: pre_skip,
            done: 0,
            end: frames,
            gain: 10f32.powf(gain_q8 as f32 / 256.0 / 20.0),
            frames,
            scratch: vec![0.0; OPUS_MAX_FRAMES * channels],
        }))
    }

    /// The next packet's frames, planar, trimmed; `None` at the end.
    fn next_frames(&mut self) -> Result<Option<Vec<Vec<f32>>>> {
        loop {
            let packet = match self.packets.read_packet() {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(None),
                Err(e) => bail!("corrupt Ogg data ({e})"),
            };
            if packet.stream_serial() != self.serial {
                continue;
            }
            let n = self
                .decoder
                .decode_float(&packet.data, &mut self.scratch, ropus::DecodeMode::Normal)
                .map_err(|e| anyhow!("corrupt Opus audio ({e:?})"))?;
            let from = self.skip.min(n);
            self.skip -= from;
            let mut to = n;
            if let Some(end) = self.end {
                let left = end.saturating_sub(self.done) as usize;
                to = to.min(from + left);
            }
            if to <= from {
                if self.end.is_some_and(|e| self.done >= e) {
                    return Ok(None);
                }
                continue;
            }
            self.done += (to - from) as u64;
            let ch = self.channels;
            let planar = (0..ch)
                .map(|c| {
                    (from..to)
                        .map(|i| self.scratch[i * ch + c] * self.gain)
                        .collect()
                })
                .collect();
            return Ok(Some(planar));
        }
    }
}

/// The granule position of the stream's last page (its length in 48 kHz frames, pre-skip
/// included), found by reading the file's last 64 kB for the final page header.
fn last_granule(path: &Path, serial: u32) -> Option<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let from = len.saturating_sub(65_536);
    file.seek(SeekFrom::Start(from)).ok()?;
    let mut tail = vec![];
    file.read_to_end(&mut tail).ok()?;
    let mut found = None;
    let mut i = 0;
    while i + 27 <= tail.len() {
        if &tail[i..i + 4] == b"OggS"
            && u32::from_le_bytes(tail[i + 14..i + 18].try_into().ok()?) == serial
        {
            let granule = u64::from_le_bytes(tail[i + 6..i + 14].try_into().ok()?);
            if granule != u64::MAX {
                found = Some(granule);
            }
        }
        i += 1;
    }
    found
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::Codec;
    use crate::file::{Container, Reader};

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/formats")
            .join(name)
    }

    fn read_all(name: &str) -> (crate::file::Spec, Vec<Vec<f32>>) {
        let (mut r, spec) = Reader::open(&fixture(name)).unwrap();
        let mut out = vec![vec![]; spec.channels];
        while r.read(4096, &mut out).unwrap() > 0 {}
        (spec, out)
    }

    /// SNR of `y` against `x` at lag 0 once `y` is scaled to fit, in dB.
    fn fitted_snr(x: &[f32], y: &[f32]) -> f64 {
        let n = x.len().min(y.len());
        let (x, y) = (&x[..n], &y[..n]);
        let dot: f64 = x.iter().zip(y).map(|(a, b)| (*a * *b) as f64).sum();
        let energy: f64 = y.iter().map(|v| (*v * *v) as f64).sum();
        let k = dot / energy.max(1e-30);
        let signal: f64 = x.iter().map(|v| (*v as f64).powi(2)).sum();
        let error: f64 = x
            .iter()
            .zip(y)
            .map(|(a, b)| (*a as f64 - k * *b as f64).powi(2))
            .sum();
        10.0 * (signal / error.max(1e-30)).log10()
    }

    /// Each lossy fixture (made with ffmpeg from `original.wav`: 2 s of speech, 48 kHz mono;
    /// the M4A is stereo with the right channel at half level) decodes to the original's
    /// length, lined up with it (encoder delay and padding trimmed), close to it.
    #[test]
    fn every_lossy_format_decodes_lined_up_with_the_original() {
        let (_, original) = read_all("original.wav");
        let x = &original[0];
        // An M4A's edit list takes off the AAC encoder's priming (1,024 frames from
        // ffmpeg's) and end padding; its length is in the movie's timescale (ffmpeg's: 1 ms,
        // 48 frames). A raw ADTS stream says neither, so it keeps both.
        for (name, codec, channels, min_snr, delay, extra) in [
            ("speech.mp3", Codec::Mp3, 1, 15.0, 0, 0..=1),
            ("speech.m4a", Codec::Aac, 2, 15.0, 0, -48..=48),
            ("speech.aac", Codec::Aac, 1, 15.0, 1024, 0..=2049),
            ("speech.ogg", Codec::Vorbis, 1, 15.0, 0, 0..=1),
            ("speech.opus", Codec::Opus, 1, 10.0, 0, 0..=1),
        ] {
            let (spec, y) = read_all(name);
            assert_eq!(spec.container, Container::Lossy(codec), "{name}");
            assert_eq!(
                (spec.sample_rate, spec.channels),
                (48_000, channels),
                "{name}"
            );
            let len = y[0].len() as i64 - x.len() as i64;
            let snr = fitted_snr(x, &y[0][delay..]);
            eprintln!("{name}: {len:+} frames against the original, SNR {snr:.1} dB");
            assert!(extra.contains(&len), "{name}: {len:+} frames");
            assert!(snr > min_snr, "{name}: SNR {snr:.1} dB");
            if channels == 2 {
                let right = fitted_snr(x, &y[1][delay..]);
                let level = y[1].iter().map(|v| v.abs()).sum::<f32>()
                    / y[0].iter().map(|v| v.abs()).sum::<f32>();
                assert!(
                    right > min_snr && (level - 0.5).abs() < 0.05,
                    "{name}: right"
                );
            }
        }
    }
}
