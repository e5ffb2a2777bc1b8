//! The fixed validation set: every clean file of a speech folder mixed with a noise from a
//! noise folder at the benchmark's test SNRs (2.5, 7.5, 12.5, 17.5 dB, in turn), with a fixed
//! seed, so every run and every model is scored on the same pairs.

/// The benchmark's test SNRs, in dB.
pub const TEST_SNRS: [f64; 4] = [2.5, 7.5, 12.5, 17.5];
/// The seed of the shipped validation set.
pub const SEED: u64 = 20_201_029;

/// One noisy/clean pair at 16 kHz.
#[derive(Clone, Debug)]
pub struct Pair {
    /// A name for tables: the speech file's stem, the noise and the SNR.
    pub name: String,
    pub clean: Vec<f32>,
    pub noisy: Vec<f32>,
}

/// A tiny deterministic generator (SplitMix64), so the set never changes with a library.
/// The trainer draws its mixtures with it too.
#[derive(Clone, Debug)]
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn power(x: &[f32]) -> f64 {
    x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64
}

/// Builds the set from already-loaded 16 kHz mono signals: `speech` and `noises` as
/// (name, samples). Each speech file gets one noise (a random one, from a random offset,
/// looped if short) at the next test SNR; pairs whose mixture would clip are scaled down,
/// clean and noisy alike.
pub fn mix(speech: &[(String, Vec<f32>)], noises: &[(String, Vec<f32>)], seed: u64) -> Vec<Pair> {
    let mut rng = SplitMix(seed);
    speech
        .iter()
        .enumerate()
        .filter(|(_, (_, s))| !s.is_empty() && power(s) > 0.0)
        .map(|(i, (name, clean))| {
            let snr = TEST_SNRS[i % TEST_SNRS.len()];
            let (noise_name, noise) = &noises[rng.below(noises.len())];
            let offset = rng.below(noise.len().max(1));
            let segment: Vec<f32> = (0..clean.len())
                .map(|t| noise[(offset + t) % noise.len()])
                .collect();
            let gain =
                (power(clean) / power(&segment).max(1e-20) / 10f64.powf(snr / 10.0)).sqrt() as f32;
            let mut noisy: Vec<f32> = clean
                .iter()
                .zip(&segment)
                .map(|(s, n)| s + gain * n)
                .collect();
            let mut clean = clean.clone();
            let peak = noisy.iter().fold(0f32, |m, v| m.max(v.abs()));
            if peak > 0.99 {
                let k = 0.99 / peak;
                noisy.iter_mut().for_each(|v| *v *= k);
                clean.iter_mut().for_each(|v| *v *= k);
            }
            Pair {
                name: format!("{name}+{noise_name}@{snr}dB"),
                clean,
                noisy,
            }
        })
        .collect()
}

/// The kinds of noise the validation set holds, for tables grouped by noise.
pub const NOISE_TYPES: [&str; 6] = [
    "competing talkers",
    "babble",
    "speech-like (ICRA, ISTS, SSN)",
    "stationary (white, pink, car, engine)",
    "machines and vehicles",
    "street, cafe, household",
];

/// The kind of noise in a validation pair named `speech+noise@SNRdB` (see [`mix`]), one of
/// [`NOISE_TYPES`] (the last for any noise it does not know).
pub fn noise_type(pair_name: &str) -> &'static str {
    let noise = pair_name
        .split('+')
        .nth(1)
        .and_then(|n| n.split('@').next())
        .unwrap_or("")
        .to_ascii_lowercase();
    let has = |keys: &[&str]| keys.iter().any(|k| noise.contains(k));
    let index = if has(&["one_", "two_"]) {
        0
    } else if has(&["babble"]) {
        1
    } else if has(&["icra", "ists", "speech-shaped"]) {
        2
    } else if has(&["white", "pink", "car", "volvo", "engine"]) {
        3
    } else if has(&["factory", "buccaneer", "m109", "metro", "vacuum"]) {
        4
    } else {
        5
    };
    NOISE_TYPES[index]
}

/// Whether a validation pair's noise is ambient (street, cafe, household, vehicles,
/// machines, stationary noise): the pairs that are not talkers, babble or speech-like
/// signals, on which a denoiser's gain is least masked by the hardest noises.
pub fn is_ambient(pair_name: &str) -> bool {
    NOISE_TYPES[3..].contains(&noise_type(pair_name))
}

/// The paper's 2-bit compression of a waveform: its sign, -1, 0 or +1 per sample. The
/// restoration task learns to undo it.
pub use wavecrn_engine::two_bit::compress as sign_compress;

/// The validation set of the restoration task: the denoising set's clean speech, each with
/// its sign-compressed version as the input (names unchanged).
pub fn restore_pairs(pairs: Vec<Pair>) -> Vec<Pair> {
    pairs
        .into_iter()
        .map(|p| Pair {
            name: p.name,
            noisy: sign_compress(&p.clean),
            clean: p.clean,
        })
        .collect()
}

#[cfg(test)]
mod noise_type_tests {
    use super::*;

    #[test]
    fn every_validation_noise_has_its_kind() {
        let kind = |noise: &str| noise_type(&format!("1-2-3+{noise}@7.5dB"));
        assert_eq!(kind("two_male_one_female_english"), NOISE_TYPES[0]);
        assert_eq!(kind("Babble"), NOISE_TYPES[1]);
        assert_eq!(
            kind("ISTS_-_international_speech_test_signal"),
            NOISE_TYPES[2]
        );
        assert_eq!(kind("icra5_0.25_fullscale"), NOISE_TYPES[2]);
        assert_eq!(kind("Car_Noise_Idle_Noise_60_mph"), NOISE_TYPES[3]);
        assert_eq!(kind("white"), NOISE_TYPES[3]);
        assert_eq!(kind("ACVacuum"), NOISE_TYPES[4]);
        assert_eq!(kind("CafeRestaurant"), NOISE_TYPES[5]);
        assert_eq!(kind("Street_Noise"), NOISE_TYPES[5]);
        let ambient = |noise: &str| is_ambient(&format!("1-2-3+{noise}@7.5dB"));
        assert!(ambient("Street_Noise") && ambient("ACVacuum") && ambient("volvo"));
        assert!(!ambient("Babble") && !ambient("one_male_english") && !ambient("icra5_0.25"));
    }
}
