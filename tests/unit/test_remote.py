"""Inputs behind URLs: which endpoint serves a URL, which folder one listing
covers, how sources are recorded, the staging cache's bound, the config."""

from __future__ import annotations

import logging
import os

import pytest

from percell import remote
from percell.config import load_config
from percell.errors import ConfigError


@pytest.fixture(autouse=True)
def no_endpoints():
    yield
    remote.configure({})


def test_the_longest_configured_prefix_names_the_endpoint():
    remote.configure(
        {
            "s3://raw": "http://127.0.0.1:9000",
            "s3://raw/archive/": "http://127.0.0.1:9001",
        }
    )
    assert remote.endpoint_for("s3://raw/a.tif") == "http://127.0.0.1:9000"
    assert remote.endpoint_for("s3://raw/archive/a.tif") == "http://127.0.0.1:9001"
    # a prefix matches whole path segments only
    assert remote.endpoint_for("s3://rawdata/a.tif") is None
    assert remote.endpoint_for("s3://raw/archived/a.tif") == "http://127.0.0.1:9000"
    assert remote.fs_kwargs("s3://raw/a.tif") == {
        "endpoint_url": "http://127.0.0.1:9000"
    }
    assert remote.fs_kwargs("https://example.org/a.zarr") == {}


def test_one_listing_covers_the_deepest_shared_folder():
    folder = remote._shared_folder
    assert folder(["s3://b/p/w1/a.tif", "s3://b/p/w2/b.tif"]) == "s3://b/p"
    assert folder(["s3://b/p/a.tif"]) == "s3://b/p"
    assert folder(["s3://b/a.tif", "s3://b/c/d.tif"]) == "s3://b"
    # a shared start of a name is not a folder
    assert folder(["s3://b/plate1/a.tif", "s3://b/plate2/a.tif"]) == "s3://b"


def test_urls_are_recorded_as_given_and_files_resolved(tmp_path):
    assert remote.is_url("s3://b/k") and remote.is_url("https://h/k")
    assert not remote.is_url("/data/s3://odd") and not remote.is_url("raw/a.tif")
    assert remote.canonical("s3://b/k.tif") == "s3://b/k.tif"
    os.chdir(tmp_path)
    assert remote.canonical("raw/a.tif") == str(tmp_path / "raw/a.tif")
    assert remote.join("s3://b/p/", "w/a.tif") == "s3://b/p/w/a.tif"


def test_http_cannot_be_scanned():
    with pytest.raises(Exception, match="HTTP servers cannot list files"):
        remote.files_under("https://example.org/raw", "input.scan.directory")


def test_the_staging_cache_keeps_to_its_bound(tmp_path, monkeypatch):
    monkeypatch.setenv("PERCELL_REMOTE_CACHE_GB", str(2500 / 1e9))
    files = []
    for i in range(4):  # 1,000 bytes each, oldest first
        f = tmp_path / f"{i}.czi"
        f.write_bytes(b"x" * 1000)
        os.utime(f, (1000 + i, 1000 + i))
        files.append(f)
    partial = tmp_path / ".5.abc.part"  # a download in flight is left alone
    partial.write_bytes(b"x" * 1000)
    remote._evict(tmp_path, keep=files[0], log=logging.getLogger("test"))
    # the least recently used go first, but never the copy just staged
    assert sorted(f.name for f in tmp_path.iterdir()) == [
        ".5.abc.part",
        "0.czi",
        "3.czi",
    ]


def config_with(**extra):
    return {
        "experiment": {"name": "x", "path": "out/x.percell"},
        "input": {"sample_sheet": "s.tsv"},
        "channels": [{"name": "DAPI"}],
        **extra,
    }


@pytest.mark.parametrize(
    ("storage", "expected"),
    [
        ({"endpoints": {"s3://raw": "127.0.0.1:9000"}}, "starting with http://"),
        ({"endpoints": {"raw": "http://127.0.0.1:9000"}}, "a prefix s3://bucket"),
        ({"endpoint": "http://127.0.0.1:9000"}, "endpoint"),
    ],
)
def test_storage_settings_are_checked(storage, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(config_with(storage=storage))


def test_storage_endpoints_are_read():
    cfg = load_config(config_with(storage={"endpoints": {"s3://raw": "http://h:1"}}))
    assert cfg.storage.endpoints == {"s3://raw": "http://h:1"}


def test_an_experiment_in_a_bucket_is_refused_with_the_reason():
    config = config_with()
    config["experiment"]["path"] = "s3://results/x.percell"
    with pytest.raises(ConfigError, match="SQLite database needs file locks"):
        load_config(config)
