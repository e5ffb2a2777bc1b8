//! The training data path on the real training folders (`../shared/data`): what the defects
//! of the earlier path were, measured on what it draws now.

use wavecrn_tests::shared;
use wavecrn_train::data::{self, pool, Augmentation, Mixing, Rng, Source, Task};

/// Every crop is real audio (no long exact-zero runs from padding past a short file), and speech
/// is picked in proportion to its duration: speechocean762, 56 % of the training speech in
/// 1,000 short files, gets about 56 % of the picks (it got about 80 % when files were picked
/// one by one).
#[test]
fn real_training_data_is_drawn_by_duration_without_padding() {
    let (Some(speech_dir), Some(noise_dir)) =
        (shared("data/speech/train"), shared("data/noise/train"))
    else {
        return;
    };
    let ocean = data::load_folders(&[speech_dir.join("speechocean762")], 16_000).unwrap();
    let libri = data::load_folders(&[speech_dir.join("librispeech")], 16_000).unwrap();
    let ocean_samples: usize = ocean.iter().map(|c| c.1.len()).sum();
    let libri_samples: usize = libri.iter().map(|c| c.1.len()).sum();
    let ocean_share = ocean_samples as f64 / (ocean_samples + libri_samples) as f64;
    let ocean_speakers: std::collections::HashSet<String> = ocean
        .iter()
        .map(|c| pool::speaker(&c.0).to_string())
        .collect();
    let speech: Vec<_> = ocean.into_iter().chain(libri).collect();
    let noise = data::load_folders(&[noise_dir], 16_000).unwrap();
    let source = Source::mixtures(speech, noise);
    let Source::Mixtures { speech, .. } = &source else {
        unreachable!()
    };

    let mut rng = Rng(12);
    let picks = 20_000;
    let from_ocean = (0..picks)
        .filter(|_| {
            let i = pool::pick_by_length(&mut rng, speech.iter().map(|s| s.1.len()));
            ocean_speakers.contains(&speech[i].0)
        })
        .count() as f64
        / picks as f64;
    eprintln!(
        "speechocean762: {:.1} % of the speech, {:.1} % of the picks",
        100.0 * ocean_share,
        100.0 * from_ocean
    );
    assert!((from_ocean - ocean_share).abs() < 0.02);

    let m = Mixing {
        task: Task::Denoise,
        crop: 64_000,
        batch: 2,
        snr: (0.0, 15.0),
        gain_db: (-25.0, -1.0),
        clip: 0.0,
        babble: 0.4,
        talkers: (1, 6),
        augment: Augmentation::default(),
    };
    let (mut zeros, mut total, mut longest_run) = (0usize, 0usize, 0usize);
    for index in 0..200 {
        let b = data::draw(&source, &m, 3, index);
        let mut run = 0;
        for v in &b.clean {
            if *v == 0.0 {
                zeros += 1;
                run += 1;
                longest_run = longest_run.max(run);
            } else {
                run = 0;
            }
        }
        total += b.clean.len();
    }
    eprintln!(
        "targets: {:.3} % exact zeros, longest run {longest_run} samples",
        100.0 * zeros as f64 / total as f64
    );
    // What zeros are left are the recordings' own (16-bit silence between words: 1.6 %, in
    // runs of a few ms); padding made 12 % of all target samples zero, in runs of seconds.
    assert!(longest_run < 1_600, "{longest_run} zeros in a row");
    assert!((zeros as f64) < 0.03 * total as f64);
}
