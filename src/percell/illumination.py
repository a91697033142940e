"""Flat-field (illumination) correction: fitted before import, applied at it.

Per scope (a plate, or a condition for free-form input, or the whole
experiment) the ``illumination`` job reads a sample of fields (a free-form
region is one field; a plate well's fields are its own), each channel's
middle z-plane, averaged down to a working size band by band, and fits each
channel's flat-field with BaSiC (``percell.basic``). The profiles, resized to
the field size and normalised to mean 1, are stored in the experiment with
their parameters and the fields they came from:
``illumination.zarr/<scope>`` (array ``flatfield``, (C, Y, X) float32, the
configured channels in order; its attributes say which). Import divides each
plane of a corrected channel by its profile before it writes level 0 (integer
images rounded and clipped to their dtype), so level 0 holds corrected data
and the raw files stay the source.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import numpy as np

from percell import layout, remote
from percell.basic import basic_flatfield
from percell.contracts import Illumination, IlluminationParams, IlluminationSample
from percell.dtypes import cast_to
from percell.errors import ExperimentError, SourceImageError
from percell.plan import RegionPlan, plan_region
from percell.sentinel import write_sentinel
from percell.source_info import PlaneReader, SourceInfo
from percell.sources import open_source, probe_source
from percell.storage import Staging, array_of, attrs_of, create_array, open_group

log = logging.getLogger(__name__)

STORE = "illumination.zarr"
ARRAY = "flatfield"
#: rows read at a time while averaging a field down
BAND_ROWS = 512


def profile_path(experiment: str | Path, scope: str) -> Path:
    """The group holding a scope's flat-fields."""
    return Path(experiment) / STORE / scope


def _plan(
    sample: IlluminationSample, params: IlluminationParams
) -> tuple[RegionPlan, list[SourceInfo]]:
    infos = [
        replace(probe_source(f.path, f.channel is None, f.scene), t=f.t)
        for f in sample.files
    ]
    names = [c.name for c in params.channels]
    plan = plan_region(sample.label, sample.files, infos, names, params.channel_map)
    return plan, infos


def _bin_edges(n: int, bins: int) -> np.ndarray:
    """Start of each of ``bins`` near-equal bins over ``n`` pixels."""
    return (np.arange(bins) * n) // bins


def binned_plane(
    sample: IlluminationSample,
    params: IlluminationParams,
    size: tuple[int, int],
) -> tuple[dict[str, np.ndarray], tuple[int, int]]:
    """Each corrected channel's middle z-plane of a field, averaged down to
    ``size`` (at most the field's), read by bands of rows.

    Returns:
        Channel name → (h, w) float64, and the field's (Y, X) shape.
    """
    plan, infos = _plan(sample, params)
    height, width = plan.shape[-2:]
    h, w = min(size[0], height), min(size[1], width)
    ys, xs = _bin_edges(height, h), _bin_edges(width, w)
    row_bin = np.searchsorted(ys, np.arange(height), side="right") - 1
    counts = np.outer(np.diff([*ys, height]), np.diff([*xs, width]))
    names = [c.name for c in params.channels]
    z = plan.n_z // 2
    by_cz = {(p.c, p.z): p for p in plan.planes}
    out = {}
    with ExitStack() as stack:
        readers: dict[int, PlaneReader] = {}
        for name in params.corrected:
            p = by_cz[(names.index(name), z)]
            if p.source not in readers:
                readers[p.source] = stack.enter_context(open_source(infos[p.source]))
            sums = np.zeros((h, w))
            for y0 in range(0, height, BAND_ROWS):
                y1 = min(y0 + BAND_ROWS, height)
                band = readers[p.source].read(p.source_c, p.source_z, y0, y1)
                rows = np.add.reduceat(band.astype(np.float64), xs, axis=1)
                np.add.at(sums, row_bin[y0:y1], rows)
            out[name] = sums / counts
    return out, (height, width)


def fit_scope(params: IlluminationParams, sentinel: str | Path) -> Illumination:
    """Fit the flat-field of every corrected channel of a scope; store them
    aside and move them into place; write the sentinel last."""
    experiment = Path(layout.experiment_of_sentinel(sentinel))
    remote.configure(params.endpoints)
    settings = params.settings
    size = (settings.working_size, settings.working_size)
    stacks: dict[str, list[np.ndarray]] = {c: [] for c in params.corrected}
    first: tuple[int, int] | None = None
    for i, sample in enumerate(params.samples, start=1):
        try:
            planes, shape = binned_plane(sample, params, size)
        except SourceImageError as exc:
            raise SourceImageError(f"illumination {params.scope}: {exc}") from None
        first = first or shape
        if shape != first:
            raise ExperimentError(
                f"illumination {params.scope}: field {sample.label} is "
                f"{shape[0]}x{shape[1]} px but earlier fields are "
                f"{first[0]}x{first[1]}: one flat-field needs fields "
                "of one size (set illumination.scope so that each scope holds one "
                "field size)"
            )
        for name, plane in planes.items():
            stacks[name].append(plane)
        if i % max(1, len(params.samples) // 10) == 0:
            log.info("  %s: %d/%d fields read", params.scope, i, len(params.samples))
    if len(params.samples) < 2:
        raise ExperimentError(
            f"illumination {params.scope}: {len(params.samples)} field(s); BaSiC "
            "needs at least 2 (and gives a good estimate from about 20)"
        )
    (height, width) = first or (0, 0)
    from skimage.transform import resize

    profiles = []
    for name in params.corrected:
        small = basic_flatfield(np.stack(stacks[name]), settings.smoothness)
        full = resize(small, (height, width), order=1, mode="edge")
        full = full / full.mean()
        profiles.append(full.astype(np.float32))
        log.info(
            "  %s: flat-field of %s from %d fields: %.3f..%.3f",
            params.scope,
            name,
            len(params.samples),
            full.min(),
            full.max(),
        )
    final = profile_path(experiment, params.scope)
    with Staging() as staged:
        built = staged.directory(final)
        group = open_group(built, mode="w")
        arr = create_array(
            group,
            ARRAY,
            (len(profiles), height, width),
            (1, height, width),
            np.float32,
            None,
        )
        arr[...] = np.stack(profiles)
        group.attrs.put(
            {
                "percell": {
                    "channels": list(params.corrected),
                    "method": "BaSiC (Peng et al. 2017), flat-field only",
                    "parameters": settings.to_params(),
                    "fields": [s.label for s in params.samples],
                }
            }
        )
    result = Illumination(
        scope=params.scope,
        channels=tuple(params.corrected),
        shape=(height, width),
        path=f"{STORE}/{params.scope}",
        fields=len(params.samples),
    )
    write_sentinel(sentinel, "illumination", params.scope, params, [], result)
    return result


def load_profiles(
    experiment: str | Path, scope: str, channel_names: Sequence[str]
) -> dict[int, np.ndarray]:
    """A scope's flat-fields by channel index (C of the image)."""
    group = open_group(profile_path(experiment, scope))
    names = list(attrs_of(group)["percell"]["channels"])
    data = np.asarray(array_of(group, ARRAY)[...])
    return {list(channel_names).index(n): data[i] for i, n in enumerate(names)}


def check_field_shape(
    profiles: dict[int, np.ndarray], shape: tuple[int, ...], label: str
) -> None:
    """A profile applies only to fields of its own size."""
    for profile in profiles.values():
        if profile.shape != tuple(shape):
            raise ExperimentError(
                f"{label}: the flat-field is {profile.shape[0]}x{profile.shape[1]} "
                f"px but the field is {shape[0]}x{shape[1]} px (a profile of the "
                "wrong shape; fields of one illumination scope must share a size)"
            )


def divide(plane: np.ndarray, profile: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A raw plane (or rows of it) divided by its profile, in ``dtype``."""
    return cast_to(plane.astype(np.float64) / profile, dtype)
