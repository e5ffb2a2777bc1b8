//! The learning-rate schedule and the identity curriculum: functions of the step alone, so a
//! resumed run follows the same curves.

use crate::args::RunArgs;
use crate::data::Task;

/// The rate for the update after `step` steps: linear warm-up, then a half cosine from
/// `--lr` down to `--lr-end` at `--steps`. A function of the step alone, so a resumed run
/// follows the same curve.
pub(crate) fn learning_rate(a: &RunArgs, step: u64) -> f64 {
    if step < a.warmup {
        return a.lr * (step + 1) as f64 / a.warmup as f64;
    }
    let span = a.steps.saturating_sub(a.warmup).max(1) as f64;
    let progress = ((step - a.warmup) as f64 / span).min(1.0);
    a.lr_end + 0.5 * (a.lr - a.lr_end) * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// How much of the noise the target still keeps at `step` (see `--identity-steps`): 1 at
/// the first step, falling linearly to 0.
pub(crate) fn identity_share(a: &RunArgs, step: u64) -> f64 {
    match a.task {
        Task::Denoise if step < a.identity_steps => 1.0 - step as f64 / a.identity_steps as f64,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::test_args as run_args;

    /// The target starts as the noisy input and reaches the clean speech after
    /// `--identity-steps`; without the option, and for restoration, it is clean throughout.
    #[test]
    fn the_identity_curriculum_fades_linearly() {
        let a = run_args(&["--identity-steps", "100"]);
        for (step, share) in [(0, 1.0), (50, 0.5), (99, 0.01), (100, 0.0), (5000, 0.0)] {
            assert!(
                (identity_share(&a, step) - share).abs() < 1e-12,
                "step {step}"
            );
        }
        assert_eq!(identity_share(&run_args(&[]), 0), 0.0);
        let restore = run_args(&["--identity-steps", "100", "--task", "restore"]);
        assert_eq!(identity_share(&restore, 0), 0.0);
    }

    /// The schedule at its corners: the warm-up's first and last steps, the peak, the cosine's
    /// middle, its end, past the end, and a run without warm-up or with a constant rate.
    #[test]
    fn the_learning_rate_schedule_holds_at_its_corners() {
        let a = run_args(&[
            "--lr", "1e-3", "--lr-end", "1e-5", "--warmup", "100", "--steps", "1100",
        ]);
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-12 + 1e-9 * y.abs();
        assert!(close(learning_rate(&a, 0), 1e-5));
        assert!(close(learning_rate(&a, 49), 5e-4));
        assert!(close(learning_rate(&a, 99), 1e-3));
        assert!(close(learning_rate(&a, 100), 1e-3));
        assert!(close(learning_rate(&a, 600), 0.5 * (1e-3 + 1e-5)));
        assert!(close(learning_rate(&a, 1100), 1e-5));
        assert!(close(learning_rate(&a, 5000), 1e-5));
        for step in 100..1100 {
            assert!(learning_rate(&a, step + 1) <= learning_rate(&a, step));
        }
        let cold = run_args(&["--warmup", "0", "--steps", "10", "--lr", "2e-3"]);
        assert!(close(learning_rate(&cold, 0), 2e-3));
        let flat = run_args(&["--lr", "3e-3", "--lr-end", "3e-3", "--warmup", "0"]);
        assert!((0..20_000)
            .step_by(997)
            .all(|s| close(learning_rate(&flat, s), 3e-3)));
    }
}
