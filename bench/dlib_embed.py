"""Benchmark: do dlib's face embeddings tell real faces apart, before anything is trained here?

Question: on real photos, is the embedding of a photo closer to that of an altered copy of the same
photo than to the embeddings of other photos? This needs no identity labels: each photo is its own
identity, and the copy changes what a second photo of the person would (mirror side, head roll,
size, compression), though not expression, age or light, so it is an easy, label-free check.

Data: a sample of the FairFace validation split (``--data``: 901 photos, 224x224, padding 0.25; FairFace:
Karkkainen and Joo, WACV 2021, CC BY 4.0). Per photo, a
seeded copy: horizontal flip, rotation uniform in +-10 deg and scale uniform in [0.9, 1.1] about the
centre (borders reflected), JPEG re-encoded at a quality uniform in [60, 90]. The project's MTCNN
detector (``faceops.align``, score >= 0.9, largest face) finds the 5 landmarks in the photo and in
the copy separately, as the align stage would; a photo is left out when either has no face.

Embedders, each on the same faces:
1. ``dlib shards``: what ``embed.backend: dlib`` computes, dlib's chip cut from the 112x112 aligned
   crop the shards store (ArcFace template warp, JPEG quality 95 as ``align.jpeg_quality``);
2. ``dlib photo``: dlib's chip cut from the photo itself (dlib's usual input), to show what embedding
   from the shards instead costs;
3. ``swinface``: the project's trained model (``--model``, trained on synthetic faces only: the
   "before any training on real data" baseline) on that crop, when the file exists.

Figures: verification ROC AUC and TPR at FAR 1e-2 over all pairs: N genuine (photo, its copy) and
N (N - 1) impostor (photo, another photo's copy); seconds per face (dlib: descriptor included).
Goal (exit 1 otherwise): ``dlib shards`` AUC >= 0.95 and above the baseline's (when it ran).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from _env import environment

from faceops.align import align_face, detect_faces, template_for_size
from faceops.eval.evaluate import predict
from faceops.eval.verification import auc, tar_at_far
from faceops.io.checkpoint import MODEL_FILE
from faceops.io.images import decode_image, read_image
from faceops.models.dlib_face import DlibFaceEmbedder
from faceops.processes import available_cpus
from faceops.train.batch import normalize_images
from faceops.train.export import load_trained_model

RESULTS = Path(__file__).resolve().parent / "results" / "dlib_embed.json"
REPO = Path(__file__).resolve().parent.parent
GOAL_AUC = 0.95
FAR = 1e-2
MAX_ROTATION_DEG, SCALES, JPEG_QUALITIES = 10.0, (0.9, 1.1), (60, 90)
DETECTOR_MIN_SCORE = 0.9  # align.min_score in params.yaml
CROP_SIZE, CROP_JPEG_QUALITY = 112, 95  # base.image_size and align.jpeg_quality in params.yaml
MAX_PIXELS = 40_000_000

Face = tuple[np.ndarray, np.ndarray]  # (RGB photo, [5, 2] landmarks)


def altered_copy(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The photo mirrored, turned, rescaled and JPEG re-encoded (all drawn from ``rng``)."""
    height, width = image.shape[:2]
    angle = float(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle, float(rng.uniform(*SCALES)))
    turned = cv2.warpAffine(np.ascontiguousarray(image[:, ::-1]), matrix, (width, height), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT_101)  # fmt: skip
    return reencoded(turned, int(rng.integers(JPEG_QUALITIES[0], JPEG_QUALITIES[1] + 1)))


def reencoded(image: np.ndarray, quality: int) -> np.ndarray:
    """``image`` after a JPEG round trip at ``quality`` (how the align stage stores crops, how photos travel)."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok, "JPEG encoding failed"
    return decode_image(data.tobytes(), max_pixels=MAX_PIXELS)


def landmarks(image: np.ndarray) -> np.ndarray | None:
    """MTCNN's 5 points of the largest face scoring >= the align stage's threshold, or None."""
    faces = detect_faces(image, detector="mtcnn", min_score=DETECTOR_MIN_SCORE)
    return faces[0].landmarks if faces else None


def load_pairs(folder: Path, limit: int | None, seed: int) -> tuple[list[Face], list[Face], int]:
    """(photos, their copies, photos left out) with landmarks, in sorted file order."""
    paths = sorted(folder.rglob("*.jpg"))[:limit]
    originals, copies, skipped = [], [], 0
    for i, path in enumerate(paths):
        image = read_image(path, max_pixels=MAX_PIXELS)
        copy = altered_copy(image, np.random.default_rng([seed, i]))
        found, found_copy = landmarks(image), landmarks(copy)
        if found is None or found_copy is None:
            skipped += 1
            continue
        originals.append((image, found))
        copies.append((copy, found_copy))
    return originals, copies, skipped


def as_crop(face: Face) -> Face:
    """The 112x112 aligned crop the shards would hold, with the template as its landmarks."""
    crop = reencoded(align_face(face[0], face[1], CROP_SIZE), CROP_JPEG_QUALITY)
    return crop, template_for_size(CROP_SIZE)


def swinface_embedder(model_path: Path) -> Callable[[list[Face]], np.ndarray]:
    """Embed faces with the trained SwinFace model, from their aligned crops (as the embed stage does)."""
    model, _ = load_trained_model(model_path)

    def embed(faces: list[Face]) -> np.ndarray:
        crops = np.stack([as_crop(face)[0] for face in faces])
        images = torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous()
        batches = ({"image": images[i : i + 64], "key": [str(k) for k in range(i, min(i + 64, len(faces)))],
                    "meta": [{}] * len(images[i : i + 64])} for i in range(0, len(faces), 64))  # fmt: skip
        return predict(model, batches, normalize=normalize_images).embeddings

    return embed


def score(embed: Callable[[list[Face]], np.ndarray], originals: list[Face], copies: list[Face]) -> dict:
    """AUC and TPR at FAR 1e-2 over all (photo, copy) pairs, and seconds per face."""
    start = time.perf_counter()
    a, b = embed(originals), embed(copies)
    seconds = (time.perf_counter() - start) / (2 * len(originals))
    scores = a @ b.T
    same = np.eye(len(a), dtype=bool)
    return {"auc": round(auc(scores.ravel(), same.ravel()), 4),
            "tpr@far=1e-2": round(tar_at_far(scores.ravel(), same.ravel(), [FAR])[FAR], 4),
            "genuine_cos_median": round(float(np.median(scores[same])), 4),
            "impostor_cos_median": round(float(np.median(scores[~same])), 4), "s_per_face": round(seconds, 4)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared/data/fairface-val-sample/fair_face")
    ap.add_argument("--model", type=Path, default=REPO / "models/swinface" / MODEL_FILE)
    ap.add_argument("--limit", type=int, default=None, help="first N photos only (sorted by path)")
    ap.add_argument("--workers", type=int, default=available_cpus(), help="dlib descriptor processes")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    originals, copies, skipped = load_pairs(args.data, args.limit, args.seed)
    print(f"{len(originals)} photos with a face in the photo and in its copy ({skipped} left out), seed {args.seed}")
    dlib = DlibFaceEmbedder(workers=args.workers)
    embedders: dict[str, Callable[[list[Face]], np.ndarray]] = {
        "dlib shards": lambda faces: dlib.embed(as_crop(face) for face in faces),
        "dlib photo": dlib.embed,
    }
    if args.model.is_file():
        embedders["swinface"] = swinface_embedder(args.model)
    else:
        print(f"baseline skipped: no trained SwinFace model at {args.model} (the `train` stage writes it)")
    rows = {name: score(embed, originals, copies) for name, embed in embedders.items()}

    print(f"\n{'embedder':<14}{'AUC':>8}{'TPR@FAR1e-2':>13}{'cos same':>10}{'cos other':>11}{'s/face':>8}")
    for name, r in rows.items():
        print(f"{name:<14}{r['auc']:8.4f}{r['tpr@far=1e-2']:13.4f}{r['genuine_cos_median']:10.3f}"
              f"{r['impostor_cos_median']:11.3f}{r['s_per_face']:8.3f}")  # fmt: skip
    dlib_auc, base = rows["dlib shards"]["auc"], rows.get("swinface")
    ok = dlib_auc >= GOAL_AUC and (base is None or dlib_auc > base["auc"])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "environment": environment("numpy", "torch", "dlib", workers=args.workers),
        "args": {k: str(v) for k, v in vars(args).items()}, "photos": len(originals), "left_out": skipped,
        "results": rows, "goal_met": ok,
    }, indent=2) + "\n")  # fmt: skip
    versus = "no baseline model" if base is None else f"swinface AUC {base['auc']:.4f}"
    print(f"\nSUMMARY: goal {'met' if ok else 'NOT met'}: dlib AUC {dlib_auc:.4f} (goal >= {GOAL_AUC}), "
          f"TPR@FAR1e-2 {rows['dlib shards']['tpr@far=1e-2']:.4f}, {versus}, {len(originals)} real photos")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
