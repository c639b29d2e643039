"""Structure data: the generated scenes, HEAT's annotation files (read safely), the heat_planar ingest layout and the
structure shards."""

from __future__ import annotations

import io
import pickle

import cv2
import numpy as np
import pytest

from faceops.data.loader import ShardDataset
from faceops.ingest import scan_source
from faceops.io.heat_annotation import HeatAnnotationError, heat_annotation_bytes, read_heat_annotation
from faceops.io.shards import read_index, split_urls
from faceops.structure.graph import cycle_key, graph_from_labels, planar_faces
from faceops.structure.shards import write_structure_shards
from faceops.structure.synthetic import generate_scene, generate_scenes, scene_files

LIMITS = {"max_pixels": 10**7, "max_file_bytes": 10**7, "min_side": 16}


def _jpeg(size: int, value: int = 120) -> bytes:
    ok, data = cv2.imencode(".jpg", np.full((size, size, 3), value, np.uint8))
    assert ok
    return data.tobytes()


def _npy_of(obj: object) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, obj, allow_pickle=True)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------- generator


class TestSynthetic:
    def test_same_seed_same_scene_and_other_seed_other_scene(self):
        a, b = generate_scene(4, seed=7), generate_scene(4, seed=7)
        assert np.array_equal(a.image, b.image) and np.array_equal(a.graph.corners, b.graph.corners)
        assert not np.array_equal(generate_scene(4, seed=8).image, a.image)
        assert scene_files(a) == scene_files(b)

    def test_labels_are_exact_whole_pixels_inside_the_image(self):
        for scene in generate_scenes(30, seed=0, size=64):
            corners = scene.graph.corners
            assert np.array_equal(corners, np.round(corners)) and corners.min() >= 3 and corners.max() <= 60
            assert scene.image.shape == (64, 64, 3) and scene.image.dtype == np.uint8
            assert sorted(cycle_key(f) for f in planar_faces(scene.graph)) == sorted(
                cycle_key(r) for r in scene.regions
            )

    def test_hard_cases_are_there_on_purpose(self):
        """Several buildings per image, corners a few px apart, tiny edges, degree-3 corners, non-rectilinear edges."""
        scenes = list(generate_scenes(60, seed=0, size=64))
        buildings = [len(s.regions) for s in scenes]
        close = sum(int(((np.linalg.norm(s.graph.corners[:, None] - s.graph.corners[None], axis=-1)
                          + np.eye(len(s.graph.corners)) * 99) < 5).sum()) // 2 for s in scenes)  # fmt: skip
        lengths = np.concatenate([np.linalg.norm(np.diff(s.graph.corners[s.graph.edges], axis=1)[:, 0], axis=1)
                                  for s in scenes])  # fmt: skip
        slanted = np.concatenate([np.abs(np.diff(s.graph.corners[s.graph.edges], axis=1)[:, 0]).min(1) for s in scenes])
        assert np.mean(buildings) >= 2 and close >= 30
        assert (lengths <= 4).sum() >= 10 and (slanted >= 2).sum() >= 50
        assert any((s.graph.degrees() == 3).any() for s in scenes)

    def test_bad_arguments_are_refused(self):
        with pytest.raises(ValueError, match="size >= 32"):
            generate_scene(0, seed=0, size=16)


# ---------------------------------------------------------------------------------------------- HEAT files


class TestHeatAnnotation:
    def test_round_trip_and_heats_own_layout(self):
        corners, edges = np.array([[1.0, 2.0], [10.0, 2.0], [10.0, 9.0]]), [[0, 1], [1, 2]]
        got_corners, got_edges = read_heat_annotation(heat_annotation_bytes(corners, edges))
        assert got_corners.tolist() == corners.tolist() and got_edges.tolist() == edges
        # HEAT's files: int tuple keys, each edge from both ends or from one only
        one_sided = {(1, 2): np.array([[10, 2]]), (10, 2): np.array([[10, 9]]), (10, 9): np.zeros((0, 2))}
        assert read_heat_annotation(_npy_of(one_sided))[1].tolist() == [[0, 1], [1, 2]]

    def test_a_pickle_that_would_run_code_is_refused_before_it_runs(self, tmp_path):
        marker = tmp_path / "ran"

        class Exploit:
            def __reduce__(self):
                return (open, (str(marker), "w"))

        data = _npy_of({(0, 0): np.zeros((0, 2))})
        magic_and_header = data[: data.index(b"\n") + 1]  # the .npy header of one pickled object
        with pytest.raises(HeatAnnotationError, match="the pickle names"):
            read_heat_annotation(magic_and_header + pickle.dumps(Exploit(), protocol=2))
        assert not marker.exists()

    @pytest.mark.parametrize(("obj", "fragment"), [
        pytest.param([1, 2], "expected one pickled dict", id="numbers"),
        pytest.param(None, "expected a dict", id="not-a-dict"),
        pytest.param({(0, 0): np.array([[5, 5]])}, "not a corner of the file", id="dangling-neighbour"),
        pytest.param({(0, 0): np.array([[0, 0]])}, "joined to itself", id="self-loop"),
        pytest.param({("a", 0): np.zeros((0, 2))}, "not an \\(x, y\\) pair", id="bad-key"),
    ])  # fmt: skip
    def test_malformed_annotations_name_the_problem(self, obj, fragment):
        with pytest.raises(HeatAnnotationError, match=fragment):
            read_heat_annotation(_npy_of(obj))

    def test_not_an_npy_file(self):
        with pytest.raises(HeatAnnotationError, match="not a .npy"):
            read_heat_annotation(b"corners: 1, 2\n")


# ---------------------------------------------------------------------------------------------- ingest layout


def _heat_source(root, names=("a", "b", "c")):
    """A HEAT-layout source: a good image, one without annotation, one with a corner outside it, a broken one."""
    (root / "rgb").mkdir(parents=True)
    (root / "annot").mkdir()
    for k, name in enumerate(names):
        (root / "rgb" / f"{name}.jpg").write_bytes(_jpeg(32, 60 + 40 * k))
        (root / "annot" / f"{name}.npy").write_bytes(
            heat_annotation_bytes([[2, 2], [20, 2], [20, 20]], [[0, 1], [1, 2]])
        )
    (root / "rgb" / "lonely.jpg").write_bytes(_jpeg(32, 10))
    (root / "rgb" / "outside.jpg").write_bytes(_jpeg(32, 20))
    (root / "annot" / "outside.npy").write_bytes(heat_annotation_bytes([[2, 2], [40, 2]], [[0, 1]]))
    (root / "rgb" / "broken.jpg").write_bytes(_jpeg(32, 30))
    (root / "annot" / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    (root / "train_list.txt").write_text("a\nb\n")
    (root / "valid_list.txt").write_text("c\n")
    (root / "notes.txt").write_text("not an image\n")


def test_heat_layout_accepts_labelled_images_and_quarantines_the_rest(tmp_path):
    _heat_source(tmp_path / "heat")
    result = scan_source(tmp_path / "heat", "heat", "heat_planar", **LIMITS)
    rows = {r["path"]: r for r in result.rows}
    assert sorted(rows) == ["rgb/a.jpg", "rgb/b.jpg", "rgb/c.jpg"]
    assert rows["rgb/a.jpg"]["labels"] == {"identity": None, "corners": [[2.0, 2.0], [20.0, 2.0], [20.0, 20.0]],
                                            "edges": [[0, 1], [1, 2]], "split": "train"}  # fmt: skip
    assert rows["rgb/c.jpg"]["labels"]["split"] == "val"
    reasons = {q["path"]: q["reason"] for q in result.quarantine}
    assert reasons == {"rgb/lonely.jpg": "unlabeled", "rgb/outside.jpg": "bad_label", "rgb/broken.jpg": "bad_label",
                       "notes.txt": "unlabeled"}  # fmt: skip
    assert result.counts["seen"] == result.counts["accepted"] + len(result.quarantine) == 7


# ---------------------------------------------------------------------------------------------- shards


def test_structure_shards_hold_resized_graphs_and_regions(tmp_path):
    raw = tmp_path / "raw" / "synthetic"
    for scene in generate_scenes(12, seed=0, size=64):
        for relpath, data in scene_files(scene).items():
            (raw / relpath).parent.mkdir(parents=True, exist_ok=True)
            (raw / relpath).write_bytes(data)
    out = tmp_path / "shards"
    counts, quarantine = write_structure_shards(raw, "synthetic", out, image_size=32, maxcount=5,
                                                fractions={"train": 0.5, "val": 0.0, "test": 0.5}, jpeg_quality=90,
                                                **LIMITS)  # fmt: skip
    assert counts["accepted"] == 12 and quarantine == [] and read_index(out)["samples"] == 12
    samples = [s for split in read_index(out)["splits"] for s in ShardDataset(split_urls(out, split))]
    assert len(samples) == 12 and all(tuple(s["image"].shape) == (3, 32, 32) for s in samples)
    by_name = {s["key"]: s for s in samples}
    key = sorted(by_name)[0]
    meta = by_name[key]["meta"]
    assert meta["width"] == meta["height"] == 32 and meta["id"] == key and meta["source"] == "synthetic"
    graph = graph_from_labels(meta)
    assert sorted(cycle_key(r) for r in meta["regions"]) == sorted(cycle_key(f) for f in planar_faces(graph))
    # the same scene at 64 px keeps its bytes and corners; at 32 px corners follow the pixel grid
    again = tmp_path / "again"
    write_structure_shards(raw, "synthetic", again, image_size=64, maxcount=5,
                           fractions={"train": 0.5, "val": 0.0, "test": 0.5}, jpeg_quality=90, **LIMITS)  # fmt: skip
    full = {
        s["key"]: s["meta"] for split in read_index(again)["splits"] for s in ShardDataset(split_urls(again, split))
    }
    np.testing.assert_allclose((np.array(full[key]["corners"]) + 0.5) / 2 - 0.5, by_name[key]["meta"]["corners"])
