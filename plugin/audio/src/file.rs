//! Reading and writing audio files in pieces: WAV (integer PCM of 8 to 32 bits, 32-bit
//! float) and FLAC both ways, and the lossy formats of [`crate::lossy`] in. Samples cross
//! this module as planar f32 in [-1, 1]. Output is always lossless: [`output_spec`] picks
//! its format from the output's name and the input.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

use crate::lossy::{Codec, LossyReader};

/// Frames the tools ask a [`Reader`] for per step.
pub const READ_FRAMES: usize = 1 << 16;

/// File container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    Wav,
    Flac,
    /// A lossy format, read only.
    Lossy(Codec),
}

/// The file name extensions of the lossy formats read: their outputs are named `.wav`.
pub const LOSSY_EXTENSIONS: [&str; 7] = ["mp3", "m4a", "mp4", "aac", "ogg", "oga", "opus"];

/// Whether `path` is named as a lossy file.
pub fn named_lossy(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| LOSSY_EXTENSIONS.iter().any(|l| e.eq_ignore_ascii_case(l)))
}

/// The format a processed file is written in: `.wav` or `.flac` in the output's name picks
/// the container; any other name keeps the input's, and a lossy input becomes WAV (never a
/// second lossy generation). Samples keep the input's encoding where the container can hold
/// it; decoded lossy audio and 32-bit input become 24-bit in FLAC, decoded lossy audio
/// 24-bit in WAV.
pub fn output_spec(input: &Spec, output: &Path) -> Spec {
    let ext = output
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let container = match (ext.as_deref(), input.container) {
        (Some("wav"), _) => Container::Wav,
        (Some("flac"), _) => Container::Flac,
        (_, Container::Lossy(_)) => Container::Wav,
        (_, c) => c,
    };
    let encoding = match (container, input.container, input.encoding) {
        (_, Container::Lossy(_), _) => Encoding::Int(24),
        (Container::Flac, _, Encoding::Float32) => Encoding::Int(24),
        (Container::Flac, _, Encoding::Int(b)) if b > 24 => Encoding::Int(24),
        (_, _, e) => e,
    };
    Spec {
        container,
        encoding,
        ..*input
    }
}

/// How samples are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Signed integers of this many bits.
    Int(u16),
    /// IEEE 32-bit float.
    Float32,
}

/// What a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec {
    pub container: Container,
    pub encoding: Encoding,
    pub sample_rate: u32,
    pub channels: usize,
    /// Frames in the file, when the header says.
    pub frames: Option<u64>,
}

/// What a summary line says when the output's format is not the input's, e.g. "MP3
/// decoded, written as 24-bit WAV"; empty when they match.
pub fn conversion_note(input: &Spec, output: &Spec) -> String {
    if input.container == output.container && input.encoding == output.encoding {
        return String::new();
    }
    let written = match (output.container, output.encoding) {
        (Container::Flac, Encoding::Int(b)) => format!("{b}-bit FLAC"),
        (_, Encoding::Int(b)) => format!("{b}-bit WAV"),
        (_, Encoding::Float32) => "32-bit float WAV".into(),
    };
    match input.container {
        Container::Lossy(codec) => format!("{} decoded, written as {written}", codec.name()),
        _ => format!("written as {written}"),
    }
}

/// A file being read in pieces.
pub enum Reader {
    Wav {
        reader: hound::WavReader<BufReader<File>>,
        /// The file, for the one warning a truncated file gets.
        name: String,
        /// Whether the data ended before the header said (then reading stops there).
        truncated: bool,
    },
    Flac {
        reader: Box<claxon::FlacReader<File>>,
        buffer: Vec<i32>,
        pending: Vec<Vec<f32>>,
    },
    Lossy(Box<LossyReader>),
}

impl Reader {
    /// Opens `path`, recognising the format by its first bytes, not its name.
    pub fn open(path: &Path) -> Result<(Self, Spec)> {
        let mut magic = [0u8; 12];
        let mut file =
            File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut got = 0;
        while got < magic.len() {
            match file.read(&mut magic[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
            }
        }
        if got < 4 {
            bail!("cannot read {}: too short to be audio", path.display());
        }
        match &[magic[0], magic[1], magic[2], magic[3]] {
            b"RIFF" | b"RF64" | b"WAVE" => {
                let r = hound::WavReader::open(path)
                    .map_err(|e| anyhow!("{}: not a readable WAV file ({e})", path.display()))?;
                let s = r.spec();
                let encoding = match s.sample_format {
                    hound::SampleFormat::Int => Encoding::Int(s.bits_per_sample),
                    hound::SampleFormat::Float if s.bits_per_sample == 32 => Encoding::Float32,
                    hound::SampleFormat::Float => bail!(
                        "{}: {}-bit float WAV is not supported",
                        path.display(),
                        s.bits_per_sample
                    ),
                };
                let spec = Spec {
                    container: Container::Wav,
                    encoding,
                    sample_rate: s.sample_rate,
                    channels: s.channels as usize,
                    frames: Some(r.duration() as u64),
                };
                let reader = Reader::Wav {
                    reader: r,
                    name: path.display().to_string(),
                    truncated: false,
                };
                Ok((reader, check(path, spec)?))
            }
            b"fLaC" => {
                let r = claxon::FlacReader::open(path)
                    .map_err(|e| anyhow!("{}: not a readable FLAC file ({e})", path.display()))?;
                let s = r.streaminfo();
                let spec = Spec {
                    container: Container::Flac,
                    encoding: Encoding::Int(s.bits_per_sample as u16),
                    sample_rate: s.sample_rate,
                    channels: s.channels as usize,
                    frames: s.samples,
                };
                let pending = vec![vec![]; spec.channels];
                Ok((
                    Reader::Flac {
                        reader: Box::new(r),
                        buffer: vec![],
                        pending,
                    },
                    check(path, spec)?,
                ))
            }
            _ if crate::lossy::sniff(&magic) => {
                let (reader, s) = LossyReader::open(path)
                    .with_context(|| format!("{}: cannot decode it", path.display()))?;
                let spec = Spec {
                    container: Container::Lossy(s.codec),
                    encoding: Encoding::Float32,
                    sample_rate: s.sample_rate,
                    channels: s.channels,
                    frames: s.frames,
                };
                Ok((Reader::Lossy(Box::new(reader)), check(path, spec)?))
            }
            _ => bail!(
                "{}: unsupported audio format (WAV, FLAC, MP3, AAC/M4A, Ogg Vorbis and Ogg Opus \
                 are read)",
                path.display()
            ),
        }
    }

    /// Reads up to `max` frames, appending them to `out` (one vector per channel). Returns the
    /// number of frames read: 0 at the end. Non-finite samples read as silence.
    pub fn read(&mut self, max: usize, out: &mut [Vec<f32>]) -> Result<usize> {
        let channels = out.len();
        match self {
            Reader::Wav {
                reader: r,
                name,
                truncated,
            } => {
                if *truncated {
                    return Ok(0);
                }
                let spec = r.spec();
                let before = out[0].len();
                let mut n = 0;
                // Takes one sample read; false where the data has ended early.
                let mut take = |i: usize, sample: hound::Result<f32>| -> Result<bool> {
                    match sample {
                        Ok(v) => {
                            out[i % channels].push(v);
                            n = i + 1;
                            Ok(true)
                        }
                        // A header that promises more data than the file holds (a recording
                        // cut short, a copy interrupted): read what is there, as sox does.
                        // (hound reports a short read as UnexpectedEof or, within a sample,
                        // as its own "Failed to read enough bytes.")
                        Err(hound::Error::IoError(e))
                            if e.kind() == std::io::ErrorKind::UnexpectedEof
                                || e.to_string().contains("read enough bytes") =>
                        {
                            Ok(false)
                        }
                        Err(e) => Err(anyhow!("corrupt WAV data ({e})")),
                    }
                };
                let mut complete = true;
                match spec.sample_format {
                    hound::SampleFormat::Float => {
                        for (i, s) in r.samples::<f32>().take(max * channels).enumerate() {
                            let s = s.map(|v| if v.is_finite() { v } else { 0.0 });
                            if !take(i, s)? {
                                complete = false;
                                break;
                            }
                        }
                    }
                    hound::SampleFormat::Int => {
                        let scale = int_scale(spec.bits_per_sample);
                        for (i, s) in r.samples::<i32>().take(max * channels).enumerate() {
                            if !take(i, s.map(|v| v as f32 * scale))? {
                                complete = false;
                                break;
                            }
                        }
                    }
                }
                *truncated = !complete;
                if *truncated {
                    // Drop a frame cut in the middle; say once what happened.
                    for o in out.iter_mut() {
                        o.truncate(before + n / channels);
                    }
                    n -= n % channels;
                    eprintln!(
                        "warning: {name}: the WAV data ends before its header says; \
                         denoising what is there"
                    );
                } else if n % channels != 0 {
                    bail!("WAV data ends in the middle of a frame");
                }
                Ok(n / channels)
            }
            Reader::Flac {
                reader,
                buffer,
                pending,
            } => {
                let scale = int_scale(reader.streaminfo().bits_per_sample as u16);
                while pending[0].len() < max {
                    let block = reader
                        .blocks()
                        .read_next_or_eof(std::mem::take(buffer))
                        .context("corrupt FLAC data")?;
                    let Some(block) = block else { break };
                    for (ch, p) in pending.iter_mut().enumerate() {
                        p.extend(block.channel(ch as u32).iter().map(|&s| s as f32 * scale));
                    }
                    *buffer = block.into_buffer();
                }
                let n = pending[0].len().min(max);
                for (o, p) in out.iter_mut().zip(pending.iter_mut()) {
                    o.extend(p.drain(..n));
                }
                Ok(n)
            }
            Reader::Lossy(r) => r.read(max, out),
        }
    }
}

fn check(path: &Path, spec: Spec) -> Result<Spec> {
    if spec.channels == 0 || spec.sample_rate == 0 {
        bail!(
            "{}: the header says {} channels at {} Hz",
            path.display(),
            spec.channels,
            spec.sample_rate
        );
    }
    if let Encoding::Int(bits) = spec.encoding {
        if !(8..=32).contains(&bits) {
            bail!("{}: {bits}-bit samples are not supported", path.display());
        }
    }
    Ok(spec)
}

fn int_scale(bits: u16) -> f32 {
    1.0 / (1u64 << (bits - 1)) as f32
}

fn to_int(x: f32, bits: u16) -> i32 {
    let full = (1i64 << (bits - 1)) as f32;
    (x * full).round().clamp(-full, full - 1.0) as i32
}

/// A file being written in pieces, in the same format as its input.
pub enum Writer {
    Wav(hound::WavWriter<BufWriter<File>>, Encoding),
    Flac(Box<FlacWriter>),
}

impl Writer {
    /// Creates `path` (which must not exist) for audio of `spec`.
    pub fn create(path: &Path, spec: &Spec) -> Result<Self> {
        Ok(match spec.container {
            Container::Wav => {
                let (bits, format) = match spec.encoding {
                    Encoding::Int(b) => (b, hound::SampleFormat::Int),
                    Encoding::Float32 => (32, hound::SampleFormat::Float),
                };
                let s = hound::WavSpec {
                    channels: spec.channels as u16,
                    sample_rate: spec.sample_rate,
                    bits_per_sample: bits,
                    sample_format: format,
                };
                Writer::Wav(
                    hound::WavWriter::create(path, s)
                        .with_context(|| format!("cannot create {}", path.display()))?,
                    spec.encoding,
                )
            }
            Container::Flac => Writer::Flac(Box::new(FlacWriter::create(path, spec)?)),
            Container::Lossy(codec) => bail!(
                "cannot write {}: outputs are WAV or FLAC (see `output_spec`)",
                codec.name()
            ),
        })
    }

    /// Appends frames (one slice per channel, equal lengths).
    pub fn write(&mut self, planar: &[&[f32]]) -> Result<()> {
        let frames = planar.first().map_or(0, |c| c.len());
        match self {
            Writer::Wav(w, Encoding::Float32) => {
                for i in 0..frames {
                    for c in planar {
                        w.write_sample(c[i])?;
                    }
                }
            }
            Writer::Wav(w, Encoding::Int(bits)) => {
                for i in 0..frames {
                    for c in planar {
                        w.write_sample(to_int(c[i], *bits))?;
                    }
                }
            }
            Writer::Flac(w) => w.write(planar)?,
        }
        Ok(())
    }

    /// Completes the file's headers and flushes it to disk.
    pub fn finish(self) -> Result<()> {
        match self {
            Writer::Wav(w, _) => w.finalize()?,
            Writer::Flac(w) => w.finish()?,
        }
        Ok(())
    }
}

/// FLAC written frame by frame: a placeholder STREAMINFO first, the real one (length, MD5)
/// written over it at the end.
pub struct FlacWriter {
    file: BufWriter<File>,
    config: flacenc::error::Verified<flacenc::config::Encoder>,
    stream: flacenc::component::Stream,
    frame: flacenc::source::FrameBuf,
    context: flacenc::source::Context,
    bits: u16,
    /// Interleaved samples waiting to fill a block.
    pending: Vec<i32>,
    channels: usize,
    header_len: usize,
}

impl FlacWriter {
    const BLOCK: usize = 4096;

    fn create(path: &Path, spec: &Spec) -> Result<Self> {
        use flacenc::error::Verify;
        let Encoding::Int(bits) = spec.encoding else {
            bail!("FLAC holds integer samples only")
        };
        if bits > 24 {
            bail!("cannot write {bits}-bit FLAC (at most 24 bits)");
        }
        let config = flacenc::config::Encoder::default()
            .into_verified()
            .map_err(|(_, e)| anyhow!("FLAC encoder: {e:?}"))?;
        let mut stream = flacenc::component::Stream::new(
            spec.sample_rate as usize,
            spec.channels,
            bits as usize,
        )
        .map_err(|e| anyhow!("FLAC encoder: {e:?}"))?;
        stream
            .stream_info_mut()
            .set_block_sizes(Self::BLOCK, Self::BLOCK)
            .map_err(|e| anyhow!("FLAC encoder: {e:?}"))?;
        let header = flac_bytes(&stream)?;
        let mut file = BufWriter::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        );
        file.write_all(&header)?;
        Ok(Self {
            file,
            config,
            stream,
            frame: flacenc::source::FrameBuf::with_size(spec.channels, Self::BLOCK)
                .map_err(|e| anyhow!("FLAC encoder: {e:?}"))?,
            context: flacenc::source::Context::new(bits as usize, spec.channels),
            bits,
            pending: Vec::with_capacity(Self::BLOCK * spec.channels),
            channels: spec.channels,
            header_len: header.len(),
        })
    }

    fn write(&mut self, planar: &[&[f32]]) -> Result<()> {
        let frames = planar.first().map_or(0, |c| c.len());
        for i in 0..frames {
            for c in planar {
                self.pending.push(to_int(c[i], self.bits));
            }
            if self.pending.len() == Self::BLOCK * self.channels {
                self.encode_block()?;
            }
        }
        Ok(())
    }

    fn encode_block(&mut self) -> Result<()> {
        use flacenc::source::Fill;
        if self.pending.is_empty() {
            return Ok(());
        }
        (&mut self.frame, &mut self.context)
            .fill_interleaved(&self.pending)
            .map_err(|e| anyhow!("FLAC encoder: {e:?}"))?;
        let number = self.context.current_frame_number().unwrap_or(0);
        let frame = flacenc::encode_fixed_size_frame(
            &self.config,
            &self.frame,
            number,
            self.stream.stream_info(),
        )
        .map_err(|e| anyhow!("FLAC encoder: {e:?}"))?;
        self.stream.stream_info_mut().update_frame_info(&frame);
        self.file.write_all(&flac_bytes(&frame)?)?;
        self.pending.clear();
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        self.encode_block()?;
        let info = self.stream.stream_info_mut();
        info.set_md5_digest(&self.context.md5_digest());
        info.set_total_samples(self.context.total_samples());
        let header = flac_bytes(&self.stream)?;
        if header.len() != self.header_len {
            bail!(
                "FLAC header changed size ({} -> {} bytes)",
                self.header_len,
                header.len()
            );
        }
        let mut file = self.file.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&header)?;
        file.sync_all()?;
        Ok(())
    }
}

/// The bytes of a FLAC stream header or frame.
fn flac_bytes(part: &impl flacenc::component::BitRepr) -> Result<Vec<u8>> {
    let mut sink = flacenc::bitsink::MemSink::<u8>::new();
    part.write(&mut sink)
        .map_err(|e| anyhow!("FLAC encoder: {e:?}"))?;
    Ok(sink.into_inner())
}
