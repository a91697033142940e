"""The PerCell 3 experiment formats: schema 3.0.0 (the seeds', the
application up to February 2026) and 4.0.0 (the application since March
2026), one interface (``ExperimentFormat``) with one writer each.

The chain up to measure does not depend on the format; register asks the
experiment's format where regions, segmentations, thresholds and their
measurements go, and the format makes the paths its application reads.
Readers inside percell (the export, the QC report) read either format
through ``connect_for_reading``, which shows a 4.0.0 database under the
3.0.0 names.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from percell import layout
from percell.errors import ConfigError
from percell.experiment_format.base import DEFAULT_BIO_REP, ExperimentFormat
from percell.experiment_format.v3 import V3
from percell.experiment_format.v4 import V4

__all__ = [
    "DEFAULT",
    "DEFAULT_BIO_REP",
    "FORMATS",
    "ExperimentFormat",
    "application_label_view",
    "check_configured",
    "connect_for_reading",
    "get",
    "stored_version",
]

FORMATS: dict[str, type[ExperimentFormat]] = {"3.0.0": V3, "4.0.0": V4}
DEFAULT = "3.0.0"


def get(version: str, z_projection: str | None = None) -> ExperimentFormat:
    """The writer of format ``version`` (a fresh one per register run);
    ``z_projection``: how 4.0.0 projects Z-stacks for its application."""
    if version == "4.0.0":
        return V4(z_projection)
    return FORMATS[version]()


def major(version: str) -> str:
    return version.split(".")[0]


def same_major(a: str, b: str) -> bool:
    """Whether two schema versions are one format (the application checks
    the major version only)."""
    return major(a) == major(b)


def stored_version(experiment: str | Path) -> str | None:
    """``experiments.percell_version`` of an existing experiment, read
    without writing anything; None where there is no database (or no row)."""
    path = Path(experiment) / layout.DATABASE
    if not path.is_file():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute(
            "SELECT percell_version FROM experiments ORDER BY id LIMIT 1"
        ).fetchone()
    except sqlite3.OperationalError:  # no experiments table yet
        return None
    finally:
        conn.close()
    return None if row is None else str(row[0])


def application_label_view(experiment: str | Path, key: str) -> Path | None:
    """The label group the application reads (and edits) for region ``key``
    where it is a view of the workflow's (a 4.0.0 FOV's ``seg_<id>``, a
    3.0.0 plate well's ``<condition>/<region>``); None where the application
    reads the workflow's own group, or there is no database yet. Read-only."""
    version = stored_version(experiment)
    if version is None:
        return None
    fmt = next(f() for v, f in FORMATS.items() if same_major(v, version))
    path = Path(experiment) / layout.DATABASE
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return fmt.label_view_of(Path(experiment), conn, key)
    except sqlite3.OperationalError:  # (a database of an older percell)
        return None
    finally:
        conn.close()


def check_configured(experiment: str | Path, configured: str, source: str) -> None:
    """Refuse a run whose ``experiment.format`` is not the existing
    experiment's: the workflow never converts an experiment silently."""
    stored = stored_version(experiment)
    if stored is None or same_major(stored, configured):
        return
    advice = (
        f"To carry it to {configured}, run `percell upgrade {experiment}` "
        "(in place, atomic; every cell id, tag and measurement kept)"
        if major(configured) == "4" and major(stored) == "3"
        else f"percell cannot convert a {stored} experiment to {configured}"
    )
    raise ConfigError(
        f"{source}: experiment.format is {configured!r}, but the experiment "
        f"{experiment} is schema {stored}. {advice}; or set experiment.format: "
        f'"{stored}" to go on in its own format. Nothing was changed.'
    )


#: A 4.0.0 database under the 3.0.0 names the readers use (temporary views
#: of this connection only; the file is opened read-only).
_V4_AS_V3 = """
CREATE TEMP VIEW regions AS SELECT f.id, p.region AS name, f.condition_id,
    f.timepoint_id, f.width, f.height, f.pixel_size_um, f.source_file, p.zarr_path
    FROM main.fovs f JOIN main.percell_fovs p ON p.fov_id = f.id;
CREATE TEMP VIEW cells AS SELECT *, fov_id AS region_id FROM main.cells;
CREATE TEMP VIEW measurements AS SELECT * FROM main.measurements
    WHERE scope = 'whole_cell' AND threshold_id IS NULL;
CREATE TEMP VIEW threshold_runs AS SELECT t.id, c.id AS channel_id, t.method,
    t.parameters, t.threshold_value, t.created_at
    FROM main.thresholds t LEFT JOIN main.channels c ON c.name = t.source_channel;
CREATE TEMP VIEW segmentation_runs AS SELECT s.id, c.id AS channel_id,
    s.model_name, s.parameters, s.cell_count, s.created_at
    FROM main.segmentations s LEFT JOIN main.channels c ON c.name = s.source_channel;
"""


def connect_for_reading(path: str | Path) -> sqlite3.Connection:
    """A read-only connection to ``experiment.db`` at ``path`` in which
    either format reads under the 3.0.0 names (``regions``, ``cells.region_id``,
    ``segmentation_runs``, ``threshold_runs``, whole-cell ``measurements``)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    row = conn.execute(
        "SELECT percell_version FROM experiments ORDER BY id LIMIT 1"
    ).fetchone()
    if row is not None and same_major(str(row[0]), V4.version):
        conn.executescript(_V4_AS_V3)
    return conn
