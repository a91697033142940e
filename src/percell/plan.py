"""How the files of one region become one (C, [Z,] Y, X) image.

A region's rows take one of three forms, and a region may not mix them:

- one row with no channel: a multi-channel file (CYX or CZYX) whose C axis
  follows the configured channel order;
- one row per channel: a 2-D plane (YX) or a Z-stack (ZYX) each;
- one row per channel and z: one 2-D plane per file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from percell.contracts import SourceFile
from percell.errors import SourceImageError
from percell.source_info import SourceInfo


@dataclass(frozen=True)
class Plane:
    """Where target plane (c, z) comes from: file ``source``, its (c, z)."""

    c: int
    z: int
    source: int
    source_c: int
    source_z: int


@dataclass(frozen=True)
class RegionPlan:
    """The target image of a region and the source of each of its planes."""

    shape: tuple[int, ...]
    dtype: str
    has_z: bool
    planes: tuple[Plane, ...]
    pixel_size_um: float | None
    z_step_um: float | None

    @property
    def n_channels(self) -> int:
        return self.shape[0]

    @property
    def n_z(self) -> int:
        return self.shape[1] if self.has_z else 1


def plan_region(
    label: str,
    files: Sequence[SourceFile],
    infos: Sequence[SourceInfo],
    channel_names: Sequence[str],
    channel_map: Mapping[str, str] | None = None,
) -> RegionPlan:
    """Check that a region's files fit together and plan its image.

    Args:
        label: The region, for messages ("ctrl/t0/r1").
        files: The region's sheet rows (dicts with channel, z, path).
        infos: Probe results of those files, in the same order.
        channel_names: Configured channels in display order.
        channel_map: A file's channel name -> the configured channel it is.

    Raises:
        SourceImageError: naming the region and the files that do not fit.
    """
    _check_timepoints(label, files, infos)
    multi = [f for f in files if f.channel is None]
    if multi and len(files) > 1:
        raise SourceImageError(
            f"region {label}: a row without channel (a multi-channel file) must be "
            f"the region's only row, found {len(files)} rows"
        )
    planes: list[Plane] = []
    if multi:
        info = infos[0]
        source_c = _file_channels(label, info, channel_names, channel_map or {})
        n_z = info.size("Z")
        planes = [
            Plane(c, z, 0, source_c[c], z)
            for c in range(len(channel_names))
            for z in range(n_z)
        ]
        has_z = "Z" in info.axes
    else:
        planes, n_z, has_z = _plan_per_channel(label, files, infos, channel_names)
    _check_same(label, infos, "dtype", lambda i: np.dtype(i.dtype).name)
    _check_same(label, infos, "plane shape (Y, X)", lambda i: (i.height, i.width))
    sizes = [i.pixel_size_um for i in infos if i.pixel_size_um]
    steps = [i.z_step_um for i in infos if i.z_step_um]
    y, x = infos[0].height, infos[0].width
    shape = (len(channel_names), n_z, y, x) if has_z else (len(channel_names), y, x)
    return RegionPlan(
        shape=shape,
        dtype=infos[0].dtype,
        has_z=has_z,
        planes=tuple(sorted(planes, key=lambda p: (p.c, p.z))),
        pixel_size_um=sizes[0] if sizes else None,
        z_step_um=steps[0] if steps else None,
    )


def _check_timepoints(
    label: str, files: Sequence[SourceFile], infos: Sequence[SourceInfo]
) -> None:
    """A file of several timepoints is read at the one its row names."""
    for f, info in zip(files, infos, strict=True):
        where = f"{info.path}" + (f" (scene {info.scene})" if info.scene else "")
        if f.t is None and info.timepoints > 1:
            raise SourceImageError(
                f"region {label}: {where} holds {info.timepoints} timepoints; "
                "name them with file_timepoints in the config (one region per "
                "timepoint), or give the row's timepoint and t (its index in "
                "the file)"
            )
        if f.t is not None and f.t >= info.timepoints:
            raise SourceImageError(
                f"region {label}: {where} has no timepoint t={f.t} (it holds "
                f"{info.timepoints})"
            )


def _file_channels(
    label: str,
    info: SourceInfo,
    channel_names: Sequence[str],
    channel_map: Mapping[str, str],
) -> list[int]:
    """Where each configured channel is in a multi-channel file: by name
    where the file names its channels (``channel_map`` renames them), else by
    position."""
    if info.channel_names:
        renamed = [channel_map.get(n, n) for n in info.channel_names]
        missing = [n for n in channel_names if n not in renamed]
        if missing:
            raise SourceImageError(
                f"region {label}: {info.path} has channels "
                f"{', '.join(info.channel_names)}, not {', '.join(missing)}: "
                "name the configured channels as the file does, or map the "
                "file's names to them with channel_map"
            )
        return [renamed.index(n) for n in channel_names]
    if "C" not in info.axes or info.size("C") != len(channel_names):
        raise SourceImageError(
            f"region {label}: {info.path} has axes {info.axes} shape {info.shape}, "
            f"expected {len(channel_names)} channels ({', '.join(channel_names)}) "
            "as CYX or CZYX"
        )
    return list(range(len(channel_names)))


def _plan_per_channel(
    label: str,
    files: Sequence[SourceFile],
    infos: Sequence[SourceInfo],
    channel_names: Sequence[str],
) -> tuple[list[Plane], int, bool]:
    index: dict[str | None, int] = {name: i for i, name in enumerate(channel_names)}
    for f in files:
        if f.channel not in index:
            raise SourceImageError(
                f"region {label}: {f.path} has channel {f.channel!r}, which is "
                f"not configured (channels: {', '.join(channel_names)})"
            )
    missing = [n for n in channel_names if n not in {f.channel for f in files}]
    if missing:
        raise SourceImageError(
            f"region {label}: no file for channel(s) {', '.join(missing)}"
        )
    per_z = [f.z is not None for f in files]
    if any(per_z) and not all(per_z):
        raise SourceImageError(f"region {label}: either every row or no row may give z")
    for f, info in zip(files, infos, strict=True):
        if "C" in info.axes:
            raise SourceImageError(
                f"region {label}: {info.path} has {info.size('C')} channels "
                f"(axes {info.axes}) but its row names channel {f.channel!r}; "
                "leave the channel empty for a multi-channel file"
            )
        if f.z is not None and info.axes != "YX":
            raise SourceImageError(
                f"region {label}: {info.path} has axes {info.axes} shape "
                f"{info.shape}, expected a 2-D plane (YX) because its row gives z"
            )
    if all(per_z):
        zs_by_channel = {
            n: sorted(f.z for f in files if f.channel == n and f.z is not None)
            for n in channel_names
        }
        n_z = len(zs_by_channel[channel_names[0]])
        for n, zs in zs_by_channel.items():
            if zs != list(range(n_z)):
                raise SourceImageError(
                    f"region {label}: channel {n} has z {zs}, expected 0..{n_z - 1} "
                    "like every other channel"
                )
        planes = [
            Plane(index[f.channel], f.z or 0, i, 0, 0) for i, f in enumerate(files)
        ]
        return planes, n_z, True
    if len(files) != len(channel_names):
        raise SourceImageError(
            f"region {label}: {len(files)} files for {len(channel_names)} channels"
        )
    n_zs = {info.size("Z") for info in infos}
    has_z = any("Z" in info.axes for info in infos)
    if len(n_zs) > 1 or (has_z and not all("Z" in i.axes for i in infos)):
        detail = ", ".join(f"{i.path}: {i.axes} {i.shape}" for i in infos)
        raise SourceImageError(
            f"region {label}: channels have different shapes ({detail})"
        )
    n_z = n_zs.pop()
    planes = [
        Plane(index[f.channel], z, i, 0, z)
        for i, f in enumerate(files)
        for z in range(n_z)
    ]
    return planes, n_z, has_z


def _check_same(
    label: str,
    infos: Sequence[SourceInfo],
    what: str,
    key: Callable[[SourceInfo], object],
) -> None:
    values = {key(i) for i in infos}
    if len(values) > 1:
        detail = ", ".join(f"{i.path}: {key(i)}" for i in infos)
        raise SourceImageError(f"region {label}: files differ in {what} ({detail})")
