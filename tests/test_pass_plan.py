"""Forward passes: every text exactly once, similar lengths together, padded size within the budget."""

from __future__ import annotations

import random

from models.pass_plan import plan_passes


def test_docstring_example():
    assert plan_passes([12, 80, 15, 200], max_texts=32, token_budget=512) == [[0, 2, 1], [3]]


def test_every_text_once_within_the_limits():
    rng = random.Random(7)
    lengths = [rng.randint(3, 256) for _ in range(500)]
    passes = plan_passes(lengths, max_texts=32, token_budget=512)
    assert sorted(i for p in passes for i in p) == list(range(500))
    for p in passes:
        assert len(p) <= 32
        widths = [lengths[i] for i in p]
        assert widths == sorted(widths)
        # Padded to its longest text; only a text longer than the budget alone may pass it.
        assert len(p) * max(widths) <= 512 or len(p) == 1


def test_short_texts_share_passes_and_long_ones_do_not_pad_them():
    lengths = [10] * 40 + [250] * 4
    passes = plan_passes(lengths, max_texts=32, token_budget=512)
    assert [len(p) for p in passes] == [32, 8, 2, 2]
    assert all(lengths[i] == 10 for p in passes[:2] for i in p)


def test_nothing_to_plan():
    assert plan_passes([], max_texts=8) == []
