"""NGFF 0.4 metadata for images, labels and masks, as plain dicts.

Pure builders: nothing here touches storage. Where the PerCell 3 seed's example
is not valid NGFF 0.4 (an "identity" top-level transform, an omero window
without min/max) we write the valid form, which the PerCell 3 reader accepts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from percell.contracts import Channel

NGFF_VERSION = "0.4"
PERCELL_VERSION = "3.0.0"


def _axes(spatial: str, with_channel: bool) -> list[dict]:
    axes = [{"name": "c", "type": "channel"}] if with_channel else []
    axes += [{"name": a, "type": "space", "unit": "micrometer"} for a in spatial]
    return axes


def level_scales(
    n_levels: int, pixel_size_um: float, z_step_um: float | None, has_z: bool
) -> list[list[float]]:
    """The spatial scale of each pyramid level: y and x double, z stays."""
    scales = []
    for level in range(n_levels):
        factor = 2.0**level
        yx = [pixel_size_um * factor, pixel_size_um * factor]
        scales.append(([float(z_step_um or 1.0)] if has_z else []) + yx)
    return scales


def multiscales(
    name: str,
    n_levels: int,
    pixel_size_um: float,
    z_step_um: float | None,
    has_z: bool,
    with_channel: bool,
) -> list[dict]:
    """An NGFF 0.4 ``multiscales`` list with datasets "0".."n-1"."""
    spatial = "zyx" if has_z else "yx"
    datasets = []
    for level, scale in enumerate(
        level_scales(n_levels, pixel_size_um, z_step_um, has_z)
    ):
        full = ([1.0] if with_channel else []) + scale
        datasets.append(
            {
                "path": str(level),
                "coordinateTransformations": [{"type": "scale", "scale": full}],
            }
        )
    return [
        {
            "version": NGFF_VERSION,
            "name": name,
            "axes": _axes(spatial, with_channel),
            "datasets": datasets,
        }
    ]


def omero(
    channels: Sequence[Channel], windows: Sequence[tuple[float, ...]]
) -> dict[str, Any]:
    """The ``omero`` block: one entry per channel in display order.

    Args:
        channels: The configured channels (color: hex, '#' optional).
        windows: Per channel (min, max, start, end) of the display window.
    """
    entries = []
    for ch, (lo, hi, start, end) in zip(channels, windows, strict=True):
        entries.append(
            {
                "label": ch.name,
                "color": ch.color.lstrip("#").upper(),
                "active": True,
                "window": {"min": lo, "max": hi, "start": start, "end": end},
            }
        )
    return {"version": NGFF_VERSION, "channels": entries}


def with_channel_colours(attrs: dict[str, Any], channels: Sequence[Channel]) -> dict:
    """Copy of image ``attrs`` whose ``omero`` channels have the configured
    colours (display metadata: set by register, so that a colour change
    re-imports nothing)."""
    omero_block = attrs.get("omero")
    if not omero_block:
        return attrs
    entries = [
        {**entry, "color": ch.color.lstrip("#").upper()}
        for entry, ch in zip(omero_block["channels"], channels, strict=False)
    ]
    return {**attrs, "omero": {**omero_block, "channels": entries}}


def image_attrs(
    name: str,
    n_levels: int,
    pixel_size_um: float,
    z_step_um: float | None,
    has_z: bool,
    channels: Sequence[Channel],
    windows: Sequence[tuple[float, ...]],
) -> dict[str, Any]:
    """Full ``.zattrs`` of an image group."""
    return {
        "multiscales": multiscales(
            name, n_levels, pixel_size_um, z_step_um, has_z, with_channel=True
        ),
        "omero": omero(channels, windows),
    }


def with_levels(attrs: dict, n_levels: int) -> dict:
    """Copy of image/label ``attrs`` whose multiscales list ``n_levels`` levels.

    Level k's scale is level 0's with y and x multiplied by 2**k (z and c stay).
    """
    ms = dict(attrs["multiscales"][0])
    base = ms["datasets"][0]["coordinateTransformations"][0]["scale"]
    datasets = []
    for level in range(n_levels):
        scale = [*base[:-2], base[-2] * 2.0**level, base[-1] * 2.0**level]
        datasets.append(
            {
                "path": str(level),
                "coordinateTransformations": [{"type": "scale", "scale": scale}],
            }
        )
    ms["datasets"] = datasets
    return {**attrs, "multiscales": [ms]}


def without_z(attrs: dict) -> dict:
    """Copy of image/label ``attrs`` (level 0 only) for the projection of the
    stack along z: the z axis and its scale removed."""
    ms = dict(with_levels(attrs, 1)["multiscales"][0])
    z = [i for i, a in enumerate(ms["axes"]) if a["name"] == "z"]
    if not z:
        return with_levels(attrs, 1)
    keep = [i for i in range(len(ms["axes"])) if i not in z]
    ms["axes"] = [ms["axes"][i] for i in keep]
    scale = ms["datasets"][0]["coordinateTransformations"][0]["scale"]
    ms["datasets"] = [
        {
            "path": "0",
            "coordinateTransformations": [
                {"type": "scale", "scale": [scale[i] for i in keep]}
            ],
        }
    ]
    return {**attrs, "multiscales": [ms]}


def spatial_multiscales(image_attrs: dict) -> list[dict]:
    """An image's ``multiscales`` without its channel axis (for labels, masks)."""
    ms = image_attrs["multiscales"][0]
    spatial = [a for a in ms["axes"] if a["type"] != "channel"]
    drop = len(ms["axes"]) - len(spatial)
    datasets = [
        {
            "path": d["path"],
            "coordinateTransformations": [
                {
                    "type": "scale",
                    "scale": d["coordinateTransformations"][0]["scale"][drop:],
                }
            ],
        }
        for d in ms["datasets"]
    ]
    return [
        {
            "version": NGFF_VERSION,
            "name": ms.get("name", ""),
            "axes": spatial,
            "datasets": datasets,
        }
    ]


def label_attrs(image_attrs: dict, source_image: str) -> dict:
    """``.zattrs`` of a label group that mirrors an image's levels.

    Args:
        image_attrs: The image group's attributes (multiscales with a c axis).
        source_image: Relative path from the label group to the image group.
    """
    return {
        "image-label": {"version": NGFF_VERSION, "source": {"image": source_image}},
        "multiscales": spatial_multiscales(image_attrs),
    }


def display_windows(
    dtype: npt.DTypeLike, lo: npt.ArrayLike, hi: npt.ArrayLike
) -> list[tuple[float, ...]]:
    """Per channel (min, max, start, end) for ``omero``: the dtype's range
    as min/max for integers (the data's for floats), the data's as start/end."""
    kind = np.dtype(dtype)
    low = np.asarray(lo, np.float64).ravel()
    high = np.asarray(hi, np.float64).ravel()
    if kind.kind in "ui":
        info = np.iinfo(kind)
        rng = (float(info.min), float(info.max))
    else:
        rng = (float(np.min(low)), float(np.max(high)))
    return [
        (rng[0], rng[1], float(a), float(b)) for a, b in zip(low, high, strict=True)
    ]
