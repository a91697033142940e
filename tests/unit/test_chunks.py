"""Chunk-aligned block I/O agrees with zarr itself, edge chunks included."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from percell.chunks import BlockIO
from percell.storage import (
    IMAGE_COMPRESSOR,
    LABEL_COMPRESSOR,
    MASK_COMPRESSOR,
    create_array,
    open_group,
)


@pytest.mark.parametrize(
    ("shape", "chunks", "dtype", "codec"),
    [
        ((3, 1100, 1300), (1, 512, 512), "uint16", IMAGE_COMPRESSOR),
        ((2, 23, 300, 270), (1, 10, 128, 128), "float32", IMAGE_COMPRESSOR),
        ((700, 900), (512, 512), "int32", LABEL_COMPRESSOR),
        ((700, 900), (512, 512), "uint8", MASK_COMPRESSOR),
    ],
)
def test_blocks_written_directly_read_back_through_zarr(
    tmp_path, shape, chunks, dtype, codec
):
    data = (np.random.default_rng(0).random(shape) * 1000).astype(dtype)
    arr = create_array(
        open_group(tmp_path / "g", mode="w"), "0", shape, chunks, dtype, codec
    )
    io = BlockIO(arr)
    assert io.path is not None  # the fast path is taken
    band = chunks[-2]
    lead = [range(0, s, c) for s, c in zip(shape[:-2], chunks[:-2], strict=True)]
    for start in itertools.product(*lead):
        for y0 in range(0, shape[-2], band):
            sl = tuple(slice(s, s + c) for s, c in zip(start, chunks[:-2], strict=True))
            io.write((*start, y0, 0), data[(*sl, slice(y0, y0 + band))])
    np.testing.assert_array_equal(open_group(tmp_path / "g")["0"][:], data)
    # and blocks read directly equal zarr's slicing of what zarr wrote
    other = create_array(
        open_group(tmp_path / "h", mode="w"), "0", shape, chunks, dtype, codec
    )
    other[...] = data
    start = (*chunks[:-2], band, 0)
    start = tuple(
        min(s, (n - 1) // c * c) for s, n, c in zip(start, shape, chunks, strict=True)
    )
    block = BlockIO(other).read(start, tuple(2 * c for c in chunks))
    expected = data[
        tuple(slice(s, s + 2 * c) for s, c in zip(start, chunks, strict=True))
    ]
    np.testing.assert_array_equal(block, expected)


def test_missing_chunks_read_as_fill_value(tmp_path):
    arr = create_array(
        open_group(tmp_path / "g", mode="w"),
        "0",
        (600, 600),
        (512, 512),
        "uint16",
        IMAGE_COMPRESSOR,
    )
    assert (BlockIO(arr).read((0, 0), (600, 600)) == 0).all()


def test_unaligned_block_is_refused(tmp_path):
    arr = create_array(
        open_group(tmp_path / "g", mode="w"),
        "0",
        (600, 600),
        (512, 512),
        "uint16",
        IMAGE_COMPRESSOR,
    )
    with pytest.raises(ValueError, match="not on a chunk boundary"):
        BlockIO(arr).write((5, 0), np.zeros((10, 10), np.uint16))


def test_a_failed_staging_leaves_no_directory_it_made(tmp_path):
    """A job that fails leaves no empty group behind (an import of a new
    condition made images.zarr/<condition>/ for its region); a directory
    that held something before, or that another job filled meanwhile, stays."""
    from percell.storage import Staging

    exp = tmp_path / "exp.percell"
    (exp / "images.zarr/ctrl").mkdir(parents=True)
    with pytest.raises(RuntimeError), Staging() as staged:
        staged.directory(exp / "images.zarr/drug/r1")
        staged.file(exp / "labels.zarr/drug/r1/.zattrs")
        staged.directory(exp / "images.zarr/ctrl/r9")
        (exp / "masks.zarr/drug").mkdir(parents=True)  # another job's
        staged.directory(exp / "masks.zarr/drug/r2")
        raise RuntimeError("the reader failed")
    assert sorted(str(p.relative_to(exp)) for p in exp.rglob("*")) == [
        "images.zarr",
        "images.zarr/ctrl",
        "masks.zarr",
        "masks.zarr/drug",
    ]
    with Staging() as staged:  # a block that succeeds keeps what it made
        (staged.directory(exp / "images.zarr/drug/r1") / "0").mkdir()
    assert (exp / "images.zarr/drug/r1/0").is_dir()
