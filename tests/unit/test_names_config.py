"""The PerCell 3 name rule and config validation."""

from __future__ import annotations

import pytest

from percell.config import validate_config
from percell.errors import ConfigError, PercellError
from percell.names import check_name, is_valid_name


@pytest.mark.parametrize("name", ["r1", "A", "ctrl_1.5-x", "9" * 255])
def test_valid_names(name):
    assert is_valid_name(name)


@pytest.mark.parametrize(
    "name", ["", "-a", ".a", "a b", "a/b", "a..b", "../x", "9" * 256, "é", None, 3]
)
def test_invalid_names(name):
    assert not is_valid_name(name)
    with pytest.raises(ConfigError, match="name rule"):
        check_name(name, "region", "sheet.tsv, row 3")


def test_errors_are_also_builtin_errors():
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, PercellError)


def minimal():
    return {
        "experiment": {"name": "x", "path": "x.percell"},
        "input": {"sample_sheet": "s.tsv"},
        "channels": [{"name": "DAPI"}],
    }


def test_defaults_are_filled_in():
    cfg = validate_config(minimal())
    assert cfg["pyramid"]["levels"] == "auto"
    assert cfg["import"]["resources"]["threads"] == 2
    assert cfg["channels"][0]["color"] == "FFFFFF"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda c: c["experiment"].update(path="x.zarr"),
            r"experiment.path: 'x.zarr' is not a path ending in .percell$",
        ),
        (
            lambda c: c["input"].update(demo={}),
            r"input: expected exactly one of demo, sample_sheet, scan or plate; "
            r"got sample_sheet, demo$",
        ),
        (
            lambda c: c.update(input={}),
            r"input: expected exactly one of demo, .* or plate; got none$",
        ),
        (
            lambda c: c.update(segmentation={"channel": "DAPI", "diameter": "16"}),
            r"segmentation.diameter: '16' is a string, expected a number$",
        ),
        (
            lambda c: c.update(segmentation={"channel": "DAPI", "min_size": 30.5}),
            r"segmentation.min_size: 30.5 is a number with a fraction, expected a "
            r"whole number$",
        ),
        (
            lambda c: c.update(segmentation={"channel": "DAPI", "tile_size": "2k"}),
            r"segmentation.tile_size: '2k' is a string, expected a whole number$",
        ),
        (
            lambda c: c.update(segmentation=5),
            r"segmentation: 5 is a whole number, expected null \(nothing\) or a "
            r"mapping of keys$",
        ),
        (
            lambda c: c["channels"][0].update(name="a b"),
            r"channels.0.name: 'a b' is not a name of letters, digits",
        ),
        (
            lambda c: c.update(channels=[{"name": "A"}, {"name": "A"}]),
            "duplicate channel",
        ),
        (lambda c: c["channels"][0].update(color="blue"), r"channels.0.color: 'blue'"),
        (lambda c: c.update(pyramid={"levels": 0}), r"pyramid.levels"),
        (lambda c: c.update(colour=1), r"unknown key\(s\) 'colour'; allowed keys: "),
    ],
)
def test_config_errors_name_the_key(edit, message):
    cfg = minimal()
    edit(cfg)
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg)
