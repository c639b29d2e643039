"""Tests of the procedural face generator (faceops.sample): determinism, labels, exact landmarks,
learnable identities and visible attributes."""

from __future__ import annotations

import csv
import io
from dataclasses import replace

import cv2
import numpy as np
import pytest

from faceops.labels import ARCFACE_TEMPLATE_112, CELEBA_ATTRIBUTES, EXPRESSIONS, LANDMARK_COLUMNS
from faceops.sample import LABELS_CSV_COLUMNS, SampleImage, generate_sample, labels_csv
from faceops.sample.canvas import Placement
from faceops.sample.face import Look, render_face
from faceops.sample.features import AGE_LINES_FROM
from faceops.sample.identity import GROUPS, draw_identity

pytestmark = pytest.mark.timeout(120)

IDS, PER_ID = 12, 8
HAIR_COLOURS = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")
FACIAL_HAIR = ("5_o_Clock_Shadow", "Goatee", "Mustache")
PER_PHOTO = ("Eyeglasses", "Wearing_Hat", "Wearing_Earrings", "Wearing_Necklace", "Wearing_Necktie", "Smiling",
             "Mouth_Slightly_Open", "Blurry", "Young")  # fmt: skip


@pytest.fixture(scope="module")
def images() -> list[SampleImage]:
    """A small shared data set: 12 identities x 8 photos."""
    return list(generate_sample(IDS, PER_ID, seed=7))


def _decode(image: SampleImage, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    array = cv2.imdecode(np.frombuffer(image.jpeg, np.uint8), flags)
    assert array is not None, f"{image.relpath} does not decode"
    return array


def _landmarks(image: SampleImage) -> np.ndarray:
    return np.asarray(image.labels["landmarks"], dtype=np.float64)


def _aligned_gray(image: SampleImage) -> np.ndarray:
    """The face warped onto the ArcFace template by its landmarks: gray float32 [112, 112]."""
    matrix, _ = cv2.estimateAffinePartial2D(
        _landmarks(image).astype(np.float32), ARCFACE_TEMPLATE_112.astype(np.float32)
    )
    return cv2.warpAffine(_decode(image, cv2.IMREAD_GRAYSCALE), matrix, (112, 112)).astype(np.float32)


# --- determinism ---------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_labels():
    first = list(generate_sample(3, 3, seed=5))
    second = list(generate_sample(3, 3, seed=5))
    assert [im.relpath for im in first] == [im.relpath for im in second]
    assert [im.jpeg for im in first] == [im.jpeg for im in second]
    assert [im.labels for im in first] == [im.labels for im in second]


def test_different_seeds_differ():
    a = list(generate_sample(2, 2, seed=5))
    b = list(generate_sample(2, 2, seed=6))
    assert all(x.jpeg != y.jpeg for x, y in zip(a, b))


def test_adding_identities_or_photos_keeps_the_earlier_ones():
    small = list(generate_sample(2, 2, seed=3))
    more_ids = list(generate_sample(3, 2, seed=3))
    more_photos = {im.relpath: im.jpeg for im in generate_sample(2, 3, seed=3)}
    assert [im.jpeg for im in small] == [im.jpeg for im in more_ids[:4]]
    assert all(more_photos[im.relpath] == im.jpeg for im in small)


# --- labels --------------------------------------------------------------------------------------


def test_labels_are_complete_and_typed(images):
    assert len(images) == IDS * PER_ID
    assert len({im.relpath for im in images}) == len(images)
    for im in images:
        labels = im.labels
        assert im.relpath == f"images/{labels['identity']}/{im.relpath.rsplit('/', 1)[1]}"
        assert labels["identity"].startswith("id_") and isinstance(labels["identity"], str)
        assert isinstance(labels["expression"], int) and 0 <= labels["expression"] < len(EXPRESSIONS)
        assert isinstance(labels["age"], float) and 10.0 < labels["age"] < 80.0
        assert labels["group"] in GROUPS
        for name in CELEBA_ATTRIBUTES:
            assert type(labels[name]) is int and labels[name] in (0, 1), (im.relpath, name, labels[name])
        height, width = _decode(im).shape[:2]
        assert 160 <= height <= 320 and 160 <= width <= 320
        points = _landmarks(im)
        assert points.shape == (5, 2)
        assert np.all(points >= 0) and np.all(points[:, 0] < width) and np.all(points[:, 1] < height)


def test_labels_are_consistent(images):
    by_identity: dict[str, list[dict]] = {}
    for im in images:
        labels = im.labels
        by_identity.setdefault(labels["identity"], []).append(labels)
        assert labels["Smiling"] == int(EXPRESSIONS[labels["expression"]] == "happiness")
        assert labels["Young"] == int(labels["age"] < AGE_LINES_FROM)
        assert sum(labels[c] for c in HAIR_COLOURS) <= 1
        if labels["Bald"]:
            assert not any(labels[a] for a in (*HAIR_COLOURS, "Bangs", "Straight_Hair", "Wavy_Hair"))
        assert labels["No_Beard"] == int(not any(labels[a] for a in FACIAL_HAIR))
        if not labels["Male"]:
            assert not any(labels[a] for a in (*FACIAL_HAIR, "Sideburns", "Bald"))
        if labels["Heavy_Makeup"]:
            assert labels["Wearing_Lipstick"] == 1
    fixed = [a for a in CELEBA_ATTRIBUTES if a not in PER_PHOTO]
    for identity, rows in by_identity.items():
        for key in (*fixed, "group"):
            assert len({r[key] for r in rows}) == 1, f"{identity}: {key} changes between photos"
        ages = [r["age"] for r in rows]
        assert max(ages) - min(ages) <= 3.0, f"{identity}: ages {ages} spread more than the jitter"
    # the per-photo labels do vary across the set
    for name in ("Smiling", "Mouth_Slightly_Open", "Eyeglasses"):
        assert 0 < sum(im.labels[name] for im in images) < len(images), name


# --- landmarks -----------------------------------------------------------------------------------


def test_landmark_geometry_after_undoing_rotation(images):
    for im in images:
        points = _landmarks(im)
        eye_axis = points[1] - points[0]
        angle = np.arctan2(eye_axis[1], eye_axis[0])
        assert abs(np.degrees(angle)) < 30.0, f"{im.relpath}: eye line at {np.degrees(angle):.1f} deg"
        c, s = np.cos(-angle), np.sin(-angle)
        upright = points @ np.array([[c, -s], [s, c]]).T  # [5, 2], eye line horizontal
        eyes_y, nose_y, mouth_y = upright[:2, 1].mean(), upright[2, 1], upright[3:, 1].mean()
        assert eyes_y < nose_y < mouth_y, f"{im.relpath}: eyes/nose/mouth heights {eyes_y, nose_y, mouth_y}"
        assert upright[0, 0] < upright[2, 0] < upright[1, 0], f"{im.relpath}: nose not between the eyes"
        assert upright[3, 0] < upright[4, 0], f"{im.relpath}: mouth corners swapped"


def test_eye_landmarks_sit_on_the_pupils(images):
    """The darkest spot near each eye landmark (the pupil) is within about a pixel of it."""
    distances = []
    for im in images:
        gray = cv2.GaussianBlur(_decode(im, cv2.IMREAD_GRAYSCALE).astype(np.float32), (0, 0), 0.7)
        points = _landmarks(im)
        r = max(2, int(0.12 * np.linalg.norm(points[1] - points[0])))
        for x, y in points[:2]:
            xi, yi = int(round(x)), int(round(y))
            window = gray[yi - r : yi + r + 1, xi - r : xi + r + 1]
            dy, dx = np.unravel_index(np.argmin(window), window.shape)
            distances.append(np.hypot(xi - r + dx - x, yi - r + dy - y))
    distances = np.asarray(distances)
    assert np.median(distances) < 1.0, np.median(distances)
    assert np.percentile(distances, 90) < 2.0, np.percentile(distances, 90)


def _plain_identity():
    """An identity whose mouth corners and nose tip are surrounded by bare skin (no beard, wrinkles, blush)."""
    for index in range(200):
        ident = draw_identity(0, index)
        if ident.has("No_Beard") and ident.base_age < 36 and not ident.traits & {"Pointy_Nose", "Rosy_Cheeks"}:
            return ident
    raise AssertionError("no plain identity among the first 200")


def test_rendered_landmarks_hit_the_drawn_features():
    """Rendered large and sharp: pupils at the eye landmarks, highlight at the nose tip, lip ends at the corners."""
    ident = _plain_identity()
    look = Look(expression=0, intensity=1.0, mouth_gap=0.0, age=ident.base_age, glasses=False, hat=False,
                earrings=False, necklace=False, necktie=False, shirt=(90, 90, 90), tie=(0, 0, 0))  # fmt: skip
    scale = 4.0
    image = np.full((520, 520, 3), 128, np.uint8)
    points = render_face(image, Placement(scale=scale, angle=0.0, cx=260.0, cy=250.0), ident, look)
    rgb = image[:, :, ::-1].astype(np.float64)

    def colour(x: float, y: float) -> np.ndarray:
        return rgb[int(round(y)), int(round(x))]

    skin = np.asarray(ident.skin)
    for x, y in points[:2]:
        assert colour(x, y).max() < 40, f"eye landmark ({x:.1f}, {y:.1f}) is not on the pupil: {colour(x, y)}"
    assert colour(*points[2]).mean() > skin.mean() + 5, "nose landmark is not on the tip highlight"
    for (x, y), side in zip(points[3:], (-1.0, 1.0)):
        inside, outside = colour(x - side * 1.5 * scale, y), colour(x + side * 3.0 * scale, y)
        assert np.abs(inside - skin).max() > 25, f"inside the mouth corner is skin: {inside}"
        assert np.abs(outside - skin).max() < 12, f"outside the mouth corner is not skin: {outside}"


# --- identities and attributes -------------------------------------------------------------------


def test_identity_is_learnable_but_photos_vary(images):
    """A linear classifier on 16x16 aligned faces beats chance by far; one identity's photos still differ."""
    from sklearn.linear_model import LogisticRegression

    features, names = [], []
    for im in images:
        tiny = cv2.resize(_aligned_gray(im), (16, 16), interpolation=cv2.INTER_AREA).ravel()
        features.append((tiny - tiny.mean()) / (tiny.std() + 1e-6))
        names.append(im.labels["identity"])
    x, y = np.asarray(features), np.asarray(names)
    train = np.arange(len(y)) % PER_ID < PER_ID // 2
    accuracy = (LogisticRegression(max_iter=2000).fit(x[train], y[train]).predict(x[~train]) == y[~train]).mean()
    chance = 1.0 / IDS
    assert accuracy > 3 * chance, f"identity accuracy {accuracy:.2f} vs chance {chance:.2f}"
    for name in np.unique(y):
        same = x[y == name]
        assert same.std(axis=0).mean() > 0.08, f"{name}: photos nearly identical"
        assert len({im.jpeg for im in images if im.labels["identity"] == name}) == PER_ID


def test_eyeglasses_are_visible(images):
    """On aligned faces the bridge of the glasses darkens the spot between the eyes, relative to the nose below it."""
    bridge, with_glasses = [], []
    for im in images:
        face = _aligned_gray(im)
        bridge.append(face[44:52, 50:62].mean() - face[58:66, 52:60].mean())  # between the eyes minus the nose
        with_glasses.append(im.labels["Eyeglasses"] == 1)
    bridge, with_glasses = np.asarray(bridge), np.asarray(with_glasses)
    on, off = bridge[with_glasses], bridge[~with_glasses]
    assert len(on) >= 5 and len(off) >= 5, (len(on), len(off))
    t = (off.mean() - on.mean()) / np.sqrt(on.var(ddof=1) / len(on) + off.var(ddof=1) / len(off))
    assert t > 3.0, f"bridge minus nose with glasses {on.mean():.1f} vs without {off.mean():.1f} (t={t:.2f})"


def _aligned_render(ident, look: Look) -> np.ndarray:
    """The face drawn large on grey and warped onto the ArcFace 112x112 template by its own landmarks [112, 112, 3]."""
    image = np.full((400, 400, 3), 128, np.uint8)
    points = render_face(image, Placement(scale=1.6, angle=0.0, cx=200.0, cy=190.0), ident, look)
    matrix, _ = cv2.estimateAffinePartial2D(points.astype(np.float32), ARCFACE_TEMPLATE_112.astype(np.float32))
    return cv2.warpAffine(image, matrix, (112, 112)).astype(np.float32)


_PLAIN_LOOK = Look(expression=0, intensity=1.0, mouth_gap=0.0, age=30.0, glasses=False, hat=False, earrings=False,
                   necklace=False, necktie=False, shirt=(90, 90, 90), tie=(200, 30, 30))  # fmt: skip
#: Per-photo labels and the change of the look that sets them.
_LOOK_CHANGES = {"Eyeglasses": {"glasses": True}, "Wearing_Hat": {"hat": True}, "Wearing_Earrings": {"earrings": True},
                 "Smiling": {"expression": EXPRESSIONS.index("happiness")}, "Mouth_Slightly_Open": {"mouth_gap": 3.0},
                 "Young": {"age": AGE_LINES_FROM + 0.5}}  # fmt: skip
#: Identity traits drawn by whether the identity has them (the others set its geometry or colours when drawn).
_DRAWN_TRAITS = ("High_Cheekbones", "Rosy_Cheeks", "Bags_Under_Eyes", "Double_Chin", "Mustache", "Pointy_Nose")


@pytest.mark.parametrize("name", [*_LOOK_CHANGES, *_DRAWN_TRAITS])
def test_attribute_changes_the_aligned_crop(name):
    """Counterfactual: the same face with and without the attribute differs inside the aligned 112x112 crop.

    Faces 0 and 5 have the darkest skin tone, where marks drawn as a darker skin must still show. Double_Chin is
    drawn above the chin's tip, which the crop mostly cuts off; Young is the look before the first age line, so
    half a year past it the lines show.
    """
    changed = []
    for index in range(6):
        ident = draw_identity(0, index)
        ident = replace(ident, traits=ident.traits - set(_DRAWN_TRAITS), beard="none")  # a beard hides the chin
        before = _aligned_render(ident, _PLAIN_LOOK)
        if name in _LOOK_CHANGES:
            after = _aligned_render(ident, replace(_PLAIN_LOOK, **_LOOK_CHANGES[name]))
        else:
            after = _aligned_render(replace(ident, traits=ident.traits | {name}), _PLAIN_LOOK)
        changed.append(int((np.abs(after - before).max(axis=2) > 12).sum()))
    assert min(changed) >= 8, f"{name}: pixels changed by more than 12 levels in each face's crop: {changed}"


def test_necklace_and_necktie_lie_below_the_aligned_crop():
    """Both are worn below the chin, which the ArcFace crop cuts off: their labels are not in the aligned pixels."""
    for index in range(4):
        ident = draw_identity(0, index)
        plain = _aligned_render(ident, _PLAIN_LOOK)
        for change in ({"necklace": True}, {"necktie": True}):
            assert np.array_equal(_aligned_render(ident, replace(_PLAIN_LOOK, **change)), plain), (index, change)


def test_attractive_is_read_off_drawn_traits(images):
    """No coin decides Attractive: it is exactly the absence of the drawn marks that count against it."""
    marks = ("Chubby", "Double_Chin", "Bags_Under_Eyes", "Big_Nose", "Narrow_Eyes")
    for im in images:
        assert im.labels["Attractive"] == int(not any(im.labels[m] for m in marks)), im.relpath
    assert 0 < sum(im.labels["Attractive"] for im in images) < len(images)


# --- labels.csv and arguments --------------------------------------------------------------------


def test_labels_csv_round_trips(images):
    text = labels_csv((im.relpath, im.labels) for im in images)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(text.splitlines()[0].split(",")) == LABELS_CSV_COLUMNS
    assert len(rows) == len(images)
    for row, im in zip(rows, images):
        assert row["path"] == im.relpath and row["identity"] == im.labels["identity"]
        assert int(row["expression"]) == im.labels["expression"] and float(row["age"]) == im.labels["age"]
        assert all(int(row[a]) == im.labels[a] for a in CELEBA_ATTRIBUTES)
        assert row["group"] == im.labels["group"]
        flat = [float(row[c]) for c in LANDMARK_COLUMNS]
        assert np.array_equal(np.reshape(flat, (5, 2)), _landmarks(im))


def test_labels_csv_names_a_missing_label(images):
    labels = dict(images[0].labels)
    del labels["Bald"]
    with pytest.raises(KeyError, match="Bald"):
        labels_csv([(images[0].relpath, labels)])


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"identities": 0}, id="no-identities"),
        pytest.param({"seed": -1}, id="negative-seed"),
        pytest.param({"min_side": 300, "max_side": 200}, id="sides-reversed"),
        pytest.param({"min_side": 64}, id="too-small"),
        pytest.param({"jpeg_quality": (90, 80)}, id="quality-reversed"),
        pytest.param({"jpeg_quality": (0, 80)}, id="quality-zero"),
    ],
)
def test_bad_arguments_are_rejected(kwargs):
    args = {"identities": 2, "images_per_identity": 1, "seed": 0, **kwargs}
    with pytest.raises(ValueError):
        next(generate_sample(args.pop("identities"), args.pop("images_per_identity"), **args))
