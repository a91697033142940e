"""What a probe learns of a raw image file, and what reads it: shared by the
TIFF path (``sources``) and the bioio path (``formats``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

#: dtypes a PerCell 3 image may hold; anything else is refused at probe time.
SUPPORTED_DTYPES = frozenset(
    np.dtype(t).str for t in ("u1", "u2", "u4", "i1", "i2", "i4", "f4", "f8")
)


def file_channel_names(names: Sequence[str]) -> tuple[str, ...]:
    """The names a file gives its channels, or () where it gives none: an
    unnamed channel is empty, or named by its reader ("Channel:0:1"), and
    such a file is read in the configured channel order."""
    names = tuple(names)
    made_up = all(n == "" or n.startswith("Channel:") for n in names)
    return () if made_up else names


@dataclass(frozen=True)
class SourceInfo:
    """What a probe learns from a file's header without reading its pixels.

    Attributes:
        path: The file.
        axes: Axes of the stored series after normalisation: a subset of "CZYX"
            in that order, e.g. "YX", "ZYX", "CYX", "CZYX".
        shape: Shape in the order of ``axes``.
        dtype: Pixel type, as a numpy dtype string.
        pixel_size_um: Pixel size from OME or ImageJ metadata, if present.
        z_step_um: Z step from OME metadata, if present.
        stored_axes: Axes in the file's own order ("ZCYX" for ImageJ stacks).
        scene: The scene read, in a file that holds scenes (``formats``).
        scene_index: Its position among the file's scenes.
        channel_names: The file's own channel names, empty where it names
            none (see ``file_channel_names``).
        timepoints: Timepoints the scene holds (vendor files).
        t: The timepoint read, in a scene of several (set per sheet row).
    """

    path: str
    axes: str
    shape: tuple[int, ...]
    dtype: str
    pixel_size_um: float | None = None
    z_step_um: float | None = None
    stored_axes: str = ""
    scene: str | None = None
    scene_index: int | None = None
    channel_names: tuple[str, ...] = ()
    timepoints: int = 1
    t: int | None = None

    @property
    def height(self) -> int:
        return self.shape[-2]

    @property
    def width(self) -> int:
        return self.shape[-1]

    def size(self, axis: str) -> int:
        """Length of ``axis`` ("C" or "Z"), 1 when the file lacks it."""
        return self.shape[self.axes.index(axis)] if axis in self.axes else 1


class PlaneReader(Protocol):
    """What the importer reads a source with (a context manager)."""

    def __enter__(self) -> PlaneReader: ...

    def __exit__(self, *exc: object) -> None: ...

    def read(self, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        """Rows ``y0:y1`` of channel ``c``, plane ``z`` (indices in the file)."""
        ...
