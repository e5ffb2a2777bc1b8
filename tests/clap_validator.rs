//! The CLAP bundle in a peer's conformance suite: free-audio's clap-validator, every test it
//! has, run on the bundle the host tests load. `cargo xtask test` builds the validator from
//! `../shared/tools/clap-validator` and names it in `WAVECRN_CLAP_VALIDATOR`; without it this
//! test says why and skips.

use std::process::Command;

/// The counts in the validator's closing line: "44 tests run, 34 passed, 0 failed, ...".
#[derive(Debug, Default)]
struct Tally {
    run: usize,
    passed: usize,
    failed: usize,
    warnings: usize,
    skipped: usize,
}

/// `text` without its ANSI colour sequences (ESC '[' ... final letter): the validator colours
/// its summary whatever `NO_COLOR` says.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn tally(report: &str) -> Option<Tally> {
    let report = plain(report);
    let line = report.lines().rev().find(|l| l.contains(" run, "))?;
    let mut t = Tally::default();
    for part in line.split(", ") {
        let mut words = part.split_whitespace();
        let n: usize = words.next()?.parse().ok()?;
        match words.last()? {
            "run" => t.run = n,
            "passed" => t.passed = n,
            "failed" => t.failed = n,
            "warnings" | "warning" => t.warnings = n,
            "skipped" => t.skipped = n,
            _ => return None,
        }
    }
    Some(t)
}

#[test]
fn the_summary_line_is_read() {
    let t = tally("x\n44 tests run, 33 passed, 1 failed, 0 warnings, 10 skipped\n").unwrap();
    assert_eq!(
        (t.run, t.passed, t.failed, t.warnings, t.skipped),
        (44, 33, 1, 0, 10)
    );
    let coloured = "\u{1b}[1m44\u{1b}[0m tests run, \u{1b}[1;32m34\u{1b}[0m passed, 0 failed, 0 warnings, 10 skipped";
    assert_eq!(tally(coloured).unwrap().passed, 34);
    assert!(tally("no summary here").is_none());
}

#[test]
fn clap_validator_finds_no_failure() {
    let Some(bundle) = wavecrn_tests::built_bundle("WaveCRN Denoise.clap") else {
        return;
    };
    let Some(validator) = std::env::var_os("WAVECRN_CLAP_VALIDATOR") else {
        eprintln!(
            "SKIPPED: WAVECRN_CLAP_VALIDATOR is not set (`cargo xtask test` builds clap-validator \
             from ../shared/tools/clap-validator and sets it)"
        );
        return;
    };
    let out = Command::new(&validator)
        .arg("validate")
        .arg(&bundle)
        .env("NO_COLOR", "1")
        .output()
        .expect("clap-validator runs");
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{report}\n{}", String::from_utf8_lossy(&out.stderr));
    let t = tally(&report).expect("clap-validator printed its summary line");
    assert_eq!(t.failed, 0, "clap-validator: {t:?}");
    assert!(
        out.status.success(),
        "clap-validator exited with {}",
        out.status
    );
    // Every test of the suite ran; those skipped are listed above with the validator's reason.
    assert!(
        t.run >= 40 && t.passed >= 30,
        "clap-validator ran too little: {t:?}"
    );
}
