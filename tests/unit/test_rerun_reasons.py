"""A rerun's reason in words: the key paths that changed, old → new."""

from __future__ import annotations

from percell.rerun_reasons import changes


def test_changes_name_the_key_path_and_both_values():
    old = {"levels": "auto", "channels": [{"name": "DAPI"}, {"name": "GFP"}], "a": 1}
    new = {"levels": 3, "channels": [{"name": "DAPI"}, {"name": "RFP"}], "b": 2}
    assert changes(old, new) == [
        'levels: "auto" → 3',
        'channels[1].name: "GFP" → "RFP"',
        "a: 1 → (not set)",
        "b: (not set) → 2",
    ]


def test_lists_of_other_lengths_and_long_values_are_shown_whole_but_short():
    found = changes({"files": ["a"] * 2}, {"files": ["a"] * 30})
    assert len(found) == 1 and found[0].startswith('files: ["a", "a"] → ["a", "a", ')
    assert found[0].endswith("…")
    assert changes({"x": [1, 2]}, {"x": [1, 2]}) == []
