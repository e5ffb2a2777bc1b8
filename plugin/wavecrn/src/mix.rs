//! The last step on the audio thread: dry and denoised signals (already aligned) into the
//! output, following the smoothed parameters sample by sample.

/// Per-sample parameter values for one block.
pub struct Controls<'a> {
    /// 0 = dry, 1 = fully denoised.
    pub reduction: &'a [f32],
    /// Linear output gain.
    pub gain: &'a [f32],
    /// 0 = processing, 1 = bypassed (ramps between the two).
    pub bypass: &'a [f32],
    /// 0 = the denoised signal, 1 = what is removed from it (ramps between the two).
    pub listen: &'a [f32],
}

/// The Noise floor parameter's top, where it means no floor ("Off").
pub const NO_FLOOR_DB: f32 = 60.0;

/// Caps each sample's Reduction by its Noise floor (the most the output may remove, in dB;
/// [`NO_FLOOR_DB`] and above: no cap), by the rule the command line's `--noise-floor` uses.
pub fn apply_floor(reduction: &mut [f32], floor_db: &[f32]) {
    for (r, &f) in reduction.iter_mut().zip(floor_db) {
        if f < NO_FLOOR_DB {
            *r = wavecrn_engine::reduction::effective(*r, Some(f));
        }
    }
}

/// Writes one channel of output. Reduction 0 and gain 1 give the dry signal bit for bit.
pub fn mix(dry: &[f32], wet: &[f32], c: &Controls, out: &mut [f32]) {
    for i in 0..out.len() {
        let (d, w, r) = (dry[i], wet[i], c.reduction[i]);
        let kept = wavecrn_engine::reduction::blend(d, w, r);
        let l = c.listen[i];
        // Exact at both ends, as bypass is.
        let heard = if l == 0.0 {
            kept
        } else if l >= 1.0 {
            r * (d - w)
        } else {
            kept + l * (r * (d - w) - kept)
        };
        let processed = heard * c.gain[i];
        let b = c.bypass[i];
        // Exact at both ends: fully bypassed is the dry signal bit for bit.
        out[i] = if b == 0.0 {
            processed
        } else if b >= 1.0 {
            d
        } else {
            processed + b * (d - processed)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controls<'a>(r: &'a [f32], g: &'a [f32], b: &'a [f32], listen: bool) -> Controls<'a> {
        const ON: [f32; 8] = [1.0; 8];
        const OFF: [f32; 8] = [0.0; 8];
        Controls {
            reduction: r,
            gain: g,
            bypass: b,
            listen: if listen {
                &ON[..r.len()]
            } else {
                &OFF[..r.len()]
            },
        }
    }

    /// Flipping "Listen to removed noise" moves the output along a ramp from the kept
    /// signal to the removed one, never in one step.
    #[test]
    fn listening_fades_in() {
        let dry = [0.8f32; 5];
        let wet = [0.2f32; 5];
        let ramp = [0.0f32, 0.25, 0.5, 0.75, 1.0];
        let mut out = [0.0; 5];
        let c = Controls {
            reduction: &[1.0; 5],
            gain: &[1.0; 5],
            bypass: &[0.0; 5],
            listen: &ramp,
        };
        mix(&dry, &wet, &c, &mut out);
        assert!((out[0] - 0.2).abs() < 1e-6);
        assert!((out[4] - 0.6).abs() < 1e-6);
        for w in out.windows(2) {
            assert!((w[1] - w[0]).abs() < 0.11, "{out:?}");
        }
    }

    /// A 20 dB floor leaves a tenth of what full Reduction removes; Off and a Reduction
    /// already gentler than the floor are left alone.
    #[test]
    fn the_noise_floor_limits_what_is_removed() {
        let mut r = [1.0f32, 1.0, 0.5, 1.0];
        apply_floor(&mut r, &[20.0, NO_FLOOR_DB, 20.0, 0.0]);
        assert!((r[0] - 0.9).abs() < 1e-6);
        assert_eq!(r[1..3], [1.0, 0.5]);
        assert_eq!(r[3], 0.0);
        let (dry, wet) = ([0.8f32], [0.0f32]);
        let mut out = [0.0];
        mix(
            &dry,
            &wet,
            &controls(&r[..1], &[1.0], &[0.0], false),
            &mut out,
        );
        let removed_db = 20.0 * (dry[0] / out[0]).log10();
        assert!((removed_db - 20.0).abs() < 0.01, "{removed_db} dB removed");
    }

    #[test]
    fn zero_reduction_is_the_dry_signal_bit_for_bit() {
        let dry = [0.1f32, -0.73, 1e-3, 0.333_333];
        let wet = [0.5f32, 0.2, -0.4, 0.0];
        let mut out = [0.0; 4];
        mix(
            &dry,
            &wet,
            &controls(&[0.0; 4], &[1.0; 4], &[0.0; 4], false),
            &mut out,
        );
        assert_eq!(out, dry);
        mix(
            &dry,
            &wet,
            &controls(&[0.7; 4], &[1.0; 4], &[1.0; 4], false),
            &mut out,
        );
        assert_eq!(out, dry, "bypassed");
    }

    #[test]
    fn full_reduction_is_the_denoised_signal_and_listening_gives_the_rest() {
        let dry = [0.1f32, -0.7];
        let wet = [0.05f32, -0.5];
        let (mut kept, mut removed) = ([0.0; 2], [0.0; 2]);
        mix(
            &dry,
            &wet,
            &controls(&[1.0; 2], &[1.0; 2], &[0.0; 2], false),
            &mut kept,
        );
        mix(
            &dry,
            &wet,
            &controls(&[1.0; 2], &[1.0; 2], &[0.0; 2], true),
            &mut removed,
        );
        assert_eq!(kept, wet);
        for i in 0..2 {
            assert!((kept[i] + removed[i] - dry[i]).abs() < 1e-7);
        }
    }
}
