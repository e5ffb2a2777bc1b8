#!/usr/bin/env bash
# The recipe study behind docs/experiments/README.md: short runs of equal CPU time (each stops at
# CPU_MINUTES of process CPU time, one LibTorch thread), two at a time on a 2-core machine,
# each scored on all 100 validation pairs. Usage: bash models/study.sh ROW [ROW...]
# (rows below; no argument lists them). Runs land in runs/study/ROW.
set -euo pipefail
cd "$(dirname "$0")/.."
CPU_MINUTES=${CPU_MINUTES:-12}
common=(--speech ../shared/data/speech/train --noise ../shared/data/noise/train
  --threads 1 --cpu-minutes "$CPU_MINUTES" --steps 1000000 --warmup 200 --valid-every 1000)
# Every row: a constant rate after warm-up (--lr-end = --lr), so no row's schedule depends
# on how many steps its budget buys.
declare -A rows=(
  [l1]="--channels 64 --layers 2 --lr 1e-3 --lr-end 1e-3"
  [stft]="--channels 64 --layers 2 --lr 1e-3 --lr-end 1e-3 --stft-loss 0.02"
  [babble]="--channels 64 --layers 2 --lr 1e-3 --lr-end 1e-3 --stft-loss 0.02 --babble 0.4"
  [sisdr]="--channels 64 --layers 2 --lr 1e-3 --lr-end 1e-3 --stft-loss 0.02 --babble 0.4 --si-sdr-loss 0.002"
  [lr3]="--channels 64 --layers 2 --lr 3e-3 --lr-end 3e-3 --stft-loss 0.02 --babble 0.4"
  [128x4]="--channels 128 --layers 4 --lr 1e-3 --lr-end 1e-3 --stft-loss 0.02 --babble 0.4"
  [crop2]="--channels 64 --layers 2 --lr 1e-3 --lr-end 1e-3 --stft-loss 0.02 --babble 0.4 --seconds 2 --batch 4"
  [snr]="--channels 64 --layers 2 --lr 1e-3 --lr-end 1e-3 --stft-loss 0.02 --babble 0.4 --snr -5 20"
)
# Continuation rows (session 9): each starts from the Quality model shipped at that session's
# start (commit 2a98362; `git show 2a98362:models/wavecrn-denoise.onnx > start.onnx` and
# INIT=start.onnx to repeat them exactly), 100 warm-up steps to 3e-4 and a half cosine to 3e-5
# over 6,000 steps of 8 audio-seconds each; 45 CPU-minutes at most.
INIT=${INIT:-models/wavecrn-denoise.onnx}
continued=(--speech ../shared/data/speech/train --noise ../shared/data/noise/train
  --threads 1 --cpu-minutes 45 --valid-every 1000)
cont="--channels 128 --layers 4 --init $INIT --lr 3e-4 --lr-end 3e-5 --warmup 100 --steps 6000"
rows+=(
  [c-base]="$cont --babble 0.4 --stft-loss 0.02"
  [c-crop4]="$cont --babble 0.4 --stft-loss 0.02 --seconds 4 --batch 2"
  [c-stft01]="$cont --babble 0.4 --stft-loss 0.1"
  [c-crop4-talk]="$cont --babble 0.6 --talkers 1 3 --stft-loss 0.02 --seconds 4 --batch 2"
)
# Session 10 rows: from the Quality model shipped at that session's start (commit c14552d,
# the 4 s-crop 128 x 4 file), 4 s crops. `d-` rows deepen it: the added top layers start as
# near-identities (`--init` with fewer layers than `--layers`), a half cosine from 3e-4.
s10="--channels 128 --init $INIT --seconds 4 --batch 2 --stft-loss 0.02"
rows+=(
  [s10-a]="$s10 --layers 4 --babble 0.4 --lr 2e-4 --lr-end 2e-5 --warmup 100 --steps 6000 --valid-every 500"
  [s10-talk5]="$s10 --layers 4 --babble 0.5 --talkers 1 3 --lr 2e-4 --lr-end 2e-5 --warmup 100 --steps 6000 --valid-every 500"
  [d-deep6]="$s10 --layers 6 --babble 0.4 --lr 3e-4 --lr-end 3e-5 --warmup 200 --steps 10000 --valid-every 1000"
  [d-deep8]="$s10 --layers 8 --babble 0.4 --lr 3e-4 --lr-end 3e-5 --warmup 200 --steps 7500 --valid-every 1000"
)
tenth=(--speech ../shared/data/speech/train --noise ../shared/data/noise/train
  --threads 1 --cpu-minutes 95)
# Session 11 rows (issue 26), on the data path without its defects (per-speaker loops and
# noise loops drawn by duration, no padding, a data seed per run): from the 128 x 6 Quality
# file shipped at that session's start (commit 5a82ae8; INIT as above to repeat exactly),
# 4 s crops, 2e-4 -> 2e-5 over 14,000 steps. `s11-base`: the tenth session's recipe;
# `s11-comp`: plus the compressed-spectrum loss; `s11-comp-aug`: plus augmentation.
s11="--channels 128 --layers 6 --init $INIT --seconds 4 --batch 2 --stft-loss 0.02 --babble 0.4 --lr 2e-4 --lr-end 2e-5 --warmup 100 --steps 14000 --valid-every 1000"
rows+=(
  [s11-base]="$s11"
  [s11-comp]="$s11 --compressed-loss 1.0"
  [s11-comp-aug]="$s11 --compressed-loss 1.0 --eq 0.3 --reverb 0.1 --second-noise 0.2 --speech-shaped 0.1 --snr -5 20"
)
eleventh=(--speech ../shared/data/speech/train --noise ../shared/data/noise/train
  --threads 1 --cpu-minutes 125)
# Session 12 rows (issue 26): from the Quality file shipped at that session's start (commit
# 3c043b8, the end of s11-comp-aug), its recipe on a fresh data seed, 10,000 steps, a warm
# restart to 2e-4 and a half cosine to 2e-5. `s12-restore` (issue 24) takes the other slot:
# the paper's 256 x 6 from the shipped restore file (1,000 steps of 1 s crops), 2 s crops, the
# compressed-spectrum loss.
s12="--channels 128 --layers 6 --init $INIT --seconds 4 --batch 2 --stft-loss 0.02 --babble 0.4 --compressed-loss 1.0 --eq 0.3 --reverb 0.1 --second-noise 0.2 --speech-shaped 0.1 --snr -5 20 --warmup 100 --steps 10000 --valid-every 1000"
rows+=(
  [s12-lr2]="$s12 --lr 2e-4 --lr-end 2e-5"
  [s12-restore]="--task restore --channels 256 --layers 6 --init models/wavecrn-restore.onnx --seconds 2 --batch 4 --stft-loss 0.02 --compressed-loss 1.0 --lr 5e-4 --lr-end 5e-5 --warmup 100 --steps 4000 --valid-every 500"
)
# Session 14 rows: `s14-q` continues the Quality file shipped at that session's start (commit
# f6d636b, s12-lr2 step 9,000) with more rooms and some clipped inputs (real recordings have
# both), 1.5e-4 -> 1.5e-5 over 14,000 steps; `s14-restore` continues the shipped restore file
# with the s12-restore recipe from 3e-4.
s14q="--channels 128 --layers 6 --init $INIT --seconds 4 --batch 2 --stft-loss 0.02 --babble 0.4 --compressed-loss 1.0 --eq 0.3 --reverb 0.25 --clip 0.05 --second-noise 0.2 --speech-shaped 0.1 --snr -5 20 --warmup 100 --steps 14000 --valid-every 1000"
rows+=(
  [s14-q]="$s14q --lr 1.5e-4 --lr-end 1.5e-5"
  [s14-restore]="--task restore --channels 256 --layers 6 --init models/wavecrn-restore.onnx --seconds 2 --batch 4 --stft-loss 0.02 --compressed-loss 1.0 --lr 3e-4 --lr-end 3e-5 --warmup 100 --steps 5000 --valid-every 500"
)
# Session 15 rows, started at the end of session 14: `s15-q` continues the Quality file
# shipped then (s14-q step 13,000) on the s14-q recipe from 1e-4; `s15-restore` the restore
# file (s14-restore step 4,000) from 1.5e-4.
rows+=(
  [s15-q]="$s14q --lr 1e-4 --lr-end 1e-5"
  [s15-restore]="--task restore --channels 256 --layers 6 --init models/wavecrn-restore.onnx --seconds 2 --batch 4 --stft-loss 0.02 --compressed-loss 1.0 --lr 1.5e-4 --lr-end 1.5e-5 --warmup 100 --steps 5000 --valid-every 500"
)
# Session 16 rows (issue 26), from the files shipped at that session's start (commit ccf0ac7):
# `s16-speed` is `s15-q` with 30 % of the speech played 0.9-1.1 times as fast (more voices
# than the training speakers'); `s16-wide` widens the 128 x 6 Quality file to 256 x 6, the
# paper's shape, by copying every unit (Net2Net), on the s14-q recipe from 1e-4 over 5,000
# steps (a 256-channel step costs about four 128-channel ones).
s16wide=${s14q/--channels 128/--channels 256}
s16wide=${s16wide/--steps 14000/--steps 5000}
rows+=(
  [s16-speed]="$s14q --speed 0.3 --lr 1e-4 --lr-end 1e-5"
  [s16-wide]="$s16wide --lr 1e-4 --lr-end 1e-5"
)
# Session 17 rows (issue 26), from the files shipped at that session's start (commit bd4e227):
# `s17-causal` brings the Low latency model (256 x 6, one direction, last trained in session
# 11) onto the Quality model's recipe since session 14 (more rooms, clipped inputs) with
# `--speed 0.3`, 1.5e-4 -> 1.5e-5 over 12,000 steps; `s17-q` continues the Quality file with
# more of the speech sped up or slowed down (`--speed 0.5`), a warm restart to 8e-5 and a half
# cosine to 8e-6 over 10,000 steps. (`s16-wide` longer did not fit: a 256-wide step cost 1.3
# CPU-s beside the builds, so 8,000 steps would have outrun the session.)
s17causal=${s14q/--channels 128 --layers 6 --init $INIT/--causal --channels 256 --layers 6 --init models/wavecrn-denoise-causal.onnx}
s17causal=${s17causal/--steps 14000/--steps 12000}
rows+=(
  [s17-causal]="$s17causal --speed 0.3 --lr 1.5e-4 --lr-end 1.5e-5"
  [s17-q]="${s14q/--steps 14000/--steps 10000} --speed 0.5 --lr 8e-5 --lr-end 8e-6"
)
# Session 18 rows (issue 26), from the files shipped at that session's start (commit c0041c3):
# `s18-wide` widens the Quality file (s17-q step 8,000) to 256 x 6, as `s16-wide` did, on the
# `s17-q` recipe from 1e-4 over 6,000 steps (`s16-wide` was still rising at its end);
# `s18-snr` continues the 128 x 6 file on that recipe with mixtures up to 30 dB SNR instead of
# 20 (recordings that are only a little noisy, which a dialogue editor meets most), 8e-5 ->
# 8e-6 over 10,000 steps.
s18q="${s14q/--steps 14000/--steps 10000} --speed 0.5"
s18wide=${s18q/--channels 128/--channels 256}
s18wide=${s18wide/--steps 10000/--steps 6000}
rows+=(
  [s18-wide]="$s18wide --lr 1e-4 --lr-end 1e-5"
  [s18-snr]="${s18q/--snr -5 20/--snr -5 30} --lr 8e-5 --lr-end 8e-6"
)
# Session 19 rows (issue 24), the restore model's size and starting point at equal CPU time:
# the 128 x 6 WaveCRN (a quarter of the paper's cost per step) on the restore recipe since
# session 12 (2 s crops, batch 4, the compressed-spectrum loss), 5e-4 -> 5e-5 over 16,000
# steps; `s19-r128` starts from the Quality denoising file (commit 4f8b7f4: its encoder and
# decoder already map waveforms to features and back), `s19-r128-scratch` from the codec
# initialisation. The 256 x 6 line is the shipped restore file's history (sessions 12-15).
s19r="--task restore --channels 128 --layers 6 --seconds 2 --batch 4 --stft-loss 0.02 --compressed-loss 1.0 --lr 5e-4 --lr-end 5e-5 --warmup 200 --steps 16000 --valid-every 1000"
# `s19-r128-l1` (started an hour into the session, in the slot `s19-r128-scratch` had held
# until its step 6,000) is `s19-r128` on the paper's loss alone, the waveform L1.
rows+=(
  [s19-r128]="$s19r --init models/wavecrn-denoise.onnx"
  [s19-r128-scratch]="$s19r"
  [s19-r128-l1]="${s19r/ --stft-loss 0.02 --compressed-loss 1.0/} --init models/wavecrn-denoise.onnx"
)
# Session 20 rows (issue 24): the runs folder of session 19 was lost with its machine, so
# `s19-r128` runs again from its start (its curve to step 7,000 is in docs/experiments);
# `s20-restore` takes the other slot: the shipped restore file (256 x 6, `s14-restore` step
# 4,000, as of commit b6eed60) on 4 s crops (batch 2: the same audio per step; the crop-length
# axis of the study), a warm restart to 2e-4 and a half cosine to 2e-5 over 8,000 steps.
rows+=(
  [s20-restore]="--task restore --channels 256 --layers 6 --init models/wavecrn-restore.onnx --seconds 4 --batch 2 --stft-loss 0.02 --compressed-loss 1.0 --lr 2e-4 --lr-end 2e-5 --warmup 100 --steps 8000 --valid-every 500"
)
# The session was cut off at 18:37 and went on at 20:10 (the runs folder kept): `s20-restore`
# resumed, and `s20-restore-8s` took the slot `s19-r128` had held (that row's rerun had reached
# step 16,000 at PESQ 1.615, below the shipped 256 x 6 file). It continues the file
# `s20-restore` made at its step 4,000 (commit 97e14df) on 8 s crops, batch 1 (the same audio
# per step again), 1e-4 -> 1e-5 over 6,000 steps.
rows+=(
  [s20-restore-8s]="--task restore --channels 256 --layers 6 --init models/wavecrn-restore.onnx --seconds 8 --batch 1 --stft-loss 0.02 --compressed-loss 1.0 --lr 1e-4 --lr-end 1e-5 --warmup 100 --steps 6000 --valid-every 500"
  # The learning-rate axis from the same file, in the slot `s20-restore` left at its end
  # (step 8,000 at 20:37): the 4 s crops again, 5e-5 -> 5e-6 over 5,000 steps.
  [s20-restore-lr]="--task restore --channels 256 --layers 6 --init models/wavecrn-restore.onnx --seconds 4 --batch 2 --stft-loss 0.02 --compressed-loss 1.0 --lr 5e-5 --lr-end 5e-6 --warmup 100 --steps 5000 --valid-every 500"
)
twelfth=(--speech ../shared/data/speech/train --noise ../shared/data/noise/train
  --threads 1 --cpu-minutes 110)
fourteenth=(--speech ../shared/data/speech/train --noise ../shared/data/noise/train
  --threads 1 --cpu-minutes 130)
twentieth=(--speech ../shared/data/speech/train --noise ../shared/data/noise/train
  --threads 1 --cpu-minutes 140)
# The rows started later in session 20: the budget that let them end before the session did.
twentieth_late=(--speech ../shared/data/speech/train --noise ../shared/data/noise/train
  --threads 1 --cpu-minutes 125)
if [ $# -eq 0 ]; then
  for r in "${!rows[@]}"; do echo "$r: ${rows[$r]}"; done
  exit 0
fi
trainer=target/release/wavecrn-train
[ -x "$trainer" ] || cargo build --release -p wavecrn-train
mkdir -p runs/study
for row in "$@"; do
  [ -n "${rows[$row]:-}" ] || { echo "unknown row $row" >&2; exit 2; }
  dir=runs/study/$row
  resume=()
  [ -f "$dir/checkpoint.safetensors" ] && resume=(--resume)
  # shellcheck disable=SC2086
  budget=("${common[@]}")
  # Continuation rows bring their own schedule.
  [[ $row == c-* ]] && budget=("${continued[@]}")
  [[ $row == s10-* || $row == d-* ]] && budget=("${tenth[@]}")
  [[ $row == s11-* ]] && budget=("${eleventh[@]}")
  [[ $row == s12-* ]] && budget=("${twelfth[@]}")
  [[ $row == s14-* || $row == s15-* || $row == s16-* || $row == s17-* || $row == s18-* || $row == s19-* ]] && budget=("${fourteenth[@]}")
  [[ $row == s20-* ]] && budget=("${twentieth[@]}")
  [[ $row == s20-restore-8s || $row == s20-restore-lr ]] && budget=("${twentieth_late[@]}")
  # Where the kernel groups processes by session (autogroups), `nice` orders them only inside
  # their own group: each run gets a session of its own, niced as a whole, so that builds and
  # tests still go first.
  setsid bash -c '{ echo 10 > /proc/self/autogroup; } 2>/dev/null; exec nice -n 10 "$@"' run \
    "$trainer" train "${budget[@]}" ${rows[$row]} --run-dir "$dir" "${resume[@]}" \
    > "runs/study/$row.log" 2>&1 &
done
wait
