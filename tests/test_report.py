"""Report building blocks: contact sheet geometry and the markdown summary."""

from __future__ import annotations

import numpy as np
import pytest

from faceops.report import contact_sheet, summary_markdown


def test_contact_sheet_places_each_face_in_its_tile():
    faces = [np.full((4, 5, 3), i * 20, np.uint8) for i in range(7)]
    sheet = contact_sheet(faces, columns=3, pad=1, background=255)
    assert sheet.shape == (3 * 5 + 1, 3 * 6 + 1, 3)
    for i in range(7):
        r, c = divmod(i, 3)
        tile = sheet[1 + r * 5 : 1 + r * 5 + 4, 1 + c * 6 : 1 + c * 6 + 5]
        assert (tile == i * 20).all()
    assert (sheet[11:15, 7:12] == 255).all()  # tile 8 is empty padding


def test_contact_sheet_rejects_mixed_shapes_and_handles_empty():
    with pytest.raises(ValueError, match="faces"):
        contact_sheet([np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4, 3), np.uint8)], columns=2)
    assert contact_sheet([], columns=3).shape == (1, 1, 3)


def test_summary_markdown_lists_every_split_and_reason():
    summary = {
        "sources": {"sample": {"train": {"samples": 10, "identities": 3, "shards": ["a", "b"]},
                               "test": {"samples": 4, "identities": 1, "shards": ["c"]}}},
        "quarantine": {"ingest": {"truncated": 2}, "align": {"no_face": 1}},
        "counts": {"samples": 14, "quarantined": 3},
    }  # fmt: skip
    text = summary_markdown(summary)
    assert "| sample | train | 10 | 3 | 2 |" in text
    assert "| sample | test | 4 | 1 | 1 |" in text
    assert "| ingest | truncated | 2 |" in text and "| align | no_face | 1 |" in text
