//! Speech-enhancement metrics, as the VoiceBank+DEMAND table reports them.
//!
//! Every function takes the clean reference and the signal under test at 16 kHz, equal
//! lengths, as f32 samples in [-1, 1]. The definitions follow the established
//! implementations that `../shared/metrics/expected.json` was made with:
//! - [`pesq_wb`] (P.862.2) and [`pesq_nb`] (P.862 mapped to MOS-LQO with P.862.1), from the
//!   pure-Rust `pesq` crate;
//! - [`stoi`] and [`estoi`]: pystoi's algorithm;
//! - [`segmental_snr`], [`llr`], [`wss`] and [`composite`] (CSIG, CBAK, COVL): Loizou's
//!   MATLAB code;
//! - [`si_sdr`]: Le Roux et al. (2019).

mod loizou;
pub mod spectrum;
mod stoi;
pub mod validation;

pub use loizou::{composite, llr, segmental_snr, wss, Composite};
pub use stoi::{estoi, stoi};

/// The model rate every metric here works at.
pub const SAMPLE_RATE: u32 = 16_000;

/// Why a metric could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum MetricError {
    #[error("reference and test signal differ in length ({0} vs {1} samples)")]
    LengthMismatch(usize, usize),
    #[error("PESQ: {0}")]
    Pesq(String),
}

fn check(reference: &[f32], test: &[f32]) -> Result<(), MetricError> {
    if reference.len() != test.len() {
        return Err(MetricError::LengthMismatch(reference.len(), test.len()));
    }
    Ok(())
}

fn to_pcm16(x: &[f32]) -> Vec<i16> {
    x.iter()
        .map(|&v| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// Wide-band PESQ (ITU-T P.862.2 MOS-LQO), the score speech-enhancement papers quote.
pub fn pesq_wb(reference: &[f32], test: &[f32]) -> Result<f64, MetricError> {
    check(reference, test)?;
    pesq::pesq_wb(&to_pcm16(reference), &to_pcm16(test))
        .map(f64::from)
        .map_err(|e| MetricError::Pesq(format!("{e:?}")))
}

/// Narrow-band PESQ (ITU-T P.862 raw score mapped by P.862.1), run at 16 kHz as the
/// reference C code does for 16 kHz input (rather than decimating to 8 kHz).
pub fn pesq_nb(reference: &[f32], test: &[f32]) -> Result<f64, MetricError> {
    use pesq::{disturbance, input, psychoacoustic, score, types};
    check(reference, test)?;
    let err = |e: pesq::PesqError| MetricError::Pesq(format!("{e:?}"));
    let r = types::SignalBuffer::from_pcm_at(&to_pcm16(reference), types::RATE_16K).map_err(err)?;
    let d = types::SignalBuffer::from_pcm_at(&to_pcm16(test), types::RATE_16K).map_err(err)?;
    let pair = input::process_pair(r, d).map_err(err)?;
    let model = psychoacoustic::run_frame_loop(&pair.reference, &pair.degraded, &pair.utterances);
    let frames = disturbance::frame_disturbances(&pair.reference, &pair.degraded, &pair.utterances);
    let indicators = disturbance::aggregate(&frames, model.frame_range.start);
    let raw = score::raw_score(indicators.symmetric, indicators.asymmetric);
    Ok(f64::from(score::mos_lqo(f64::from(raw)) as f32))
}

/// Scale-invariant signal-to-distortion ratio in dB (both signals made zero-mean first).
pub fn si_sdr(reference: &[f32], test: &[f32]) -> Result<f64, MetricError> {
    check(reference, test)?;
    let mean = |x: &[f32]| x.iter().map(|&v| v as f64).sum::<f64>() / x.len().max(1) as f64;
    let (mr, mt) = (mean(reference), mean(test));
    let (mut dot, mut energy) = (0.0, 0.0);
    for (&r, &t) in reference.iter().zip(test) {
        let (r, t) = (r as f64 - mr, t as f64 - mt);
        dot += r * t;
        energy += r * r;
    }
    let alpha = dot / energy.max(f64::MIN_POSITIVE);
    let (mut target, mut noise) = (0.0, 0.0);
    for (&r, &t) in reference.iter().zip(test) {
        let s = alpha * (r as f64 - mr);
        target += s * s;
        noise += (t as f64 - mt - s).powi(2);
    }
    Ok(10.0 * ((target + f64::EPSILON) / (noise + f64::EPSILON)).log10())
}

/// Every metric of the benchmark table for one pair.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Scores {
    pub pesq: f64,
    pub pesq_nb: f64,
    pub csig: f64,
    pub cbak: f64,
    pub covl: f64,
    pub ssnr: f64,
    pub stoi: f64,
    pub estoi: f64,
    pub si_sdr: f64,
}

impl Scores {
    /// Names and values, in table order.
    pub fn fields(&self) -> [(&'static str, f64); 9] {
        [
            ("pesq", self.pesq),
            ("pesq_nb", self.pesq_nb),
            ("csig", self.csig),
            ("cbak", self.cbak),
            ("covl", self.covl),
            ("ssnr", self.ssnr),
            ("stoi", self.stoi),
            ("estoi", self.estoi),
            ("si_sdr", self.si_sdr),
        ]
    }

    /// The mean of each metric.
    pub fn mean(all: &[Scores]) -> Scores {
        let n = all.len().max(1) as f64;
        let avg = |f: fn(&Scores) -> f64| all.iter().map(f).sum::<f64>() / n;
        Scores {
            pesq: avg(|s| s.pesq),
            pesq_nb: avg(|s| s.pesq_nb),
            csig: avg(|s| s.csig),
            cbak: avg(|s| s.cbak),
            covl: avg(|s| s.covl),
            ssnr: avg(|s| s.ssnr),
            stoi: avg(|s| s.stoi),
            estoi: avg(|s| s.estoi),
            si_sdr: avg(|s| s.si_sdr),
        }
    }
}

/// Scores `test` against `reference` on every metric.
pub fn score_all(reference: &[f32], test: &[f32]) -> Result<Scores, MetricError> {
    check(reference, test)?;
    let pesq = pesq_wb(reference, test)?;
    let c = composite(reference, test, pesq)?;
    Ok(Scores {
        pesq,
        pesq_nb: pesq_nb(reference, test)?,
        csig: c.csig,
        cbak: c.cbak,
        covl: c.covl,
        ssnr: c.ssnr,
        stoi: stoi(reference, test, SAMPLE_RATE)?,
        estoi: estoi(reference, test, SAMPLE_RATE)?,
        si_sdr: si_sdr(reference, test)?,
    })
}
