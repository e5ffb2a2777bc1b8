//! How much of the denoised signal replaces the input: the plugin's Reduction parameter and
//! the command line's `--reduction` and `--noise-floor`, one rule for both.

/// The share of the denoised signal in the output (0: the input, 1: fully denoised) for a
/// `reduction` share and an optional noise floor: at most `floor_db` of attenuation, as an
/// attenuation limit does in other denoisers. The output `input + r (denoised - input)` keeps
/// at least `10^(-floor_db / 20)` of what the model removes, so the room still sounds like a
/// room.
pub fn effective(reduction: f32, floor_db: Option<f32>) -> f32 {
    let r = reduction.clamp(0.0, 1.0);
    match floor_db {
        Some(db) if db.is_finite() => r.min(1.0 - 10f32.powf(-db.max(0.0) / 20.0)),
        _ => r,
    }
}

/// One output sample: `input` with `share` of the way to `denoised`.
pub fn blend(input: f32, denoised: f32, share: f32) -> f32 {
    input + share * (denoised - input)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A floor of F dB leaves 10^(-F/20) of the removed part: -20 dB leaves a tenth, and a
    /// reduction below the floor's is left alone.
    #[test]
    fn a_floor_caps_the_reduction() {
        assert_eq!(effective(1.0, None), 1.0);
        assert_eq!(effective(0.3, None), 0.3);
        assert!((effective(1.0, Some(20.0)) - 0.9).abs() < 1e-6);
        assert!((effective(1.0, Some(6.0)) - (1.0 - 10f32.powf(-0.3))).abs() < 1e-6);
        assert_eq!(effective(0.5, Some(20.0)), 0.5);
        assert_eq!(effective(1.0, Some(0.0)), 0.0);
        assert_eq!(effective(1.5, None), 1.0);
        // The removed part that remains: input - output = (1 - share) (input - denoised).
        let (x, y) = (1.0f32, 0.2f32);
        let out = blend(x, y, effective(1.0, Some(20.0)));
        assert!(((x - out) / (x - y) - 0.9).abs() < 1e-6);
        assert_eq!(blend(x, y, 0.0), x);
    }
}
