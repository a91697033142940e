"""Microscope vendors' files and OME-Zarr, read through bioio.

TIFF and OME-TIFF stay with tifffile (``sources``): it reads bands of rows
without decoding whole planes. CZI (Zeiss), ND2 (Nikon), LIF (Leica) and
OME-Zarr images are probed with bioio and the plugin for their format, each
an optional extra of percell, and read in bounded pieces: a CZI by bands
through libCZI, an OME-Zarr by its chunks, the others plane by plane. A file
may hold several scenes (positions, series, a plate's fields) and
timepoints; a sheet row picks one of each.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from percell import remote
from percell.errors import SourceImageError
from percell.source_info import SUPPORTED_DTYPES, SourceInfo, file_channel_names

#: file suffix -> (bioio plugin module, percell extra that installs it)
PLUGINS = {
    ".czi": ("bioio_czi", "czi"),
    ".nd2": ("bioio_nd2", "nd2"),
    ".lif": ("bioio_lif", "lif"),
    ".zarr": ("bioio_ome_zarr", "ome-zarr"),
}


def is_vendor_file(path: str | Path) -> bool:
    """Whether ``path`` is read through bioio (by its suffix)."""
    return Path(path).suffix.lower() in PLUGINS


def _open(path: str | Path, suffix: str | None = None) -> Any:
    """The file as a ``bioio.BioImage`` read by its format's plugin (chosen
    by ``suffix``, default the path's own).

    Raises:
        SourceImageError: the plugin is not installed (naming the extra),
            or the file cannot be opened.
    """
    suffix = suffix or Path(path).suffix.lower()
    module, extra = PLUGINS[suffix]
    if importlib.util.find_spec(module) is None or not importlib.util.find_spec(
        "bioio"
    ):
        raise SourceImageError(
            f"{path}: reading {suffix} files needs the bioio plugin "
            f"{module.replace('_', '-')}, which is not installed: "
            f"pip install 'percell[{extra}]'"
        )
    from bioio import BioImage

    if suffix == ".czi":
        reader = _czi_reader()
    else:
        reader = importlib.import_module(module).Reader
    options: dict[str, Any] = {}
    if remote.is_url(path):
        if suffix == ".zarr":  # read by its chunks, where it is
            options["fs_kwargs"] = remote.fs_kwargs(str(path))
        else:  # the plugin needs a file
            path = remote.local_copy(str(path))
    try:
        return BioImage(path, reader=reader, **options)
    except Exception as exc:  # the plugins raise many types on corrupt files
        raise SourceImageError(
            f"{path}: not a readable {suffix} file ({type(exc).__name__}: {exc})"
        ) from None


@functools.cache
def _czi_reader() -> type:
    """bioio-czi's libCZI reader, which finds scenes where libCZI does (in
    the subblocks), naming a scene by its index (``Image:<index>``, as
    bioio does) where the file's metadata lacks Zen's scene list.
    (bioio-czi's default reader, aicspylibczi, then reports one scene and
    reads only the first; its libCZI reader refuses the file.)"""
    from bioio_czi.metadata import generate_ome_image_id
    from bioio_czi.pylibczirw_reader.reader import Reader

    class SceneIndexedReader(Reader):
        @property
        def scenes(self) -> tuple[str, ...]:
            if self._scenes is None:
                try:
                    return tuple(super().scenes)
                except Exception:  # no scene list: bioio's names by index
                    self._scenes = tuple(
                        generate_ome_image_id(i) for i in self._czi_scene_indices
                    )
            return tuple(self._scenes)

    return SceneIndexedReader


@functools.lru_cache(maxsize=8)
def plate_images(path: str) -> tuple[str, ...] | None:
    """The images of an NGFF plate (``row/column/field`` paths, in the
    plate's well order), or None where ``path`` is not a plate. bioio reads
    one image at a time, so each field of a plate is a scene here. Kept
    for the process: every field's probe asks, and the answer reads every
    well's metadata."""
    if Path(path).suffix.lower() != ".zarr":
        return None
    if not remote.is_url(path) and not Path(path).is_dir():
        return None
    import zarr

    def ngff(attrs: Any, key: str) -> Any:  # NGFF 0.4 at the top, 0.5 under "ome"
        return attrs.get(key) or attrs.get("ome", {}).get(key)

    try:
        if remote.is_url(path):
            store = zarr.storage.FsspecStore.from_url(
                path, storage_options=remote.fs_kwargs(path), read_only=True
            )
            root = zarr.open_group(store, mode="r")
        else:
            root = zarr.open_group(str(path), mode="r")
        plate = ngff(root.attrs, "plate")
        if not plate:
            return None
        images = []
        for well in plate["wells"]:
            for image in ngff(root[well["path"]].attrs, "well")["images"]:
                images.append(f"{well['path']}/{image['path']}")
    except Exception as exc:
        raise SourceImageError(
            f"{path}: an NGFF plate whose wells cannot be read "
            f"({type(exc).__name__}: {exc})"
        ) from None
    return tuple(images)


def find_scene(scenes: Sequence[str], scene: str) -> str | None:
    """The scene a sheet names: by name, else by index (digits), else None."""
    if scene in scenes:
        return scene
    if scene.isdigit() and int(scene) < len(scenes):
        return scenes[int(scene)]
    return None


def _choose(path: str, scenes: Sequence[str], scene: str | None) -> str:
    """The scene a row asks for (a name, or an index as digits); a row may
    leave it out only where the file holds one scene."""
    if scene is None:
        if len(scenes) > 1:
            raise SourceImageError(
                f"{path}: holds {len(scenes)} scenes ({', '.join(scenes)}); "
                "give each region's scene in the sample sheet's scene column "
                "(a name, or an index from 0)"
            )
        return scenes[0]
    found = find_scene(scenes, scene)
    if found is not None:
        return found
    raise SourceImageError(
        f"{path}: no scene {scene!r}; the file holds "
        f"{', '.join(scenes)} (or indices 0..{len(scenes) - 1})"
    )


def _open_scene(path: str, scene: str | None) -> tuple[Any, str, int]:
    """The image of one scene of a file, that scene's name and index."""
    if not remote.is_url(path) and not Path(path).exists():
        raise SourceImageError(f"{path}: file not found")
    images = plate_images(path)
    if images is not None:
        chosen = _choose(path, images, scene)
        return _open(f"{path}/{chosen}", ".zarr"), chosen, images.index(chosen)
    image = _open(path)
    try:
        scenes = [str(s) for s in image.scenes]
    except Exception as exc:
        raise SourceImageError(
            f"{path}: its scenes cannot be read ({type(exc).__name__}: {exc})"
        ) from None
    chosen = _choose(path, scenes, scene)
    if chosen != str(image.current_scene):
        image.set_scene(chosen)
    return image, chosen, scenes.index(chosen)


def file_contents(path: str) -> tuple[tuple[str, int], ...]:
    """Each scene of a vendor file with its number of timepoints."""
    images = plate_images(path)
    out = []
    try:
        if images is None:  # one file, its scenes selected in turn
            image = _open_scene(path, "0")[0]
            for scene in [str(s) for s in image.scenes]:
                image.set_scene(scene)
                out.append((scene, int(image.dims.T)))
        else:  # a plate: each field is an image of its own
            for scene in images:
                out.append((scene, int(_open(f"{path}/{scene}", ".zarr").dims.T)))
    except SourceImageError:
        raise
    except Exception as exc:
        raise SourceImageError(
            f"{path}: its scenes cannot be read ({type(exc).__name__}: {exc})"
        ) from None
    return tuple(out)


def probe_vendor(path: str, multichannel: bool, scene: str | None) -> SourceInfo:
    """What the importer needs of one scene of a vendor file or OME-Zarr."""
    image, chosen, index = _open_scene(path, scene)
    try:
        dims = image.dims
        samples = int(dims.S) if "S" in dims.order else 1
        dtype = np.dtype(image.dtype)
        names = file_channel_names([str(c) for c in image.channel_names or ()])
        sizes = image.physical_pixel_sizes
    except Exception as exc:
        raise SourceImageError(
            f"{path}: its metadata cannot be read ({type(exc).__name__}: {exc})"
        ) from None
    n_c, n_z = int(dims.C), int(dims.Z)
    where = f"{path}: scene {chosen}"
    if samples > 1:
        raise SourceImageError(
            f"{where} is a colour (RGB) image; percell reads "
            "fluorescence channels, one grey value per pixel"
        )
    _refuse_what_percell_does_not_model(where, dims, sizes)
    if dtype.str not in SUPPORTED_DTYPES:
        raise SourceImageError(
            f"{path}: unsupported pixel type {dtype} (expected one of uint8, "
            "uint16, uint32, int8, int16, int32, float32, float64)"
        )
    _decode_a_piece(where, image)
    axes = ("C" if n_c > 1 or multichannel else "") + ("Z" if n_z > 1 else "") + "YX"
    lengths = {"C": n_c, "Z": n_z, "Y": int(dims.Y), "X": int(dims.X)}
    return SourceInfo(
        path=path,
        axes=axes,
        shape=tuple(lengths[a] for a in axes),
        dtype=dtype.str,
        pixel_size_um=float(sizes.X) if sizes.X else None,
        z_step_um=float(sizes.Z) if sizes.Z and n_z > 1 else None,
        stored_axes=axes,
        scene=chosen,
        scene_index=index,
        channel_names=names,
        timepoints=int(dims.T),
    )


#: the axes percell models (S: samples of an RGB pixel, refused above)
MODELLED_AXES = "TCZYXS"


def _refuse_what_percell_does_not_model(where: str, dims: Any, sizes: Any) -> None:
    """Acquisitions that would otherwise be imported as something else: an
    extra axis (a spectral λ sweep, a rotation, a mosaic index), XZ or XT
    line scans (one row per plane), pixels that are not square."""
    percell_reads = "percell reads XY images (with channels, Z and timepoints)"
    for axis in str(dims.order):
        if axis not in MODELLED_AXES and int(getattr(dims, axis, 1) or 1) > 1:
            what = "a spectral (lambda) sweep" if axis in "Lλ" else "an axis"
            raise SourceImageError(
                f"{where} holds {what} {axis!r} of {getattr(dims, axis)} "
                f"(its axes: {dims.order} = {dims.shape}); {percell_reads}"
            )
    if int(dims.Y) == 1 and int(dims.X) > 1:
        raise SourceImageError(
            f"{where}: each plane is 1 row of {int(dims.X)} px (an XZ or XT line "
            f"scan, {int(dims.Z)} z and {int(dims.T)} t); {percell_reads}"
        )
    x, y = sizes.X, sizes.Y
    if x and y and abs(x - y) > 1e-6 * max(x, y):
        raise SourceImageError(
            f"{where}: its pixels are {x:g} um wide and {y:g} um tall; percell "
            "holds square pixels (one pixel_size_um for X and Y)"
        )


def _decode_a_piece(where: str, image: Any) -> None:
    """Decode the first rows of the first plane (one chunk, at most a
    plane): a file whose header reads but whose pixels the installed reader
    cannot decode is refused now, not inside an import job."""
    try:
        lazy = image.get_image_dask_data("YX", T=0, C=0, Z=0)
        np.asarray(lazy[: min(16, lazy.shape[0]), : min(16, lazy.shape[1])].compute())
    except Exception as exc:
        version = _reader_version(image)
        raise SourceImageError(
            f"{where}: the installed reader{version} cannot decode its pixels "
            f"({type(exc).__name__}: {exc})"
        ) from None


def _reader_version(image: Any) -> str:
    """' (bioio-czi 3.0.1)': the plugin that opened the file, if known."""
    from importlib import metadata

    mro = type(getattr(image, "reader", image)).__mro__
    modules = [c.__module__.split(".")[0] for c in mro]
    name = next((m for m in modules if m != "percell"), "").replace("_", "-")
    try:
        return f" ({name} {metadata.version(name)})"
    except (metadata.PackageNotFoundError, ValueError):
        return ""


#: planes a reader keeps: the importer's z chunk, read band by band in turn
KEEP_PLANES = 10


class VendorReader:
    """Rows of one plane of a vendor file's scene.

    Where the plugin's lazy array is chunked along rows (OME-Zarr), a band
    reads only its chunks. Where a chunk is a whole plane (CZI, ND2, LIF),
    the last planes read are kept: the importer asks for a band of rows of
    each z plane of a chunk in turn, then for the next band (one plane for a
    2-D image, at most ``KEEP_PLANES`` for a stack)."""

    def __init__(self, info: SourceInfo) -> None:
        self.info = info
        self._planes: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._keep = max(1, min(KEEP_PLANES, info.size("Z")))
        self._lock = threading.Lock()
        self._image: Any = None

    def __enter__(self) -> VendorReader:
        self._image = _open_scene(self.info.path, self.info.scene)[0]
        return self

    def __exit__(self, *exc: object) -> None:
        self._planes.clear()
        self._image = None

    def read(self, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        """Rows ``y0:y1`` of channel ``c``, plane ``z`` (indices in the file)."""
        try:
            with self._lock:
                plane = self._planes.get((c, z))
                if plane is not None:
                    self._planes.move_to_end((c, z))
                    return plane[y0:y1]
                lazy = self._image.get_image_dask_data(
                    "YX", T=self.info.t or 0, C=c, Z=z
                )
                if len(lazy.chunks[0]) > 1:  # chunked rows (OME-Zarr): the band's
                    return np.asarray(lazy[y0:y1].compute())
                plane = np.asarray(lazy.compute())
                self._planes[(c, z)] = plane
                if len(self._planes) > self._keep:
                    self._planes.popitem(last=False)
                return plane[y0:y1]
        except Exception as exc:
            raise SourceImageError(
                f"{self.info.path}: reading channel {c}, z {z} of scene "
                f"{self.info.scene} failed ({type(exc).__name__}: {exc})"
            ) from None


class CziBandReader:
    """Rows of one plane of a CZI scene, read as a region of interest by
    Zeiss's libCZI (pylibczirw, which bioio-czi installs): a band decodes only
    the subblocks it touches, so memory follows the band, as for a TIFF.
    bioio still probes the file (scenes, channels, pixel size)."""

    def __init__(self, info: SourceInfo) -> None:
        self.info = info
        self._lock = threading.Lock()
        self._stack: Any = None
        self._czi: Any = None
        self._scene: int | None = None
        self._x = self._y = 0

    def __enter__(self) -> CziBandReader:
        from contextlib import ExitStack

        from pylibCZIrw import czi as pyczi

        self._stack = ExitStack()
        try:
            path = self.info.path
            if remote.is_url(path):
                path = str(remote.local_copy(path))
            self._czi = self._stack.enter_context(pyczi.open_czi(path))
            rects = self._czi.scenes_bounding_rectangle
            if rects:  # the scene's place in the file's coordinates
                self._scene = sorted(rects)[self.info.scene_index or 0]
                rect = rects[self._scene]
            else:
                rect = self._czi.total_bounding_rectangle
            self._x, self._y = rect.x, rect.y
        except Exception as exc:
            self._stack.close()
            raise SourceImageError(
                f"{self.info.path}: cannot be opened by libCZI "
                f"({type(exc).__name__}: {exc})"
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def read(self, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        """Rows ``y0:y1`` of channel ``c``, plane ``z`` (indices in the file)."""
        roi = (self._x, self._y + y0, self.info.width, y1 - y0)
        plane = {"C": c, "Z": z, "T": self.info.t or 0}
        try:
            with self._lock:
                band = self._czi.read(roi=roi, plane=plane, scene=self._scene)
        except Exception as exc:
            raise SourceImageError(
                f"{self.info.path}: reading rows {y0}-{y1} of channel {c}, z {z} "
                f"failed ({type(exc).__name__}: {exc})"
            ) from None
        return np.ascontiguousarray(band[..., 0], dtype=self.info.dtype)


def open_vendor(info: SourceInfo) -> VendorReader | CziBandReader:
    """The reader of a vendor file's scene: libCZI's bands for a CZI, bioio's
    planes for the rest."""
    if Path(info.path).suffix.lower() == ".czi" and importlib.util.find_spec(
        "pylibCZIrw"
    ):
        return CziBandReader(info)
    return VendorReader(info)
