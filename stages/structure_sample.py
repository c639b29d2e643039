"""Stage `structure-sample`: the generated building data set, written in HEAT's layout (rgb/ + annot/).

``faceops.structure.synthetic.generate_scenes`` draws ``structure_sample.images`` scenes of several buildings
(rectilinear and general outlines, adjacent corners and tiny edges on purpose) as aerial-style images; each
is written as ``rgb/<name>.jpg`` and ``annot/<name>.npy`` (HEAT's annotation: corners and edges), so the
``structure-shard`` stage reads it exactly as it reads real HEAT data. Same seed and params, same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

from faceops.config.base import BaseParams
from faceops.config.structure_sample import StructureSampleParams
from faceops.io.atomic import atomic_directory, atomic_write_bytes
from faceops.structure.synthetic import generate_scenes, scene_files
from stages._common import console, params_or_exit, parse_args, progress_bar, write_metrics


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, ["out", "metrics"], argv)
    params = params_or_exit(args.params, base=BaseParams, structure_sample=StructureSampleParams)
    cfg = params.structure_sample
    totals = {"images": 0, "corners": 0, "edges": 0, "regions": 0}
    with atomic_directory(args.out) as staging, progress_bar("structure-sample", cfg.images, "images") as advance:
        for scene in generate_scenes(cfg.images, seed=params.base.seed, size=cfg.image_size, buildings=cfg.buildings):
            for relpath, data in scene_files(scene, jpeg_quality=cfg.jpeg_quality).items():
                (staging / relpath).parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(staging / relpath, data)
            counts = {"images": 1, "corners": len(scene.graph.corners), "edges": len(scene.graph.edges),
                      "regions": len(scene.regions)}  # fmt: skip
            totals = {key: totals[key] + counts[key] for key in totals}
            advance(1)
    write_metrics(args.metrics, totals)
    console.print(f"structure-sample: {totals} -> {args.out}")


if __name__ == "__main__":
    main()
