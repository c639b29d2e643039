"""faceops.structure: planar graphs, direction channels, per-channel NMS, HEAT's metrics, the network, its losses.

HEAT's metrics and the direction-channel targets are checked by their defining properties (ground truth scores
1 against itself, 8 px matching radius, one corner per channel ...), not by numbers of the papers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceops.structure.corners import detect_corners, mix_with_ground_truth
from faceops.structure.graph import cycle_key, make_graph, planar_faces, region_masks
from faceops.structure.inference import Decoding, predict_graphs, without_isolated
from faceops.structure.losses import CornerLoss, EdgeTerm, select_candidates
from faceops.structure.metrics import match_corners, score_graph, summarize_counts
from faceops.structure.model import CornerEdgeNet, corner_pairs
from faceops.structure.synthetic import generate_scene
from faceops.structure.targets import corner_channels, corner_heatmaps, encode_structures
from faceops.train.terms import TermInputs


def _rect(x0: float, y0: float, x1: float, y1: float, first: int = 0) -> tuple[list, list]:
    corners = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
    return corners, [[first + k, first + (k + 1) % 4] for k in range(4)]


#: Image shape of :func:`_two_buildings`.
SHAPE = (96, 96)


def _two_buildings():
    """Two rectangles in a 96 px image, sides >= 22 px and >= 22 px apart (a corner moved by up to 9 px stays
    nearest to where it was): 8 corners, 8 edges, 2 regions."""
    a, ea = _rect(4, 4, 28, 28)
    b, eb = _rect(50, 10, 80, 56, first=4)
    return make_graph(a + b, ea + eb)


# ---------------------------------------------------------------------------------------------- graphs


class TestGraph:
    def test_edges_are_oriented_deduplicated_sorted(self):
        g = make_graph([[0, 0], [5, 0], [5, 5]], [[2, 1], [1, 2], [0, 1], [1, 0]])
        assert g.edges.tolist() == [[0, 1], [1, 2]] and g.degrees().tolist() == [1, 2, 1]

    @pytest.mark.parametrize(("corners", "edges", "fragment"), [
        pytest.param([[0, 0], [1, 1]], [[0, 2]], "outside 0..1", id="index"),
        pytest.param([[0, 0], [1, 1]], [[1, 1]], "to itself", id="loop"),
        pytest.param([[0, 0, 0]], [], "corners must be", id="shape"),
        pytest.param([[0, float("nan")]], [], "finite", id="nan"),
        pytest.param([[0, 0], [1, 1]], [[0, 0.5]], "integer", id="fraction"),
    ])  # fmt: skip
    def test_bad_graphs_are_refused_naming_the_problem(self, corners, edges, fragment):
        with pytest.raises(ValueError, match=fragment):
            make_graph(corners, edges)

    def test_faces_of_rectangles_split_rooms_and_trees(self):
        assert sorted(cycle_key(f) for f in planar_faces(_two_buildings())) == [(0, 1, 2, 3), (4, 5, 6, 7)]
        split = make_graph([[0, 0], [10, 0], [20, 0], [20, 10], [10, 10], [0, 10]],
                           [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [5, 0], [1, 4]])  # fmt: skip
        assert sorted(cycle_key(f) for f in planar_faces(split)) == sorted(
            [cycle_key([0, 1, 4, 5]), cycle_key([1, 2, 3, 4])]
        )
        tree = make_graph([[0, 0], [10, 0], [10, 10]], [[0, 1], [1, 2]])
        assert planar_faces(tree) == []

    def test_generated_regions_are_the_planar_faces(self):
        for index in range(20):
            scene = generate_scene(index, seed=3, size=64)
            assert sorted(cycle_key(f) for f in planar_faces(scene.graph)) == sorted(
                cycle_key(r) for r in scene.regions
            )

    def test_region_masks_skip_background_and_tiny_parts(self):
        masks = region_masks(_two_buildings(), *SHAPE)
        assert len(masks) == 2 and all(m.sum() > 20 for m in masks)
        tiny = make_graph(*_rect(10, 10, 13, 13))  # interior 2x2 = 4 px < 20
        assert region_masks(tiny, 64, 64) == []


# ---------------------------------------------------------------------------------------------- metrics


class TestMetrics:
    def test_ground_truth_against_itself_scores_one(self):
        truth = _two_buildings()
        scores = summarize_counts([score_graph(truth, truth, SHAPE)])
        for kind in ("corner", "edge", "region"):
            assert scores[f"{kind}/precision"] == scores[f"{kind}/recall"] == scores[f"{kind}/f1"] == 1.0, kind

    @pytest.mark.parametrize(("shift", "tp"), [(9.0, 0), (7.0, 8), (8.0, 8)])
    def test_corners_match_within_8_px_only(self, shift, tp):
        truth = _two_buildings()
        moved = make_graph(truth.corners + [shift, 0.0], truth.edges)
        counts = score_graph(moved, truth, SHAPE)
        assert counts["corner"].tp == tp and counts["corner"].predicted == 8
        assert counts["edge"].tp == (8 if tp else 0)  # an edge needs both corners matched

    def test_duplicates_count_once(self):
        truth = _two_buildings()
        doubled = make_graph(np.vstack([truth.corners, truth.corners[:1] + 1.0]), truth.edges)
        counts = score_graph(doubled, truth, SHAPE)["corner"]
        assert (counts.tp, counts.predicted - counts.tp) == (8, 1)

    def test_matching_is_greedy_in_prediction_order_nearest_only(self):
        truth = np.array([[0.0, 0.0], [6.0, 0.0]])
        # both predictions are nearest to corner 0; the second is a FP although corner 1 is 5 px away
        assert match_corners(np.array([[1.0, 0.0], [2.0, 0.0]]), truth) == {0: 0}

    def test_an_edge_between_matched_corners_that_is_no_true_edge_is_a_false_positive(self):
        truth = _two_buildings()
        diagonal = make_graph(truth.corners, np.vstack([truth.edges, [[0, 2]]]))
        counts = score_graph(diagonal, truth, SHAPE)
        assert (counts["edge"].tp, counts["edge"].predicted) == (8, 9)
        assert counts["region"].tp == 1  # the split square's halves match no true region at IoU 0.7

    def test_empty_prediction_gives_zero_not_nan(self):
        scores = summarize_counts([score_graph(make_graph([], []), _two_buildings(), SHAPE)])
        assert scores["corner/f1"] == scores["edge/precision"] == scores["region/recall"] == 0.0


# ---------------------------------------------------------------------------------------------- targets


class TestDirectionChannels:
    def test_rectangle_corners_take_four_different_channels(self):
        g = make_graph(*_rect(10, 10, 30, 20))
        assert corner_channels(g, 4).tolist() == [0, 1, 2, 3]  # interior: right-down, left-down, left-up, right-up
        assert corner_channels(g, 1).tolist() == [0, 0, 0, 0]

    def test_the_corners_of_a_tiny_step_face_different_ways(self):
        g = make_graph([[0, 0], [10, 0], [10, 3], [20, 3], [20, 15], [0, 15]],
                       [[k, (k + 1) % 6] for k in range(6)])  # fmt: skip
        channels = corner_channels(g, 4)
        assert channels[1] != channels[2]

    def test_every_corner_is_in_exactly_one_channel_with_peak_one(self):
        for index in range(10):
            g = generate_scene(index, seed=5, size=64).graph
            channels = corner_channels(g, 4)
            maps = corner_heatmaps(g, channels, 4, 64, 64)
            assert ((channels >= 0) & (channels < 4)).all()
            x, y = np.round(g.corners).astype(int).T
            assert (maps[channels, y, x] == 1.0).all()
            assert ((maps[:, y, x] == 1.0).sum(0) == 1).all()  # no other channel peaks at a corner

    def test_channels_add_up_to_heats_single_map_when_corners_are_far_apart(self):
        g = make_graph(*_rect(8, 8, 40, 40))  # 32 px apart > 6 sigma
        four = corner_heatmaps(g, corner_channels(g, 4), 4, 48, 48, sigma=2.0)
        one = corner_heatmaps(g, corner_channels(g, 1), 1, 48, 48, sigma=2.0)
        np.testing.assert_allclose(four.sum(0), one[0], atol=1e-6)

    def test_encoded_batch_pads_corners_and_marks_edges(self):
        metas = [{"id": "a", "width": 32, "height": 32, "corners": [[1, 1], [5, 1]], "edges": [[0, 1]]},
                 {"id": "b", "width": 32, "height": 32, "corners": [[1, 1], [9, 1], [9, 9]],
                  "edges": [[0, 2]]}]  # fmt: skip
        targets, masks = encode_structures(metas, channels=4, sigma=2.0, offset_deg=0.0)
        assert targets["heatmap"].shape == (2, 4, 32, 32) and targets["corners"].shape == (2, 3, 2)
        assert targets["corner_mask"].tolist() == [[True, True, False], [True, True, True]]
        assert targets["adjacency"][1, 0, 2] and targets["adjacency"][1, 2, 0] and not targets["adjacency"][1, 0, 1]
        assert masks["heatmap"].all()
        with pytest.raises(ValueError, match="one image size"):
            encode_structures([metas[0], {**metas[1], "width": 64}], channels=1, sigma=2.0, offset_deg=0.0)


# ---------------------------------------------------------------------------------------------- corners


class TestPerChannelNMS:
    @staticmethod
    def _two_corners(channels: list[int]) -> np.ndarray:
        g = make_graph([[20, 20], [23, 20]], [])
        return corner_heatmaps(g, np.array(channels), 4, 40, 40)

    def test_two_corners_3px_apart_survive_in_different_channels(self):
        found = detect_corners(self._two_corners([0, 1]))
        assert sorted(found.xy[:, 0].tolist()) == [20.0, 23.0] and sorted(found.channel.tolist()) == [0, 1]

    def test_two_corners_3px_apart_merge_in_one_channel(self):
        found = detect_corners(self._two_corners([2, 2]))
        assert len(found.xy) == 1 and found.channel.tolist() == [2]

    def test_detections_of_different_channels_closer_than_merge_px_merge(self):
        g = make_graph([[20, 20], [21, 20]], [])
        found = detect_corners(corner_heatmaps(g, np.array([0, 3]), 4, 40, 40), merge_px=2.0)
        assert len(found.xy) == 1

    def test_mix_with_ground_truth_moves_matched_corners_and_keeps_labels(self):
        truth = np.array([[10.0, 10.0], [30.0, 10.0]])
        adjacency = np.array([[False, True], [True, False]])
        detected = np.array([[12.0, 11.0], [50.0, 50.0], [31.0, 30.0]])
        xy, labels = mix_with_ground_truth(detected, truth, adjacency, match_px=5.0, max_corners=10,
                                           generator=torch.Generator().manual_seed(0))  # fmt: skip
        assert xy.tolist() == [[30.0, 10.0], [12.0, 11.0], [31.0, 30.0], [50.0, 50.0]]  # sorted by (y, x)
        assert labels.sum() == 2 and labels[0, 1] and labels[1, 0]
        capped, _ = mix_with_ground_truth(detected, truth, adjacency, match_px=5.0, max_corners=3,
                                          generator=torch.Generator().manual_seed(0))  # fmt: skip
        assert len(capped) == 3


# ---------------------------------------------------------------------------------------------- network


def _tiny_net(**kwargs) -> CornerEdgeNet:
    torch.manual_seed(0)
    return CornerEdgeNet((8, 8, 16), dim=16, heads=2, edge_channels=4, edge_points=3, position_dim=8, **kwargs)


def _batch(n: int = 2, size: int = 32) -> tuple[torch.Tensor, list[dict]]:
    scenes = [generate_scene(k, seed=1, size=size, buildings=(1, 2)) for k in range(n)]
    metas = [{"id": s.name, "width": size, "height": size, "corners": s.graph.corners.tolist(),
              "edges": s.graph.edges.tolist()} for s in scenes]  # fmt: skip
    images = torch.stack([torch.from_numpy(s.image).permute(2, 0, 1) for s in scenes])
    return images, metas


@pytest.mark.parametrize(("channels", "sharing"), [(1, "backbone"), (4, "multiscale")])
class TestNetwork:
    def test_outputs_and_edge_scores_have_documented_shapes(self, channels, sharing):
        net = _tiny_net(corner_channels=channels, feature_sharing=sharing).eval()
        with torch.no_grad():
            out = net(torch.randn(2, 3, 32, 32))
            assert out["corners"].shape == (2, channels, 32, 32) and out["edge_s2"].shape == (2, 4, 16, 16)
            scores = net.score_edges(out, torch.rand(2, 5, 2) * 31, torch.tensor([5, 3]))
        assert (
            scores.pairs.shape == (10, 2) and scores.logits.shape == (2, 10, 2) and scores.tokens.shape == (2, 10, 16)
        )
        assert scores.valid[1].sum() == 3 and torch.isfinite(scores.logits).all()

    def test_joint_loss_reaches_every_parameter_and_is_seeded(self, channels, sharing):
        images, metas = _batch()
        targets, masks = encode_structures(metas, channels=channels, sigma=2.0, offset_deg=0.0)
        net = _tiny_net(corner_channels=channels, feature_sharing=sharing)
        term = EdgeTerm(net, max_corners=12, seed=0)
        x = images.float() / 127.5 - 1
        out = net(x)
        corner_loss, _ = CornerLoss()(out, targets, masks)
        edge_loss = term(TermInputs(x, out, 2, slice(2, 2), targets, masks, None, 0.0, None))
        (corner_loss + edge_loss).backward()
        assert torch.isfinite(corner_loss) and torch.isfinite(edge_loss) and edge_loss > 0
        missing = [name for name, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not missing, f"no gradient for {missing}"
        assert list(term.parameters()) == []  # the classifier's weights are the model's
        with torch.no_grad():
            assert torch.equal(_tiny_net(corner_channels=channels, feature_sharing=sharing)(x)["corners"],
                               _tiny_net(corner_channels=channels, feature_sharing=sharing)(x)["corners"])  # fmt: skip


def test_sharing_modes_differ_only_by_the_edge_encoder():
    backbone, shared = _tiny_net(feature_sharing="backbone"), _tiny_net(feature_sharing="multiscale")
    extra = {n.split(".")[0] for n, _ in backbone.named_parameters()} - {
        n.split(".")[0] for n, _ in shared.named_parameters()
    }
    assert extra == {"edge_encoder"}


def test_a_row_without_candidates_stays_finite():
    net = _tiny_net().eval()
    with torch.no_grad():
        logits = net.relate_edges(torch.randn(2, 3, 16), torch.full((2, 3), 2), torch.tensor([[True] * 3, [False] * 3]))
    assert torch.isfinite(logits).all()


def test_candidate_selection_keeps_multiplier_times_corners_best_first():
    logits = torch.tensor([[[0.0, 3.0], [0.0, -1.0], [0.0, 2.0], [0.0, 5.0]]])
    _, valid = corner_pairs(torch.tensor([3]), 3)
    index, kept = select_candidates(logits[:, :3], valid, torch.tensor([3]), multiplier=1)
    assert index.tolist() == [[0, 2, 1]] and kept.tolist() == [[True, True, True]]
    index, kept = select_candidates(logits[:, :3], valid, torch.tensor([1]), multiplier=2)
    assert kept.sum() == 2 and index[0, :2].tolist() == [0, 2]


def test_predictions_are_graphs_without_isolated_corners():
    images, _ = _batch(n=2)
    graphs = predict_graphs(_tiny_net(), images, Decoding(max_corners=12))
    for graph in graphs:
        assert (graph.degrees() > 0).all() and (graph.edges[:, 0] < graph.edges[:, 1]).all()
    g = without_isolated(make_graph([[0, 0], [5, 5], [9, 9]], [[0, 2]]))
    assert g.corners.tolist() == [[0, 0], [9, 9]] and g.edges.tolist() == [[0, 1]]
