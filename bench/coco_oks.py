"""Check: COCO person keypoints read by faceops' ingest reader score OKS AP 1, falling with noise.

Question: does the ``coco_keypoints`` ingest reader keep every person's keypoints exactly, and does
the OKS AP path (``faceops.keypoints.oks_ap``, pycocotools) score them as COCO does? The annotation
file is the ground truth; the detections are the persons the reader returns (score 1), as read and
with seeded Gaussian noise of 2, 5 and 10 px added to every joint. A check of the reader and the
metric, not of a model (the sample has 4 photos).

The reader wants ``root/annotations.json`` beside the images, so the photos and the given json are
copied to a temporary folder first (nothing is written into the repository but the result json).

Data: a folder with a few COCO val2017 photos and their annotations in COCO person-keypoints format
(17 keypoints per person; COCO annotations CC BY 4.0, photos under their Flickr licences), e.g. 4 photos
with 14 persons. Run: ``python bench/coco_oks.py [FOLDER]`` (json name defaults to ``test_coco.json``; the folder
defaults to the shared COCO sample, and without it the bench says it was not run, exit status ``NOT_RUN``).
Exit 1 unless AP is 1 without noise and falls monotonically with it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from _env import NOT_RUN, environment

from faceops.ingest import scan_source
from faceops.io.layout import COCO_ANNOTATIONS
from faceops.keypoints import oks_ap

RESULTS = Path(__file__).resolve().parent / "results" / "coco_oks.json"
NOISE_PX = (0.0, 2.0, 5.0, 10.0)
#: The shared COCO keypoints sample where this project's machines keep it (`../shared/data`, not in the repository).
DEFAULT_DATA = Path("/work/shared/data/coco-pose-sample/coco")


def read_persons(root: Path, annotation_file: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ground-truth dict and the ingest reader's persons as COCO detections (score 1)."""
    ground_truth = json.loads((root / annotation_file).read_text(encoding="utf-8"))
    image_id = {image["file_name"]: image["id"] for image in ground_truth["images"]}
    with tempfile.TemporaryDirectory() as tmp:
        for name in image_id:
            shutil.copy2(root / name, Path(tmp) / name)
        shutil.copy2(root / annotation_file, Path(tmp) / COCO_ANNOTATIONS)
        result = scan_source(Path(tmp), "coco", "coco_keypoints", max_pixels=40_000_000, max_file_bytes=50_000_000, min_side=32)
    if result.quarantine:
        raise RuntimeError(f"the reader quarantined {result.quarantine}; expected every sample photo to pass")
    detections = []
    for row in result.rows:
        for person in row["labels"]["persons"]:
            if any(v > 0 for _, _, v in person["keypoints"]):
                detections.append({"image_id": image_id[row["path"]], "category_id": 1, "score": 1.0,
                                   "keypoints": np.asarray(person["keypoints"], np.float64)})  # fmt: skip
    return ground_truth, detections


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, nargs="?", default=DEFAULT_DATA,
                        help="folder with the photos and the COCO keypoints json")  # fmt: skip
    parser.add_argument("--annotations", default="test_coco.json", help="json file name inside root")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not (args.root / args.annotations).is_file():
        print(f"SUMMARY coco_oks: not run: no {args.annotations} in {args.root} (pass the COCO sample's folder)")
        return NOT_RUN
    ground_truth, detections = read_persons(args.root, args.annotations)
    rng = np.random.default_rng(args.seed)
    rows = []
    print(f"{len(ground_truth['images'])} images, {len(detections)} persons with keypoints read\n"
          f"{'noise px':>8} {'AP':>6} {'AP50':>6} {'AP75':>6} {'AR':>6}")  # fmt: skip
    for noise in NOISE_PX:
        noisy = []
        for det in detections:
            kps = det["keypoints"].copy()
            kps[:, :2] += rng.normal(0.0, noise, (len(kps), 2))
            noisy.append({**det, "keypoints": kps.ravel().tolist()})
        stats = oks_ap(ground_truth, noisy)
        rows.append({"noise_px": noise, **stats})
        print(f"{noise:>8.1f} {stats['AP']:>6.3f} {stats['AP50']:>6.3f} {stats['AP75']:>6.3f} {stats['AR']:>6.3f}")
    aps = [row["AP"] for row in rows]
    ok = aps[0] == 1.0 and all(a >= b for a, b in zip(aps, aps[1:])) and aps[-1] < 1.0
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "question": "ingest coco_keypoints reader + OKS AP: AP 1 on the persons as read, falling with noise",
        "args": {k: str(v) for k, v in vars(args).items()}, "persons": len(detections), "results": rows,
        "goal_met": ok, "env": environment("numpy", "pycocotools"),
    }, indent=2) + "\n")  # fmt: skip
    print(f"\nSUMMARY coco_oks: OKS AP {aps[0]:.3f} on the persons as read, {aps[-1]:.3f} at {NOISE_PX[-1]:.0f} px "
          f"noise: {'goal met' if ok else 'NOT MET'}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
