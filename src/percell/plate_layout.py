"""The plate's layout: rows and columns, the plate map, and the NGFF 0.4
plate and well metadata (the layout Fractal uses, seed 001).

``images.zarr/<plate>`` is an NGFF plate, ``<plate>/<row>/<column>`` a well,
and the well's image ``0`` (``1``, ``2``… for further acquisitions, i.e.
timepoints) its fields stitched into one image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from percell.contracts import Region
from percell.errors import ConfigError
from percell.names import check_name
from percell.ngff import NGFF_VERSION
from percell.plate_files import split_well

if TYPE_CHECKING:
    import pandas as pd


def row_index(row: str) -> int:
    """ "A" → 0, "Z" → 25, "AA" → 26 (1536-well plates)."""
    index = 0
    for ch in row:
        index = index * 26 + (ord(ch) - ord("A") + 1)
    return index - 1


def row_name(index: int) -> str:
    name = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        name = chr(ord("A") + rem) + name
    return name


def read_plate_map(path: str | Path) -> dict[str, str]:
    """Plate map CSV/TSV (columns well, condition) → well ("B03") → condition."""
    path = Path(path)
    df = read_table(path, "plate map", ("well", "condition"))
    out: dict[str, str] = {}
    for i, row in enumerate(df.itertuples(), start=2):
        try:
            well = "".join(split_well(row.well))
        except ConfigError as exc:
            raise ConfigError(f"plate map {path}, line {i}: {exc}") from None
        if well in out:
            raise ConfigError(f"plate map {path}, line {i}: well {well} appears twice")
        try:
            check_name(row.condition.strip(), "condition")
        except ConfigError as exc:
            raise ConfigError(f"plate map {path}, line {i}: {exc}") from None
        out[well] = row.condition.strip()
    return out


def read_plate_bio_reps(path: str | Path) -> dict[str, str]:
    """The plate map's optional ``bio_rep`` column: well → biological
    replicate, for the wells that name one."""
    path = Path(path)
    df = read_table(path, "plate map", ("well", "condition"))
    if "bio_rep" not in df.columns:
        return {}
    out: dict[str, str] = {}
    for i, row in enumerate(df.itertuples(), start=2):
        rep = row.bio_rep.strip()
        if rep:
            out["".join(split_well(row.well))] = check_name(
                rep, "bio_rep", f"plate map {path}, line {i}"
            )
    return out


def plate_attrs(name: str, regions: Sequence[Region]) -> dict[str, Any]:
    """``.zattrs`` of the plate group: rows A.. and columns 01.. up to the
    last used, every imaged well, and one acquisition per timepoint."""
    placed = [(r, r.well) for r in regions if r.well is not None]
    wells = sorted(
        {(w.row, w.column) for _, w in placed},
        key=lambda rc: (row_index(rc[0]), rc[1]),
    )
    n_rows = max(row_index(r) for r, _ in wells) + 1
    n_cols = max(int(c) for _, c in wells)
    acquisitions = {}
    for r, w in placed:
        acquisitions[w.acquisition] = r.timepoint or name
    return {
        "plate": {
            "version": NGFF_VERSION,
            "name": name,
            "rows": [{"name": row_name(i)} for i in range(n_rows)],
            "columns": [{"name": f"{i:02d}"} for i in range(1, n_cols + 1)],
            "wells": [
                {
                    "path": f"{row}/{col}",
                    "rowIndex": row_index(row),
                    "columnIndex": int(col) - 1,
                }
                for row, col in wells
            ],
            "acquisitions": [
                {"id": i, "name": acquisitions[i]} for i in sorted(acquisitions)
            ],
            "field_count": 1,
        }
    }


def well_attrs(regions: Sequence[Region]) -> dict[str, Any]:
    """``.zattrs`` of a well group: its image per acquisition."""
    acqs = sorted({r.well.acquisition for r in regions if r.well is not None})
    return {
        "well": {
            "version": NGFF_VERSION,
            "images": [{"path": str(a), "acquisition": a} for a in acqs],
        }
    }


def read_table(path: Path, what: str, columns: tuple[str, ...]) -> pd.DataFrame:
    """A CSV (or TSV) as strings, with lower-case column names; refused with
    a message naming the file when it or one of ``columns`` is missing."""
    if not path.is_file():
        raise ConfigError(f"{what} {path} not found")
    import pandas as pd  # here, not at the top: import jobs stay small

    sep = "\t" if path.suffix.lower() in (".tsv", ".txt") else ","
    df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    df.columns = [c.strip().lower() for c in df.columns]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ConfigError(
            f"{what} {path}: missing column(s) {missing}; expected {', '.join(columns)}"
        )
    return df
