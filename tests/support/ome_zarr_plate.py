"""An NGFF 0.4 plate written by ome-zarr-py, the reference writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr


def write_ome_zarr_plate(path: Path, seed: int = 9) -> dict[str, np.ndarray]:
    """Two wells (B/3, C/5) of two fields each, every field a (2, 60, 70)
    uint16 image; returns {"<row>/<column>/<field>": pixels}."""
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_image, write_plate_metadata, write_well_metadata

    fmt = FormatV04()
    plate = zarr.open_group(str(path), mode="w", zarr_format=2)
    wells = ["B/3", "C/5"]
    write_plate_metadata(plate, ["B", "C"], ["3", "5"], wells, fmt=fmt)
    rng = np.random.default_rng(seed)
    pixels = {}
    for well in wells:
        group = plate.require_group(well)
        write_well_metadata(group, [{"path": "0"}, {"path": "1"}], fmt=fmt)
        for field in ("0", "1"):
            image = rng.integers(0, 4000, (2, 60, 70)).astype(np.uint16)
            pixels[f"{well}/{field}"] = image
            write_image(
                image,
                group.require_group(field),
                axes="cyx",
                fmt=fmt,
                scale_factors=(),
                coordinate_transformations=[
                    [{"type": "scale", "scale": [1, 0.65, 0.65]}]
                ],
            )
    return pixels
