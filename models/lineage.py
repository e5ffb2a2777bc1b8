"""Draws one curve across the runs a shipped model descends from, end to end.

Each run's metrics log restarts at step 1; this lays them one after the other (a run cut
at the step that was passed on) and lets the trainer draw the result. Usage:

    python3 models/lineage.py OUT_DIR RUN_DIR[:LAST_STEP] ...

then `OUT_DIR/curve.png`. The Quality model's ninth and tenth sessions:

    python3 models/lineage.py /tmp/lineage runs/q-crop4 runs/q-crop4b:2000 runs/s10-deep6
"""

import json
import os
import subprocess
import sys


def main():
    out_dir, runs = sys.argv[1], sys.argv[2:]
    os.makedirs(out_dir, exist_ok=True)
    offset, lines = 0, []
    for run in runs:
        path, _, last = run.partition(":")
        last = int(last) if last else None
        end = offset
        with open(os.path.join(path, "metrics.jsonl")) as log:
            for line in log:
                record = json.loads(line)
                if last is not None and record["step"] > last:
                    continue
                record["step"] += offset
                end = record["step"]
                lines.append(json.dumps(record))
        offset = end
    with open(os.path.join(out_dir, "metrics.jsonl"), "w") as log:
        log.write("\n".join(lines) + "\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trainer = os.path.join(root, "target", "release", "wavecrn-train")
    subprocess.run([trainer, "plot", out_dir], check=True)


if __name__ == "__main__":
    main()
