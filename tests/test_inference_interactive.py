"""The lesion filter never drops a component the user clicked as a lesion."""

from __future__ import annotations

import numpy as np

from modeling_petct.inference.interactive import keep_clicked


def test_a_clicked_component_survives_the_lesion_filter_and_others_do_not_come_back():
    raw = np.zeros((10, 10, 10), np.uint8)
    raw[1:3, 1:3, 1:3] = 1  # clicked, filtered out
    raw[6:8, 6:8, 6:8] = 1  # not clicked, filtered out
    raw[4, 4, 8] = 1  # kept by the filter
    filtered = np.zeros_like(raw)
    filtered[4, 4, 8] = 1
    kept = keep_clicked(filtered, raw, [(0, (1, 2, 2)), (1, (6, 6, 6))])
    expected = filtered.copy()
    expected[1:3, 1:3, 1:3] = 1
    assert np.array_equal(kept, expected) and kept.dtype == np.uint8
    assert keep_clicked(filtered, raw, [(0, (0, 0, 0))]) is filtered  # a click off the mask changes nothing
