"""faceops.losses: margin softmax vs hand-computed logits, Partial FC, the annealed age loss, masked multitask loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from faceops.losses import AnnealedAgeLoss, MarginSoftmax, SwinFaceLoss, annealed_age_loss, margin_logits
from faceops.models import create_model
from faceops.models.tasks import ANALYSIS_HEADS, RECOGNITION, head_by_name


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -------------------------------------------------------------------------------------------------- age


class TestAgeLoss:
    pred = torch.tensor([20.0, 31.5, 40.0, 77.0])
    target = torch.tensor([25.0, 30.0, 40.0, 18.0])

    def test_start_is_half_mse(self):
        expected = 0.5 * F.mse_loss(self.pred, self.target)
        torch.testing.assert_close(annealed_age_loss(self.pred, self.target, 0.0), expected)

    def test_end_is_gaussian_error(self):
        d2 = (self.pred - self.target) ** 2
        expected = (1 - torch.exp(-d2 / 18)).mean()
        torch.testing.assert_close(annealed_age_loss(self.pred, self.target, 1.0), expected)

    def test_midway_is_the_mix(self):
        start, end = (annealed_age_loss(self.pred, self.target, p) for p in (0.0, 1.0))
        mix = 0.75 * start + 0.25 * end
        torch.testing.assert_close(annealed_age_loss(self.pred, self.target, 0.25), mix)

    def test_bounded_at_end(self):
        pred = torch.linspace(-500, 500, 101)
        per = annealed_age_loss(pred, torch.zeros(101), 1.0, reduction="none")
        assert (per >= 0).all() and (per <= 1).all() and per.max() > 0.999

    @pytest.mark.parametrize("progress", [0.0, 0.3, 1.0])
    def test_zero_gradient_at_zero_error(self, progress):
        pred = torch.tensor([12.0, 50.0], requires_grad=True)
        annealed_age_loss(pred, torch.tensor([12.0, 50.0]), progress).backward()
        assert (pred.grad == 0).all()

    def test_column_prediction_is_elementwise_not_broadcast(self):
        """[B, 1] predictions against [B] targets compare sample by sample (the reference broadcast to [B, B])."""
        column = annealed_age_loss(self.pred[:, None], self.target, 0.0, reduction="none")
        assert column.shape == (4,)
        torch.testing.assert_close(column, annealed_age_loss(self.pred, self.target, 0.0, reduction="none"))

    def test_module_and_errors(self):
        torch.testing.assert_close(
            AnnealedAgeLoss(sigma=3.0)(self.pred, self.target, 0.5), annealed_age_loss(self.pred, self.target, 0.5)
        )
        with pytest.raises(ValueError, match="progress"):
            annealed_age_loss(self.pred, self.target, 1.5)
        with pytest.raises(ValueError, match="one age per sample"):
            annealed_age_loss(self.pred, self.target[:3], 0.5)


# -------------------------------------------------------------------------------------------------- margin


class TestMarginLogits:
    cos = torch.empty(5, 7).uniform_(-0.6, 0.95, generator=_gen(1))
    labels = torch.tensor([0, 3, 6, -1, 3])

    def _expected(self, target_fn):
        expected = 64 * self.cos.clone()
        for i, y in enumerate(self.labels.tolist()):
            if y >= 0:
                expected[i, y] = 64 * target_fn(self.cos[i, y].item())
        return expected

    def test_cosface(self):
        got = margin_logits(self.cos, self.labels, s=64, m_cos=0.4)
        torch.testing.assert_close(got, self._expected(lambda c: c - 0.4))

    def test_arcface(self):
        got = margin_logits(self.cos, self.labels, s=64, m_arc=0.5)
        torch.testing.assert_close(got, self._expected(lambda c: math.cos(math.acos(c) + 0.5)))

    def test_combined(self):
        got = margin_logits(self.cos, self.labels, s=64, m_arc=0.3, m_cos=0.2)
        torch.testing.assert_close(got, self._expected(lambda c: math.cos(math.acos(c) + 0.3) - 0.2))

    def test_zero_margin_is_scaled_cosine_and_input_untouched(self):
        before = self.cos.clone()
        assert torch.equal(margin_logits(self.cos, self.labels, s=64), 64 * self.cos)
        margin_logits(self.cos, self.labels, s=64, m_arc=0.5, m_cos=0.4)
        assert torch.equal(self.cos, before)

    def test_ignored_rows_unchanged(self):
        got = margin_logits(self.cos, self.labels, s=64, m_arc=0.5, m_cos=0.4)
        torch.testing.assert_close(got[3], 64 * self.cos[3])

    def test_arcface_target_logit_is_monotone_penalty(self):
        """Over all of [-1, 1] the target logit never exceeds s*cos and never rises as the angle grows."""
        cos = torch.linspace(-1, 1, 2001)[:, None]
        target = margin_logits(cos, torch.zeros(2001, dtype=torch.long), s=1, m_arc=0.5)[:, 0]
        assert (target <= cos[:, 0] + 1e-6).all()
        assert (target.diff() >= -1e-6).all()


class TestMarginSoftmax:
    def _setup(self, num_classes=12, batch=6, dim=8, seed=0):
        emb = torch.randn(batch, dim, generator=_gen(seed), requires_grad=True)
        labels = torch.randint(0, num_classes, (batch,), generator=_gen(seed + 1))
        return emb, labels

    def _full_loss(self, head, emb, labels, s=64.0, m_arc=0.0, m_cos=0.4):
        cos = F.normalize(emb) @ F.normalize(head.weight).T
        return F.cross_entropy(margin_logits(cos, labels, s=s, m_arc=m_arc, m_cos=m_cos), labels)

    def test_zero_margin_equals_plain_softmax_ce(self):
        emb, labels = self._setup()
        head = MarginSoftmax(12, 8, s=30.0, m_arc=0.0, m_cos=0.0)
        plain = F.cross_entropy(30.0 * F.normalize(emb) @ F.normalize(head.weight).T, labels)
        torch.testing.assert_close(head(emb, labels), plain)

    def test_cosface_loss_matches_hand_built(self):
        emb, labels = self._setup()
        head = MarginSoftmax(12, 8)
        torch.testing.assert_close(head(emb, labels), self._full_loss(head, emb, labels))

    def test_gradient_reaches_embeddings(self):
        emb, labels = self._setup()
        MarginSoftmax(12, 8, m_arc=0.5, m_cos=0.0)(emb, labels).backward()
        assert torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0

    def test_ignored_labels(self):
        emb, labels = self._setup()
        head = MarginSoftmax(12, 8)
        masked = labels.clone()
        masked[[1, 4]] = -1
        keep = masked >= 0
        torch.testing.assert_close(head(emb, masked), self._full_loss(head, emb[keep], labels[keep]))

    def test_all_ignored_is_exact_zero(self):
        emb, _ = self._setup()
        head = MarginSoftmax(12, 8)
        loss = head(emb, torch.full((6,), -1))
        loss.backward()
        assert loss.item() == 0.0 and (emb.grad == 0).all() and (head.weight.grad == 0).all()

    def test_label_out_of_range(self):
        emb, _ = self._setup()
        with pytest.raises(ValueError, match=r"\[-1, 12\)"):
            MarginSoftmax(12, 8)(emb, torch.tensor([0, 1, 2, 3, 4, 12]))

    def test_partial_fc_rate_one_is_full_softmax(self):
        emb, labels = self._setup()
        head = MarginSoftmax(12, 8, sample_rate=1.0).train()
        torch.testing.assert_close(head(emb, labels), self._full_loss(head, emb, labels))
        index, local = head.sample_centres(labels)
        assert torch.equal(index, torch.arange(12)) and torch.equal(local, labels)

    def test_partial_fc_keeps_positives(self):
        head = MarginSoftmax(100, 8, sample_rate=0.2, seed=3)
        labels = torch.tensor([5, 99, 5, -1, 42, 0])
        for _ in range(5):
            index, local = head.sample_centres(labels)
            assert index.numel() == 20 and torch.equal(index, index.sort().values)
            assert {0, 5, 42, 99} <= set(index.tolist())
            assert torch.equal(index[local[local >= 0]], labels[labels >= 0]) and local[3] == -1

    def test_partial_fc_keeps_every_positive_when_they_exceed_the_budget(self):
        head = MarginSoftmax(50, 8, sample_rate=0.1)
        labels = torch.arange(0, 40, 4)  # 10 positives, budget 5
        index, _ = head.sample_centres(labels)
        assert torch.equal(index, labels)

    def test_partial_fc_is_seeded_and_trains_only_sampled_centres(self):
        emb, labels = self._setup(num_classes=40)
        a, b = (MarginSoftmax(40, 8, sample_rate=0.25, seed=7).train() for _ in range(2))
        b.weight.data.copy_(a.weight.data)
        index = a.sample_centres(labels)[0]
        assert torch.equal(index, b.sample_centres(labels)[0])
        loss = a(emb, labels)
        sub_index, local = b.sample_centres(labels)  # b's second draw == a's forward draw
        cos = F.normalize(emb) @ F.normalize(b.weight[sub_index]).T
        torch.testing.assert_close(loss, F.cross_entropy(margin_logits(cos, local, s=64, m_cos=0.4), local))
        loss.backward()
        untouched = torch.ones(40, dtype=torch.bool)
        untouched[sub_index] = False
        assert (a.weight.grad[untouched] == 0).all() and a.weight.grad[sub_index].abs().sum() > 0
        a.eval()
        torch.testing.assert_close(a(emb, labels), self._full_loss(a, emb, labels))  # eval uses every centre

    @pytest.mark.parametrize(
        ("kwargs", "match"), [({"sample_rate": 0.0}, "sample_rate"), ({"num_classes": 0}, "num_classes")]
    )
    def test_bad_config(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            MarginSoftmax(**{"num_classes": 10, "embedding_size": 4, **kwargs})


# -------------------------------------------------------------------------------------------------- multitask


def _fake_outputs(batch: int = 4, dim: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    g = _gen(seed)
    out = {RECOGNITION: torch.randn(batch, dim, generator=g, requires_grad=True)}
    for h in ANALYSIS_HEADS:
        out[h.name] = torch.randn(batch, h.num_outputs, generator=g, requires_grad=True)
    return out


class TestSwinFaceLoss:
    def test_masks_select_samples_and_missing_is_not_negative(self):
        out = _fake_outputs()
        loss_fn = SwinFaceLoss(heads=[head_by_name("Male")])
        male = out["Male"]
        mask = torch.tensor([True, False, True, False])
        _, a = loss_fn(out, {"Male": torch.tensor([1, 0, 0, 0])}, {"Male": mask}, progress=0.0)
        _, b = loss_fn(out, {"Male": torch.tensor([1, 1, 0, 1])}, {"Male": mask}, progress=0.0)
        expected = F.cross_entropy(male[mask], torch.tensor([1, 0]))
        torch.testing.assert_close(a["Male"], expected)
        torch.testing.assert_close(b["Male"], expected)  # filler under a False mask is never read
        everyone = {"Male": torch.ones(4, dtype=torch.bool)}
        _, negative = loss_fn(out, {"Male": torch.tensor([1, 0, 0, 0])}, everyone, progress=0.0)
        assert not torch.allclose(negative["Male"], expected)  # reading the missing ones as 0 would differ

    def test_all_missing_is_exact_zero_even_with_nan_filler(self):
        out = _fake_outputs()
        targets = {"age": torch.full((4,), float("nan")), "Smiling": torch.tensor([1, 0, 1, 0])}
        masks = {"age": torch.zeros(4, dtype=torch.bool), "Smiling": torch.zeros(4, dtype=torch.bool)}
        total, per = SwinFaceLoss()(out, targets, masks, progress=0.5)
        assert total.item() == 0.0 and all(v.item() == 0.0 for v in per.values())
        total.backward()
        assert all(t.grad is None or (t.grad == 0).all() for t in out.values())

    def test_total_is_weighted_sum_with_age_annealing(self):
        out = _fake_outputs()
        margin = MarginSoftmax(10, 8)
        targets = {
            "identity": torch.tensor([3, 1, 0, 9]),
            "age": torch.tensor([20.0, 30.0, 0.0, 0.0]),
            "expression": torch.tensor([0, 6, 2, 1]),
            "Young": torch.tensor([1, 0, 1, 1]),
        }
        masks = {
            "identity": torch.tensor([True, True, False, False]),
            "age": torch.tensor([True, True, False, False]),
            "expression": torch.tensor([False, False, True, True]),
            "Young": torch.tensor([True, True, True, True]),
        }
        loss_fn = SwinFaceLoss(margin, weights={"Expression": 2.0})
        total, per = loss_fn(out, targets, masks, progress=0.25)
        assert set(per) == {RECOGNITION, *(h.name for h in ANALYSIS_HEADS)}
        torch.testing.assert_close(per[RECOGNITION], margin(out[RECOGNITION][:2], targets["identity"][:2]))
        torch.testing.assert_close(per["Age"], annealed_age_loss(out["Age"][:2], targets["age"][:2], 0.25))
        torch.testing.assert_close(per["Expression"], F.cross_entropy(out["Expression"][2:], targets["expression"][2:]))
        torch.testing.assert_close(total, sum(per.values()) + per["Expression"])
        assert all(per[h.name].item() == 0.0 for h in ANALYSIS_HEADS if h.label not in targets)

    def test_unlabelled_head_gets_exactly_zero_gradient_in_the_model(self):
        """With the real model: a head whose labels are all missing gets a zero gradient, others do not."""
        torch.manual_seed(0)
        model = create_model("swinface_cpu").train()
        out = model(torch.randn(4, 3, 112, 112, generator=_gen(5)))
        targets = {"age": torch.tensor([20.0, 35.0, 50.0, 8.0]), "Male": torch.tensor([1, 0, 1, 0])}
        masks = {"age": torch.ones(4, dtype=torch.bool), "Male": torch.zeros(4, dtype=torch.bool)}
        total, per = SwinFaceLoss(MarginSoftmax(10, model.num_features))(out, targets, masks, progress=0.0)
        assert per["Male"].item() == 0.0 and per["Age"].item() > 0
        total.backward()
        male = model.subnets["gender"]
        assert all(p.grad is None or (p.grad == 0).all() for p in male.parameters())
        assert model.subnets["age"].heads["Age"].weight.grad.abs().sum() > 0

    @pytest.mark.parametrize(
        ("targets", "masks", "match"),
        [
            pytest.param({"age": torch.zeros(4)}, {}, "must match", id="keys-differ"),
            pytest.param(
                {"group": torch.zeros(4)}, {"group": torch.ones(4, dtype=torch.bool)}, "read by no", id="unread-label"
            ),
            pytest.param({"age": torch.zeros(3)}, {"age": torch.ones(3, dtype=torch.bool)}, r"\[4\]", id="shape"),
        ],
    )
    def test_bad_batches_fail_loudly(self, targets, masks, match):
        with pytest.raises(ValueError, match=match):
            SwinFaceLoss()(_fake_outputs(), targets, masks, progress=0.0)

    def test_bad_config(self):
        with pytest.raises(ValueError, match="unknown outputs"):
            SwinFaceLoss(weights={"Gender": 1.0})
        with pytest.raises(ValueError, match="nothing to supervise"):
            SwinFaceLoss(heads=())
