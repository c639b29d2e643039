"""AIN (faceops.adapt): the mutual-information estimate, gradient reversal, the target term, domains, the rounds."""

from __future__ import annotations

import functools
import json
import math

import pytest
import torch

from faceops.adapt import AdversarialInformationTerm, adapt_model, mutual_information, select_by_group, write_domain
from faceops.config.adapt import AdaptParams
from faceops.config.cluster import ClusterParams
from faceops.io.checkpoint import save_checkpoint
from faceops.io.shards import iter_tar_samples, split_urls
from faceops.losses import reverse_gradient
from faceops.models import create_model
from faceops.train import DistInfo, load_trained_model, model_record, to_targets
from faceops.train.mixing import MixedBatches
from faceops.train.terms import TermInputs, linear_ramp
from group_shards import write_group_source


# ---- mutual information ------------------------------------------------------------------------


def test_mutual_information_stays_within_zero_and_log_k():
    torch.manual_seed(0)
    for k in (2, 5, 17):
        probs = torch.softmax(torch.randn(40, k) * 3, dim=1)
        value = float(mutual_information(probs))
        assert -1e-6 <= value <= math.log(k) + 1e-6


def test_mutual_information_is_zero_for_identical_rows_and_log_k_for_balanced_one_hot():
    row = torch.softmax(torch.randn(6), dim=0)
    assert float(mutual_information(row.expand(9, 6))) == pytest.approx(0.0, abs=1e-6)
    one_hot = torch.eye(4).repeat(3, 1)  # 12 rows, each class 3 times
    assert float(mutual_information(one_hot)) == pytest.approx(math.log(4), rel=1e-6)
    assert float(mutual_information(torch.eye(4)[[0, 0, 0, 1]])) < math.log(4)  # unbalanced: less
    with pytest.raises(ValueError, match=r"\[N, K\]"):
        mutual_information(torch.ones(4))


# ---- gradient reversal -------------------------------------------------------------------------


def test_gradient_reversal_is_identity_forward_and_minus_scale_backward():
    x = torch.randn(5, 3, requires_grad=True)
    y = reverse_gradient(x, 0.5)
    assert torch.equal(y, x)
    (grad,) = torch.autograd.grad((y * torch.arange(3.0)).sum(), x)
    assert torch.equal(grad, -0.5 * torch.arange(3.0).expand(5, 3))
    with pytest.raises(ValueError, match="scale"):
        reverse_gradient(x, -1.0)


def test_the_classifier_descends_and_the_extractor_ascends_the_mutual_information(group_shards, tmp_path):
    """With the reversal, W_t's gradient is +dI/dW and the embeddings' -dI/df: checked against two plain calls."""
    term = _term(group_shards, tmp_path)
    embeddings = torch.randn(8, 16, requires_grad=True)
    weight = term.classifier.weight
    reversed_w, reversed_f = torch.autograd.grad(term.information(embeddings), [weight, embeddings])
    plain_w, plain_f = torch.autograd.grad(term.information(embeddings, reverse=False), [weight, embeddings])
    assert torch.allclose(reversed_w, plain_w) and reversed_w.abs().sum() > 0
    assert torch.allclose(reversed_f, -plain_f) and plain_f.abs().sum() > 0


# ---- domains and the target term ------------------------------------------------------------------


@pytest.fixture(scope="module")
def group_shards(tmp_path_factory):
    return write_group_source(tmp_path_factory.mktemp("groups"), per_group=3, per_identity=4)


def test_a_domain_copy_holds_only_its_groups_and_a_target_copy_hides_identities(group_shards, tmp_path):
    urls = split_urls(group_shards, "train")
    target = select_by_group(urls, ["g1"])
    assert len(target) == 12 and {m["group"] for m in target.values()} == {"g1"}
    assert len(select_by_group(urls, [])) == 24
    with pytest.raises(ValueError, match=r"groups present: \['g0', 'g1'\]"):
        select_by_group(urls, ["g7"])
    keys = sorted(target)
    updates = {key: {"identity": "c1" if i < 6 else None} for i, key in enumerate(keys)}
    copied = [json.loads(s["json"]) for url in write_domain(urls, updates, tmp_path / "t", maxcount=5)
              for s in iter_tar_samples(url)]  # fmt: skip
    assert [m["id"] for m in copied] == keys
    assert [m["identity"] for m in copied] == ["c1"] * 6 + [None] * 6 and {m["group"] for m in copied} == {"g1"}


def _term(shards, folder, *, target_batch=4):
    urls = split_urls(shards, "train")
    keys = sorted(select_by_group(urls, ["g1"]))
    updates = {key: {"identity": f"c{i % 3}" if i < 9 else None} for i, key in enumerate(keys)}
    copy = write_domain(urls, updates, folder / "target", maxcount=4)
    classes = {f"blobs/c{i}": i for i in range(3)}
    stream = MixedBatches({"target": copy}, {"target": target_batch}, seed=1, shuffle_buffer=4,
                          encode=functools.partial(to_targets, heads=(), identity_to_class=classes))  # fmt: skip
    return AdversarialInformationTerm(stream, torch.randn(3, 16), mi_weight=0.5, mi_schedule=linear_ramp(0.0, 0.5))


def test_the_target_term_appends_target_rows_and_resumes_its_stream(group_shards, tmp_path):
    term = _term(group_shards, tmp_path)
    images = torch.zeros(2, 3, 112, 112)
    rows = term.extra_rows(images, None)
    assert rows.shape == (4, 3, 112, 112) and float(rows.min()) >= -1 and float(rows.max()) <= 1
    assert set(term._labels.tolist()) <= {-1, 0, 1, 2}
    embeddings = torch.randn(6, 16, requires_grad=True)
    inputs = TermInputs(torch.cat([images, rows]), {"Recognition": embeddings}, 2, slice(2, 6), {}, {}, None, 0.25,
                        lambda *a: None)  # fmt: skip
    value = term(inputs)
    assert math.isfinite(float(value.detach())) and value.requires_grad
    state = term.state_dict()
    after = term.extra_rows(images, None)
    fresh = _term(group_shards, tmp_path / "again")
    fresh.load_state_dict(state)
    assert torch.equal(fresh.extra_rows(images, None), after)
    fresh(inputs)
    with pytest.raises(RuntimeError, match="extra_rows"):
        fresh(inputs)  # its rows were used: a second forward has none


def test_adapt_params_keep_source_and_target_apart():
    with pytest.raises(ValueError, match="disjoint"):
        AdaptParams(source_groups=["g0", "g1"], target={"source": "sample", "groups": ["g1"]})
    with pytest.raises(ValueError, match="non-empty"):
        AdaptParams(source_groups=[], target={"source": "sample", "groups": ["g1"]})
    AdaptParams(source_groups=[], target={"source": "sample", "split": "test", "groups": []})  # another split: fine


# ---- the rounds -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_adapt_rounds_train_on_pseudo_identities_and_resume_from_finished_rounds(group_shards, tmp_path):
    torch.manual_seed(0)
    init = tmp_path / "init.pt"
    save_checkpoint(init, model_record(create_model("swinface_cpu"), "swinface_cpu", {}, identities=[], step=0,
                                       params={}, init="scratch"), kind="model")  # fmt: skip
    cfg = AdaptParams(sources=[{"name": "blobs"}], source_groups=["g0"],
                      target={"source": "blobs", "split": "train", "groups": ["g1"]}, rounds=2, steps=2,
                      warmup_steps=1, batch_size=4, target_batch=4, checkpoint_every=1, maxcount=6)  # fmt: skip
    # an untrained network keeps the blobs apart, but all its cosines are > 0.9 and a GCN trained for a few steps
    # on 12 faces scores every edge alike: HDBSCAN (its size chosen on the source) finds the 3 target identities
    clustering = ClusterParams(method="hdbscan", epochs=1, calibration_share=0.0, compare_baselines=False)
    logged = []
    kwargs = dict(seed=0, source_urls={"blobs": split_urls(group_shards, "train")},
                  target_urls=split_urls(group_shards, "train"), init_file=init, workdir=tmp_path / "work",
                  dist=DistInfo(0, 1, 0, torch.device("cpu")))  # fmt: skip
    adapted = adapt_model(cfg, clustering, log=lambda step, values: logged.append((step, values)), **kwargs)
    assert [step for step, _ in logged] == [1, 2, 3, 4] and all("loss/ain" in v for _, v in logged)
    assert adapted.record["step"] == 4 and [r.index for r in adapted.rounds] == [0, 1]
    target_ids = sorted(select_by_group(kwargs["target_urls"], ["g1"]))
    for round_ in adapted.rounds:
        assert sorted(row["id"] for row in round_.rows) == target_ids
        assert round_.metrics["pseudo_classes"] >= 2 and round_.metrics["target_epochs"] == pytest.approx(8 / 12)
    trained_on = [json.loads(s["json"])["identity"] for url in sorted((tmp_path / "work/round-1/target").glob("*.tar"))
                  for s in iter_tar_samples(url)]  # fmt: skip
    assert all(name is None or name.startswith("blobs_r1_c") for name in trained_on)  # true names never
    assert adapted.metrics["rounds"] == 2 and "round/1/cluster/hdbscan/pairwise/f" in adapted.metrics
    done = []
    again = adapt_model(cfg, clustering, progress=done.append, **kwargs)  # both rounds finished: nothing trains
    assert done == [2, 2] and again.metrics == adapted.metrics
    for name, tensor in adapted.record["state_dict"].items():
        assert torch.equal(tensor, again.record["state_dict"][name]), name


@pytest.mark.slow
def test_the_adapt_stage_writes_the_model_every_rounds_pseudo_labels_and_metrics(group_shards, tmp_path):
    from stages import adapt

    init = tmp_path / "swinface"
    torch.manual_seed(0)
    save_checkpoint(init / "model.pt", model_record(create_model("swinface_cpu"), "swinface_cpu", {}, identities=[],
                                                    step=0, params={}, init="scratch"), kind="model")  # fmt: skip
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({
        "adapt": {"sources": [{"name": "blobs"}], "source_groups": ["g0"], "rounds": 2, "steps": 1, "warmup_steps": 0,
                  "batch_size": 4, "target_batch": 4, "target": {"source": "blobs", "groups": ["g1"]}},
        "cluster": {"method": "hdbscan", "epochs": 1, "calibration_share": 0.0, "compare_baselines": False},
    }))  # fmt: skip
    out = {name: tmp_path / name for name in ("out", "pseudo", "ckpt", "live")}
    adapt.main(["--params", str(params), "--shards", str(group_shards.parent), "--init", str(init),
                *(f"--{k}={v}" for k, v in out.items()), "--metrics", str(tmp_path / "adapt.json")])  # fmt: skip
    _, record = load_trained_model(out["out"] / "model.pt")
    assert record["step"] == 2 and record["init"] == "train" and record["params"]["rounds"] == 2
    rows = [[json.loads(line) for line in (out["pseudo"] / f"round-{r}/pseudo_labels.jsonl").read_text().splitlines()]
            for r in (0, 1)]  # fmt: skip
    assert [len(r) for r in rows] == [12, 12] and {"id", "cluster", "size", "confidence"} <= set(rows[0][0])
    metrics = json.loads((tmp_path / "adapt.json").read_text())
    assert metrics["rounds"] == 2 and metrics["target_samples"] == 12 and "round/1/loss/ain" in metrics
    assert (out["live"] / "plots/metrics/loss/ain.tsv").read_text().splitlines()[1:] and not any(out["ckpt"].iterdir())


def test_evaluate_scores_a_candidate_model_per_group_under_its_folder_name(group_shards, tmp_path):
    from stages import evaluate

    for name, seed in (("swinface", 0), ("adapt", 1)):
        torch.manual_seed(seed)
        save_checkpoint(tmp_path / name / "model.pt", model_record(create_model("swinface_cpu"), "swinface_cpu", {},
                        identities=[], step=0, params={}, init="scratch"), kind="model")  # fmt: skip
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"evaluate": {"sources": ["blobs"], "split": "train", "n_pairs": 200, "folds": 4}}))
    (tmp_path / "verification").mkdir()
    evaluate.main(["--params", str(params), "--model", str(tmp_path / "swinface"), "--shards", str(group_shards.parent),
                   "--verification", str(tmp_path / "verification"), "--metrics", str(tmp_path / "evaluate.json"),
                   "--plots", str(tmp_path / "plots"), "--candidates", str(tmp_path / "adapt")])  # fmt: skip
    metrics = json.loads((tmp_path / "evaluate.json").read_text())
    for prefix in ("blobs", "adapt/blobs"):
        assert {f"{prefix}/group/{g}/acc" for g in ("g0", "g1")} | {f"{prefix}/group/std"} <= set(metrics)
    assert {k.removeprefix("adapt/") for k in metrics if k.startswith("adapt/")} <= set(metrics)  # same protocol
    with pytest.raises(FileNotFoundError):
        evaluate.main(["--params", str(params), "--model", str(tmp_path / "swinface"), "--shards",
                       str(group_shards.parent), "--verification", str(tmp_path / "verification"), "--metrics",
                       str(tmp_path / "e.json"), "--plots", str(tmp_path / "p"), "--candidates", str(tmp_path)])  # fmt: skip


@pytest.mark.slow
def test_a_round_without_two_pseudo_identities_warns_and_trains_on_the_source_alone(group_shards, tmp_path):
    torch.manual_seed(0)
    init = tmp_path / "init.pt"
    save_checkpoint(init, model_record(create_model("swinface_cpu"), "swinface_cpu", {}, identities=[], step=0,
                                       params={}, init="scratch"), kind="model")  # fmt: skip
    cfg = AdaptParams(sources=[{"name": "blobs"}], source_groups=["g0"], target={"source": "blobs", "groups": ["g1"]},
                      rounds=1, steps=1, warmup_steps=0, batch_size=4, target_batch=4)  # fmt: skip
    # an untrained model's faces all look alike: uncapped threshold components merge them into one cluster
    merged = ClusterParams(method="threshold", epochs=1, calibration_share=0.0, compare_baselines=False,
                           max_size_ratio=None, max_size=10_000)  # fmt: skip
    urls = split_urls(group_shards, "train")
    with pytest.warns(UserWarning, match="trains on the source alone"):
        adapted = adapt_model(cfg, merged, seed=0, source_urls={"blobs": urls}, target_urls=urls, init_file=init,
                              workdir=tmp_path / "work", dist=DistInfo(0, 1, 0, torch.device("cpu")))  # fmt: skip
    assert adapted.metrics["round/0/target_term"] == 0 and adapted.metrics["round/0/pseudo_classes"] < 2
    assert "round/0/loss/ain" not in adapted.metrics and adapted.record["step"] == 1
