"""The demo's names: which regions and files a demo config stands for.

The planner needs only these (the sample sheet of the demo, the file names
of a demo plate); drawing the images is ``percell.demo``'s job, done by the
demo rules.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from percell.contracts import DemoInput, DemoRegionParams, PlateDemo, PlateInput
from percell.plate_files import split_well

if TYPE_CHECKING:  # the sheet's pandas loads where the planner builds it: the
    import pandas as pd  # demo's drawing jobs, which import these names, never do


def demo_path(
    directory: str, condition: str, timepoint: str | None, region: str, channel: str
) -> str:
    """Where the demo writes one channel of one region."""
    sub = f"{condition}/{timepoint}" if timepoint else condition
    return f"{directory}/{sub}/{region}_{channel}.tif"


def demo_size(
    demo: DemoInput, condition: str, timepoint: str | None, region: str
) -> int:
    """Edge length of a demo region: the very first region is the large one."""
    first = (
        demo.conditions[0],
        (demo.timepoints or (None,))[0],
        demo.regions[0],
    )
    return demo.large_size if (condition, timepoint, region) == first else demo.size


def demo_sheet(demo: DemoInput, channels: Sequence[str]) -> pd.DataFrame:
    """The sample sheet of the demo experiment described by config ``demo``."""
    import pandas as pd

    from percell.sheets import COLUMNS

    rows = []
    for cond in demo.conditions:
        for tp in demo.timepoints or (None,):
            for region in demo.regions:
                for ch in channels:
                    rows.append(
                        {
                            "condition": cond,
                            "timepoint": tp,
                            "region": region,
                            "channel": ch,
                            "z": None,
                            "path": demo_path(demo.directory, cond, tp, region, ch),
                        }
                    )
    return pd.DataFrame(rows, columns=COLUMNS)


def region_seed(seed: int, *parts: str | None) -> int:
    """A stable per-region seed (Python's hash() changes between runs)."""
    return zlib.crc32("/".join(p or "" for p in parts).encode()) ^ seed


def demo_region_params(
    demo: DemoInput, group: str, region: str, channels: Sequence[str]
) -> DemoRegionParams:
    """Size, seed and signal strength of one demo region (its rule's params)."""
    condition, _, timepoint = group.partition("/")
    cond_index = demo.conditions.index(condition)
    return DemoRegionParams(
        size=demo_size(demo, condition, timepoint or None, region),
        seed=region_seed(demo.seed, condition, timepoint, region),
        # the second condition doubles the cytoplasmic signal: a visible effect
        signal_scale=1.0 + cond_index,
        channels=tuple(channels),
        **({"vignette": demo.vignette} if demo.vignette else {}),
    )


def plate_demo_name(
    demo: PlateDemo, well: str, field: int, channel: int, z: int
) -> str:
    """Relative MetaXpress-style name of one demo file (0-based channel, z):
    ``[ZStep_<z>/]<well>_s<field>_w<channel>.tif``, numbered from 1."""
    sub = f"ZStep_{z + 1}/" if demo.z > 1 else ""
    return f"{sub}{well}_s{field}_w{channel + 1}.tif"


def plate_demo_files(plate: PlateInput, n_channels: int) -> dict[str, list[str]]:
    """Relative file names of each demo well (see ``plate_demo_name``)."""
    demo, grid = plate.demo, plate.grid
    if demo is None or grid is None:
        raise ValueError(f"plate {plate.name} is not a demo plate on a grid")
    n_fields = grid.rows * grid.columns
    return {
        well: [
            plate_demo_name(demo, well, f, c, z)
            for z in range(demo.z)
            for f in range(1, n_fields + 1)
            for c in range(n_channels)
        ]
        for well in demo.wells
    }


def plate_demo_condition(demo: PlateDemo, well: str) -> str:
    """A demo well's condition: alternating by plate column."""
    column = int(split_well(well)[1])
    return demo.conditions[column % len(demo.conditions)]
