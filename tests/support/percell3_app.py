"""Drive the real PerCell 3 application (4.0.0, commit 45b84b7) on an
experiment: run by the application's own Python (``.venv-percell3``, zarr 2
and numpy 1), never imported by the tests.

    python percell3_app.py inspect EXPERIMENT OUT   # read everything, re-measure
    python percell3_app.py tag EXPERIMENT TAG CELL_ID...
    python percell3_app.py edit_labels EXPERIMENT SEGMENTATION_ID  # a cell drawn
    python percell3_app.py create EXPERIMENT        # an empty experiment
    python percell3_app.py read3 EXPERIMENT OUT RUN...  # 3.0.0 (c4330ca)

``read3`` (run by the 3.0.0 application's Python, ``.venv-percell3-v3``)
reads every region's image channels, label image and the masks of the named
threshold runs at the paths that application computes, into OUT/arrays.npz
(keys ``image|labels|mask/<condition>/[<timepoint>/]<region>[/<name>]``),
and the regions and their cell counts into OUT/report.json.

``inspect`` opens the experiment as a user of the application would and
writes to OUT: ``report.json`` (FOVs with condition, bio rep and timepoint,
fov_config, cells per FOV, the pivot's shape, the CSV export's rows, what the
batch re-measure changed, the nan_zero plugin's status) and ``arrays.npz``
(every image channel, label image and mask the application read, by FOV).
It writes into the experiment (WAL, its re-measure, the plugin's derived
FOV): run it on a copy.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import numpy as np
from percell3.core import ExperimentStore

MEASUREMENT_KEY = (
    "SELECT cell_id, channel_id, metric, scope, segmentation_id, "
    "coalesce(threshold_id, -1), value FROM measurements"
)


def measurements(path: Path) -> dict:
    conn = sqlite3.connect(path / "experiment.db")
    try:
        return {tuple(r[:6]): r[6] for r in conn.execute(MEASUREMENT_KEY)}
    finally:
        conn.close()


def inspect(path: Path, out: Path) -> None:
    from percell3.measure.batch import BatchMeasurer
    from percell3.measure.measurer import Measurer
    from percell3.plugins.registry import PluginRegistry

    out.mkdir(parents=True, exist_ok=True)
    report: dict = {}
    arrays: dict[str, np.ndarray] = {}
    with ExperimentStore.open(path) as store:
        channels = [c.name for c in store.get_channels()]
        fovs = store.get_fovs()
        report["fovs"] = [
            {
                "id": f.id,
                "name": f.display_name,
                "condition": f.condition,
                "bio_rep": f.bio_rep,
                "timepoint": f.timepoint,
                "width": f.width,
                "height": f.height,
            }
            for f in fovs
        ]
        report["config"] = {}
        report["cells"] = {}
        for f in fovs:
            config = store.get_fov_config(f.id)
            report["config"][f.display_name] = [
                [e.segmentation_id, e.threshold_id, list(e.scopes)] for e in config
            ]
            for ch in channels:
                arrays[f"image/{f.display_name}/{ch}"] = store.read_image_numpy(
                    f.id, ch
                )
            if config:
                arrays[f"labels/{f.display_name}"] = store.read_labels(
                    config[0].segmentation_id
                )
            for e in config:
                if e.threshold_id is not None:
                    arrays[f"mask/{f.display_name}/{e.threshold_id}"] = store.read_mask(
                        e.threshold_id
                    )
            report["cells"][f.display_name] = len(store.get_cells(fov_id=f.id))
        pivot = store.get_measurement_pivot()
        report["pivot"] = list(pivot.shape)
        store.export_csv(out / "export.csv")
        report["export_rows"] = (
            sum(
                1
                for line in (out / "export.csv").read_text().splitlines()
                if line and not line.startswith("#")
            )
            - 1
        )

        # the application's own measurer, over what percell measured
        before = measurements(path)
        result = BatchMeasurer().measure_experiment(store)
        measurer = Measurer()
        for f in fovs:
            for e in store.get_fov_config(f.id):
                if e.threshold_id is not None:
                    measurer.measure_fov_masked(
                        store,
                        f.id,
                        channels,
                        e.segmentation_id,
                        e.threshold_id,
                        ["mask_inside", "mask_outside"],
                    )
        after = measurements(path)
        changed = [
            (list(k), before[k], v)
            for k, v in after.items()
            if k in before and before[k] != v
        ]
        report["remeasure"] = {
            "warnings": result.warnings,
            "before": len(before),
            "after": len(after),
            "added": len(set(after) - set(before)),
            "changed": len(changed),
            "largest_change": max(
                (abs(a - b) / max(abs(b), 1e-300) for _, b, a in changed), default=0.0
            ),
            "examples": changed[:5],
        }

        registry = PluginRegistry()
        registry.discover()
        run = registry.run_plugin(
            "nan_zero",
            store,
            parameters={"fov_ids": [fovs[0].id], "channels": [channels[0]]},
        )
        report["plugin"] = {
            "nan_zero": [
                r["status"]
                for r in store.get_analysis_runs()
                if r["plugin_name"] == "nan_zero"
            ],
            "result": str(type(run).__name__),
        }
    np.savez(out / "arrays.npz", **arrays)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))


def read3(path: Path, out: Path, runs: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    report: dict = {"regions": {}}
    with ExperimentStore.open(path) as store:
        channels = [c.name for c in store.get_channels()]
        for r in store.get_regions():
            where = "/".join(
                [r.condition, *([r.timepoint] if r.timepoint else []), r.name]
            )
            report["regions"][where] = len(
                store.get_cells(
                    region=r.name, condition=r.condition, timepoint=r.timepoint
                )
            )
            for ch in channels:
                arrays[f"image/{where}/{ch}"] = store.read_image_numpy(
                    r.name, r.condition, ch, r.timepoint
                )
            arrays[f"labels/{where}"] = store.read_labels(
                r.name, r.condition, r.timepoint
            )
            for run in runs:
                arrays[f"mask/{where}/{run}"] = store.read_mask(
                    r.name, r.condition, run, r.timepoint
                )
    np.savez(out / "arrays.npz", **arrays)
    (out / "report.json").write_text(json.dumps(report, indent=1))


def edit_labels(path: Path, segmentation_id: int) -> None:
    """A cell drawn by hand in the application's label editor: a square of a
    new label, written by the application's own ``write_labels``."""
    with ExperimentStore.open(path) as store:
        labels = store.read_labels(segmentation_id)
        labels[10:30, 10:30] = labels.max() + 1
        store.write_labels(labels, segmentation_id)


def tag(path: Path, name: str, cell_ids: list[int]) -> None:
    with ExperimentStore.open(path) as store:
        store.add_tag(name)
        store.tag_cells(cell_ids, name)


if __name__ == "__main__":
    action, experiment = sys.argv[1], Path(sys.argv[2])
    if action == "inspect":
        inspect(experiment, Path(sys.argv[3]))
    elif action == "create":
        ExperimentStore.create(experiment, name="empty").close()
    elif action == "read3":
        read3(experiment, Path(sys.argv[3]), sys.argv[4:])
    elif action == "edit_labels":
        edit_labels(experiment, int(sys.argv[3]))
    elif action == "tag":
        tag(experiment, sys.argv[3], [int(c) for c in sys.argv[4:]])
    else:
        raise SystemExit(f"unknown action {action}")
