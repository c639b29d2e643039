"""params.yaml schema: the shipped file is valid, and every kind of mistake names its key."""

from __future__ import annotations

import pytest
import yaml

from faceops.config.core import ParamsError
from faceops.config.params import Params, load_params, parse_params


def test_shipped_params_are_valid(repo_root):
    params = load_params(repo_root / "params.yaml")
    assert isinstance(params, Params)
    assert params.ingest.sources[0].name == "sample"


def test_empty_file_gives_defaults():
    assert parse_params({}) == Params()


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        pytest.param({"align": {"wokers": 2}}, ["align.wokers", "unknown key"], id="misspelt-key"),
        pytest.param({"align": {"workers": 0}}, ["align.workers", "greater than or equal to 1"], id="range"),
        pytest.param({"align": {"detector": "yolo"}}, ["align.detector", "'mtcnn'"], id="literal-lists-allowed"),
        pytest.param({"shard": {"maxcount": "many"}}, ["shard.maxcount", "integer"], id="type"),
        pytest.param({"shard": {"split": {"train": 0.5, "val": 0.1, "test": 0.1}}}, ["shard.split", "sum to 1"], id="sum"),
        pytest.param({"ingest": {"sources": [{"name": "Bad Name", "format": "imagefolder"}]}}, ["ingest.sources.0.name"], id="pattern"),
        pytest.param({"ingest": {"sources": [{"name": "a", "format": "zip"}]}}, ["ingest.sources.0.format", "'imagefolder'"], id="format"),
        pytest.param({"trian": {}}, ["trian", "unknown key"], id="unknown-section"),
        pytest.param({"sample": {"min_side": 400, "max_side": 200}}, ["sample", "min_side"], id="cross-field"),
    ],
)
def test_errors_name_the_key(patch, expected):
    with pytest.raises(ParamsError) as info:
        parse_params(patch)
    message = str(info.value)
    for fragment in expected:
        assert fragment in message, message


def test_all_problems_reported_at_once():
    with pytest.raises(ParamsError) as info:
        parse_params({"align": {"workers": 0, "min_score": 2}})
    assert "align.workers" in str(info.value) and "align.min_score" in str(info.value)


def test_bad_yaml_and_non_mapping(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("align: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    bad.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ParamsError, match="mapping"):
        load_params(bad)


def test_params_are_frozen():
    params = Params()
    with pytest.raises(Exception):
        params.align.workers = 3  # type: ignore[misc]


# ---- pretrain / train sections -------------------------------------------------------------------

TWO_HALVES = [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        pytest.param({"train": {"warmup_steps": 100, "steps": 100}}, ["train", "warmup_steps (100) must be < steps"],
                     id="warmup"),
        pytest.param({"train": {"sources": [{"name": "a", "share": 0.5}]}}, ["train", "sum to 1"], id="shares-sum"),
        pytest.param({"pretrain": {"sources": [{"name": "a", "share": 0.5}, {"name": "a", "share": 0.5}]}},
                     ["pretrain", "repeated: ['a']"], id="duplicate-source"),
        pytest.param({"train": {"sources": []}}, ["train", "non-empty"], id="no-sources"),
        pytest.param({"train": {"batch_size": 1, "sources": TWO_HALVES}},
                     ["train", "batch_size (1)"], id="batch-too-small"),
        pytest.param({"train": {"model": "swinface_cpu_rec"}}, ["train.model", "'swinface_cpu'"],
                     id="train-needs-multitask"),
        pytest.param({"train": {"init": "model@latest"}}, ["train.init", "pretrain|model@v"], id="init-needs-a-tag"),
        pytest.param({"train": {"init": "imported:swinface_swin_t"}}, ["train.init", "imported:"],
                     id="imported-init-needs-its-sha256"),
        pytest.param({"pretrain": {"model": "swinface_cpu"}}, ["pretrain.model", "'swinface_cpu_rec'"],
                     id="pretrain-rec-only"),
        pytest.param({"train": {"model": "swinface_tiny"}}, ["train.model", "'swinface_cpu'", "'swinface_swin_t'"],
                     id="former-name-lists-the-current-ones"),
        pytest.param({"train": {"backbone_lr_scale": 0}}, ["train.backbone_lr_scale", "greater than 0"], id="lr-scale"),
        pytest.param({"train": {"sample_rate": 1.5}}, ["train.sample_rate"], id="sample-rate"),
        pytest.param({"train": {"precision": "fp8"}}, ["train.precision", "'bf16'"], id="precision"),
        pytest.param({"pretrain": {"enabeld": False}}, ["pretrain.enabeld", "unknown key"], id="misspelt"),
        pytest.param({"train": {"model": "swinface_swin_t"}}, ["adapt.model ('swinface_cpu') must equal train.model"],
                     id="adapt-builds-train-s-variant"),
    ],
)
def test_training_sections_name_the_bad_key(patch, expected):
    with pytest.raises(ParamsError) as info:
        parse_params(patch)
    for fragment in expected:
        assert fragment in str(info.value), str(info.value)


def test_training_defaults_follow_swinface():
    params = Params()
    assert params.train.backbone_lr_scale == pytest.approx(0.1) and params.pretrain.backbone_lr_scale == 1.0
    assert (params.train.margin_scale, params.train.margin_cos) == (64.0, 0.4)
    assert params.pretrain.enabled and params.pretrain.model.endswith("_rec")
