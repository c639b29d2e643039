"""Benchmark: how well does the MTCNN backend find faces and place the 5 landmarks on real photos?

Data: annotated photos in dlib's imglab XML format (``*_with_face_landmarks.xml``: a box and the 68
iBUG points per face; default: dlib's example photos, ``--data``). The 68 points are reduced to our 5:
eye centres = mean of points 36-41 (image-left eye) and 42-47 (image-right eye), nose tip = 30, mouth
corners = 48 (image-left) and 54 (image-right); the script checks that the left points have the
smaller x. Note: dlib's 68 points were themselves made by a landmark model, not by people.

Matching: detections (score >= ``--min-score``) are matched one-to-one to annotated faces, greedily by
IoU, accepting IoU >= 0.3 (lenient because dlib's boxes stop at the eyebrows while MTCNN's include
the forehead; a wrong match would show up in the NME).

Figures: detection rate (matched / annotated), false detections (unmatched detections), NME = mean
5-point error / inter-ocular distance (between the annotated eye centres), averaged over matched
faces, and ms/image for detection (network built beforehand, one untimed warm-up image).

Baseline in the same run: a box-only landmark predictor, the mean 5-point layout inside the MTCNN box
learnt on the other photos (leave-one-photo-out), placed in each matched box. It shows how much of
the landmark accuracy the network adds beyond where the box is.

Goals: detection rate >= 0.8 and NME <= 0.1; exit 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _env import environment

from faceops.align import detect_faces, get_detector
from faceops.io.images import read_image

RESULTS = Path(__file__).resolve().parent / "results" / "detector_accuracy.json"
DEFAULT_DATA = Path("/work/shared/data/dlib-faces/examples")
IOU_MATCH = 0.3
RATE_GOAL, NME_GOAL = 0.8, 0.1


@dataclass
class Annotated:
    """One annotated face: box [4] x1, y1, x2, y2 and 5 landmarks [5, 2]."""

    box: np.ndarray
    landmarks: np.ndarray


def five_from_68(points: np.ndarray) -> np.ndarray:
    """[68, 2] iBUG points -> [5, 2] in faceops.labels.LANDMARK_NAMES order."""
    return np.stack(
        [points[36:42].mean(axis=0), points[42:48].mean(axis=0), points[30], points[48], points[54]]
    )


def read_annotations(data: Path) -> dict[Path, list[Annotated]]:
    """Faces with 68 points from every ``*_with_face_landmarks.xml`` under ``data``, keyed by image path.

    The XML files are local, trusted inputs (dlib's own examples); ElementTree does not fetch external
    entities.
    """
    faces: dict[Path, list[Annotated]] = {}
    files = sorted(data.rglob("*_with_face_landmarks.xml"))
    if not files:
        raise FileNotFoundError(f"no *_with_face_landmarks.xml under {data}; pass --data DIR with dlib imglab files")
    for xml_path in files:
        for image in ET.parse(xml_path).getroot().iter("image"):
            path = xml_path.parent / image.get("file")
            for box in image.iter("box"):
                if box.get("ignore") == "1":
                    continue
                parts = sorted(box.iter("part"), key=lambda p: int(p.get("name")))
                if len(parts) != 68:
                    raise ValueError(f"{xml_path}: a box of {path.name} has {len(parts)} parts, expected 68")
                points = np.array([[float(p.get("x")), float(p.get("y"))] for p in parts])
                x, y, w, h = (float(box.get(k)) for k in ("left", "top", "width", "height"))
                faces.setdefault(path, []).append(Annotated(np.array([x, y, x + w, y + h]), five_from_68(points)))
    return faces


def iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(truth: list[Annotated], boxes: list[np.ndarray]) -> list[tuple[int, int]]:
    """Greedy one-to-one (truth index, detection index) pairs by decreasing IoU >= IOU_MATCH."""
    pairs = sorted(((iou(t.box, b), i, j) for i, t in enumerate(truth) for j, b in enumerate(boxes)), reverse=True)
    used_t, used_d, out = set(), set(), []
    for overlap, i, j in pairs:
        if overlap >= IOU_MATCH and i not in used_t and j not in used_d:
            used_t.add(i), used_d.add(j), out.append((i, j))
    return out


def nme(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean point error [5, 2] normalised by the annotated inter-ocular distance."""
    return float(np.linalg.norm(pred - truth, axis=1).mean() / np.linalg.norm(truth[1] - truth[0]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder searched for *_with_face_landmarks.xml")
    parser.add_argument("--min-score", type=float, default=0.9, help="as align.min_score")
    args = parser.parse_args(argv)

    annotations = read_annotations(args.data)
    all_truth = [f for faces in annotations.values() for f in faces]
    left_first = np.mean([f.landmarks[0, 0] < f.landmarks[1, 0] and f.landmarks[3, 0] < f.landmarks[4, 0]
                          for f in all_truth])  # fmt: skip
    print(f"{len(annotations)} photos, {len(all_truth)} annotated faces; image-left points have smaller x in "
          f"{100 * left_first:.0f}% of faces")  # fmt: skip

    try:
        get_detector("mtcnn")  # build outside the timed region
    except ImportError as err:
        print(f"cannot run: {err}", file=sys.stderr)
        return 1
    images = {path: read_image(path, max_pixels=40_000_000) for path in annotations}
    detect_faces(next(iter(images.values())), detector="mtcnn")  # warm-up

    per_photo, matched = [], []  # matched: (photo, truth landmarks, detected landmarks, detected box)
    seconds = 0.0
    for path, truth in annotations.items():
        start = time.perf_counter()
        faces = detect_faces(images[path], detector="mtcnn", min_score=args.min_score)
        seconds += time.perf_counter() - start
        pairs = match(truth, [f.box for f in faces])
        matched += [(path, truth[i].landmarks, faces[j].landmarks, faces[j].box) for i, j in pairs]
        per_photo.append({"photo": path.name, "annotated": len(truth), "detections": len(faces), "matched": len(pairs)})

    # Box-only baseline: mean landmark layout in box-relative coordinates, learnt on the other photos.
    def relative(lm: np.ndarray, box: np.ndarray) -> np.ndarray:
        return (lm - box[:2]) / (box[2:] - box[:2])

    mtcnn_nme, prior_nme = [], []
    for path, truth_lm, det_lm, box in matched:
        others = [relative(t, b) for p, t, _, b in matched if p != path]
        layout = np.mean(others, axis=0)
        mtcnn_nme.append(nme(det_lm, truth_lm))
        prior_nme.append(nme(box[:2] + layout * (box[2:] - box[:2]), truth_lm))

    n_truth, n_matched = len(all_truth), len(matched)
    n_det = sum(p["detections"] for p in per_photo)
    rate = n_matched / n_truth
    mean_nme = float(np.mean(mtcnn_nme)) if mtcnn_nme else float("nan")
    mean_prior = float(np.mean(prior_nme)) if prior_nme else float("nan")
    ms_per_image = 1000 * seconds / len(annotations)

    print(f"{'photo':<20}{'annotated':>10}{'detected':>10}{'matched':>9}")
    for p in per_photo:
        print(f"{p['photo']:<20}{p['annotated']:>10}{p['detections']:>10}{p['matched']:>9}")
    print(f"\n{'landmarks on matched faces':<34}{'NME mean':>10}{'NME median':>12}{'NME max':>9}")
    for label, values in (("MTCNN (O-net points)", mtcnn_nme), ("box-only mean layout (baseline)", prior_nme)):
        print(f"{label:<34}{np.mean(values):>10.4f}{np.median(values):>12.4f}{np.max(values):>9.4f}")
    print(f"\ndetection rate {n_matched}/{n_truth} = {rate:.3f} (goal >= {RATE_GOAL}); false detections "
          f"{n_det - n_matched}; min_score {args.min_score}; {ms_per_image:.0f} ms/image (CPU)")  # fmt: skip

    goals = {f"detection rate >= {RATE_GOAL}": rate >= RATE_GOAL, f"NME <= {NME_GOAL}": mean_nme <= NME_GOAL}
    import torch  # already loaded by the detector; only its version and threads are recorded

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    record = {"data": str(args.data), "min_score": args.min_score, "iou_match": IOU_MATCH, "photos": len(annotations),
              "annotated_faces": n_truth, "matched": n_matched, "false_detections": n_det - n_matched,
              "detection_rate": rate, "nme_mtcnn": mean_nme, "nme_box_prior": mean_prior,
              "ms_per_image": ms_per_image, "per_photo": per_photo, "goals": goals,
              "environment": environment("torch", torch_threads=torch.get_num_threads())}  # fmt: skip
    RESULTS.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    met = all(goals.values())
    failed = [g for g, ok in goals.items() if not ok]
    print(f"SUMMARY detector_accuracy: rate {rate:.3f}, NME {mean_nme:.4f} (box prior {mean_prior:.4f}), "
          f"{ms_per_image:.0f} ms/image -> {'goals met' if met else f'NOT MET: {failed}'}")  # fmt: skip
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
