//! Audio arranged so that every crop is real audio: files joined and looped with crossfades
//! (never a zero pad, never a click at a splice), and picks weighted by duration (never by
//! file count, which would favour folders of short files).

use super::Rng;

/// Length of every crossfade at a join or a loop point: 20 ms at 16 kHz, long enough that a
/// splice of two unrelated sounds makes no click, short enough to keep their character.
pub const FADE: usize = 320;

/// Equal-power crossfade weights for position `i` of `n`: (fading in, fading out). Equal
/// power keeps the level of two uncorrelated signals (noise, speech of two utterances) steady
/// through the fade.
fn weights(i: usize, n: usize) -> (f32, f32) {
    let t = (i as f32 + 0.5) / n as f32 * std::f32::consts::FRAC_PI_2;
    (t.sin(), t.cos())
}

/// `a` followed by `b`, the last `fade` samples of `a` crossfaded into the first of `b`
/// (a plain concatenation where either is too short for the fade).
pub fn join(a: &[f32], b: &[f32], fade: usize) -> Vec<f32> {
    if a.len() < fade || b.len() < fade {
        return [a, b].concat();
    }
    let mut out = Vec::with_capacity(a.len() + b.len() - fade);
    out.extend_from_slice(&a[..a.len() - fade]);
    let tail = &a[a.len() - fade..];
    out.extend((0..fade).map(|i| {
        let (fade_in, fade_out) = weights(i, fade);
        b[i] * fade_in + tail[i] * fade_out
    }));
    out.extend_from_slice(&b[fade..]);
    out
}

/// `x` made into a loop without a splice: its last `fade` samples are crossfaded into its
/// first, and dropped, so that reading on past the end continues smoothly from the start.
/// A signal shorter than two fades is returned as it is.
pub fn seamless_loop(x: &[f32], fade: usize) -> Vec<f32> {
    if x.len() < 2 * fade || fade == 0 {
        return x.to_vec();
    }
    let n = x.len() - fade;
    let mut out = x[..n].to_vec();
    for i in 0..fade {
        let (fade_in, fade_out) = weights(i, fade);
        out[i] = x[i] * fade_in + x[n + i] * fade_out;
    }
    out
}

/// `len` samples of the loop `x` from `start`, wrapping round its end.
pub fn wrapped(x: &[f32], start: usize, len: usize) -> Vec<f32> {
    (0..len).map(|i| x[(start + i) % x.len()]).collect()
}

/// A start for a `len`-sample window of a loop of `total` samples: anywhere it fits whole,
/// and anywhere at all (wrapping) only when the loop is shorter than the window.
pub fn window_start(rng: &mut Rng, total: usize, len: usize) -> usize {
    if total >= len {
        rng.below(total - len + 1)
    } else {
        rng.below(total)
    }
}

/// Index of an item, each picked with probability proportional to its length.
pub fn pick_by_length(rng: &mut Rng, lengths: impl Iterator<Item = usize> + Clone) -> usize {
    let total: usize = lengths.clone().sum();
    let mut r = rng.below(total);
    let count = lengths.clone().count();
    for (i, len) in lengths.enumerate() {
        if r < len {
            return i;
        }
        r -= len;
    }
    count.saturating_sub(1)
}

/// The speaker of a speech file, from its name: what comes before the first `-` or `_`
/// (LibriSpeech's `103-1240-0000`, speechocean762's `SPEAKER0001_000010011`, VoiceBank's
/// `p226_001`), or the whole name.
pub fn speaker(name: &str) -> &str {
    name.split(['-', '_']).next().unwrap_or(name)
}

/// Groups `files` by speaker and joins each speaker's files, in name order, into one
/// seamless loop: a crop that runs past the end of an utterance goes on into the same
/// speaker's next one, as a recording of a longer reading would. The result is named by
/// speaker and sorted by name.
pub fn speaker_loops(files: &[(String, Vec<f32>)]) -> Vec<(String, Vec<f32>)> {
    let mut by_speaker: std::collections::BTreeMap<&str, Vec<&(String, Vec<f32>)>> =
        Default::default();
    for f in files {
        by_speaker.entry(speaker(&f.0)).or_default().push(f);
    }
    by_speaker
        .into_iter()
        .map(|(who, mut utterances)| {
            utterances.sort_by(|a, b| a.0.cmp(&b.0));
            let joined = utterances
                .iter()
                .skip(1)
                .fold(utterances[0].1.clone(), |acc, u| join(&acc, &u.1, FADE));
            (who.to_string(), seamless_loop(&joined, FADE))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng(seed);
        (0..n).map(|_| rng.uniform(-0.5, 0.5) as f32).collect()
    }

    /// The largest step between neighbouring samples: a splice of unrelated audio without a
    /// fade shows as a jump far above a smooth signal's.
    fn largest_step(x: &[f32]) -> f32 {
        x.windows(2).fold(0f32, |m, w| m.max((w[1] - w[0]).abs()))
    }

    #[test]
    fn a_join_crossfades_and_keeps_both_ends() {
        let (a, b) = (vec![1.0f32; 1000], vec![-1.0f32; 800]);
        let j = join(&a, &b, FADE);
        assert_eq!(j.len(), 1000 + 800 - FADE);
        assert!(j[..1000 - FADE].iter().all(|&v| v == 1.0));
        assert!(j[1000..].iter().all(|&v| v == -1.0));
        // A DC step of 2 spread over the fade: no sample-to-sample jump above 2 * pi / 2 / FADE.
        assert!(
            largest_step(&j) < 2.0 * 1.6 / FADE as f32,
            "{}",
            largest_step(&j)
        );
        // Too short to fade: a plain concatenation.
        assert_eq!(join(&[1.0; 10], &[2.0; 10], FADE).len(), 20);
    }

    /// A loop made from a ramp (the worst case: its end is far from its start) reads on past
    /// its end without a jump, and keeps its length less one fade.
    #[test]
    fn a_seamless_loop_has_no_splice() {
        let ramp: Vec<f32> = (0..4000).map(|i| i as f32 / 4000.0).collect();
        assert!(
            largest_step(&wrapped(&ramp, 3000, 2000)) > 0.9,
            "the raw loop clicks"
        );
        let l = seamless_loop(&ramp, FADE);
        assert_eq!(l.len(), 4000 - FADE);
        let across = wrapped(&l, l.len() - 1000, 2000);
        assert!(largest_step(&across) < 0.01, "{}", largest_step(&across));
        // Uncorrelated noise keeps its level through the fade (equal-power weights).
        let n = noise(40_000, 3);
        let l = seamless_loop(&n, FADE);
        let power = |x: &[f32]| x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
        let ratio = power(&l[..FADE]) / power(&n[FADE..]);
        assert!((0.8..1.25).contains(&ratio), "{ratio}");
    }

    /// Picks follow the items' lengths, not their count: 100 short items and one long one
    /// of the same total length are each picked about half the time.
    #[test]
    fn picks_are_weighted_by_duration() {
        let lengths: Vec<usize> = std::iter::repeat_n(10, 100).chain([1000]).collect();
        let mut rng = Rng(9);
        let long = (0..20_000)
            .filter(|_| pick_by_length(&mut rng, lengths.iter().copied()) == 100)
            .count();
        assert!((9_400..10_600).contains(&long), "{long}");
    }

    #[test]
    fn windows_fit_whole_where_they_can() {
        let mut rng = Rng(1);
        for _ in 0..1000 {
            assert!(window_start(&mut rng, 5000, 4000) <= 1000);
            assert!(window_start(&mut rng, 300, 4000) < 300);
        }
        assert_eq!(window_start(&mut rng, 4000, 4000), 0);
    }

    /// Each speaker's utterances become one loop, in name order, the other speakers' never
    /// mixed in.
    #[test]
    fn speakers_are_joined_in_name_order() {
        let files = vec![
            ("B_2".to_string(), vec![2.0f32; 1000]),
            ("A-1".to_string(), vec![1.0f32; 1000]),
            ("B_1".to_string(), vec![-2.0f32; 1000]),
        ];
        let loops = speaker_loops(&files);
        assert_eq!(loops.len(), 2);
        assert_eq!(loops[0].0, "A");
        assert_eq!(loops[1].0, "B");
        let b = &loops[1].1;
        assert_eq!(b.len(), 2000 - 2 * FADE);
        assert_eq!(b[FADE + 10], -2.0, "B_1 comes first");
        assert_eq!(b[b.len() - 10], 2.0, "then B_2");
        assert!(b.iter().all(|v| v.abs() <= 2.0));
    }
}
