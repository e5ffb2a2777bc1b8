//! `cargo xtask gpu-pack` and the pack's `run.sh`, on the CPU: the pack fits what the device
//! tool carries, the unpacked binary runs from the tree, the trimmed paper case still holds
//! what the check reads, and the three reference cases pass.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs `run.sh` of `pack` from the repository root; (success, stdout and stderr).
fn run_pack(pack: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("bash")
        .current_dir(root())
        .arg(pack.join("run.sh"))
        .args(args)
        .env("OUT", pack)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("{text}");
    (out.status.success(), text)
}

#[test]
fn the_pack_fits_the_carry_limit_and_its_script_runs_the_check() {
    let pack = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gpu-pack");
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .current_dir(root())
        .args(["gpu-pack", "--no-baseline", "--out"])
        .arg(&pack)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    assert!(stdout.contains("of the device tool's 64 MiB"), "{stdout}");
    assert!(pack.join("xtask.xz").exists() && !pack.join("wheels").exists());

    let (ok, text) = run_pack(
        &pack,
        &[
            "--device",
            "cpu",
            "--batch",
            "2",
            "--seconds",
            "1",
            "--runs",
            "1",
        ],
    );
    assert!(ok, "run.sh failed on the CPU");
    assert_eq!(text.matches(" vs reference ").count(), 3, "{text}");
    assert_eq!(text.matches(": ok").count(), 3, "{text}");
    assert!(text.contains("paper_bidir.safetensors: cpu vs reference"));
    assert!(text.contains("gpu-rtf: "));
    let report = std::fs::read_to_string(pack.join("gpu-check.txt")).unwrap();
    assert!(report.contains("gpu-rtf: "), "{report}");

    // As it runs on the GPU machine: where no GPU is usable, a clear error.
    let (ok, text) = run_pack(&pack, &[]);
    if !ok {
        assert!(text.contains("CUDA"), "{text}");
    }
}
