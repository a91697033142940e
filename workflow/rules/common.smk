# Validation, the manifest of region groups, paths and input functions.
# Everything beyond building paths lives in the percell package.
import percell.demo
import percell.manifest
from percell import layout

MANIFEST = percell.manifest.build_manifest(config)
EXP = MANIFEST.experiment
GROUPS = sorted(MANIFEST.groups)


wildcard_constraints:
    group="|".join(re.escape(g) for g in GROUPS),
    region="[A-Za-z0-9][A-Za-z0-9._-]*",


def sentinel(step, group="{group}"):
    return layout.sentinel_path(EXP, step, group)


def get_final_output():
    return [sentinel("register", "all")]


def get_sources(wildcards):
    return MANIFEST.source_files(wildcards.group)


def get_import_params(wildcards):
    return MANIFEST.import_params(wildcards.group)


def get_all(step):
    return [sentinel(step, g) for g in GROUPS]


def get_resources(step, key):
    return config[step]["resources"][key]


def get_demo_outputs():
    demo = config["input"]["demo"]
    return [
        f"{demo['directory']}/{{group}}/{{region}}_{name}.tif"
        for name in MANIFEST.channel_names
    ]


def get_demo_params(wildcards):
    return percell.demo.demo_region_params(
        config["input"]["demo"],
        wildcards.group,
        wildcards.region,
        MANIFEST.channel_names,
    )


def get_experiment(wildcards, output):
    return layout.experiment_of_sentinel(output.sentinel)


def get_model_sentinel():
    seg = MANIFEST.segmentation
    if seg and seg["method"] == "cellpose":
        return [sentinel("model", "segmentation")]
    return []


def get_segment_sentinels():
    return get_all("segment") if MANIFEST.segmentation else []
