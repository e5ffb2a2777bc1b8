//! The paper's 2-bit speech compression, which the restore model learns to undo: each sample
//! becomes its sign (-1, 0 or +1), so the waveform keeps its zero crossings and loses its
//! level and shape.

/// One sample's sign: -1, 0 or +1 (NaN becomes 0).
pub fn sign(v: f32) -> f32 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// A waveform's 2-bit version: the sign of every sample.
pub fn compress(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| sign(v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_sign() {
        let x = [0.3, -1e-9, 0.0, -0.0, 2.0, f32::NAN, f32::NEG_INFINITY];
        assert_eq!(compress(&x), [1.0, -1.0, 0.0, 0.0, 1.0, 0.0, -1.0]);
    }
}
