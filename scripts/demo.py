"""`make demo`: generate a small cohort and run the whole app on it, then print where the reports are.

Steps: strokefc-simulate -> participant level -> group level (CV + final model) -> participant level
again with the trained model on a fresh output folder. Sized to finish within 15 minutes on 2 cores.
"""

import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def run(step, cmd):
    print(f"\n==> {step}\n    {' '.join(map(str, cmd))}", flush=True)
    t0 = time.time()
    code = subprocess.call([str(c) for c in cmd])
    print(f"    ({time.time() - t0:.0f} s, exit code {code})", flush=True)
    if code != 0:
        sys.exit(f"demo step failed: {step}")


def main(root="demo"):
    root = Path(root).resolve()
    # 20 surrogates (default 50) keep the demo within its budget on 2 cores
    NULL = ["--null-surrogates", 20]
    bids, out, work = root / "bids", root / "derivatives" / "strokefc", root / "work"
    pred_out = root / "derivatives" / "strokefc-predict"
    t0 = time.time()
    if not (bids / "dataset_description.json").exists():
        run(
            "simulate a 24-patient cohort (4 mm grid, 240 volumes = 8 min at TR 2 s; coupling states "
            "of 40-80 s)",
            [
                BIN / "strokefc-simulate",
                bids,
                "--n-subjects",
                24,
                "--resolution",
                4,
                "--n-volumes",
                240,
                "--dynamics",
                "states",
                "--seed",
                1,
            ],
        )
    run(
        "participant level (dFC maps)",
        [BIN / "strokefc", bids, out, "participant", "--work-dir", work, "--nprocs", 2, *NULL],
    )
    run(
        "group level (primary parcel model, CNN, baseline and controls on the same folds; final model)",
        [
            BIN / "strokefc",
            bids,
            out,
            "group",
            "--work-dir",
            work,
            "--cv-folds",
            4,
            "--cv-repeats",
            1,
            "--epochs",
            25,
            "--cnn-resolution",
            4,
        ],
    )
    run(
        "participant level with the trained model (2 patients, fresh output folder)",
        [
            BIN / "strokefc",
            bids,
            pred_out,
            "participant",
            "--participant-label",
            "01",
            "02",
            "--model",
            out / "model",
            "--work-dir",
            root / "work-predict",
            "--nprocs",
            2,
            *NULL,
        ],
    )
    print(f"\nDemo finished in {time.time() - t0:.0f} s. Reports:")
    subjects = sorted(out.glob("sub-*.html"))
    print(f"  group (cross-validation, model, group maps): {out / 'group.html'}")
    print(f"  participants ({len(subjects)}): {subjects[0]} ... {subjects[-1].name}")
    for path in sorted(pred_out.glob("sub-*.html")):
        print(f"  with the model's prediction: {path}")
    print(f"Predictions table: {pred_out / 'predictions.tsv'}")
    print(f"Methods text: {out / 'logs' / 'CITATION.md'}")


if __name__ == "__main__":
    main(*sys.argv[1:])
