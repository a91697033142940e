# percell: raw fluorescence microscopy -> a PerCell 3 experiment.
# Thin entry point: config, includes, the final target. See README.md.
from snakemake.utils import min_version

import percell.config
import percell.errors

min_version("9.0")


report: "workflow/report/workflow.rst"


# the demo config, unless --configfile names another: Snakemake would merge
# the two, mixing e.g. the demo's input with the user's
if not workflow.overwrite_configfiles:
    # read first for a message naming the line (a --configfile is read by
    # Snakemake's command line, before this file)
    try:
        percell.config.read_config_file("config/config.yaml")
    except percell.errors.ConfigError as exc:
        sys.exit(f"percell: {exc}")

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/import.smk"
include: "workflow/rules/pyramid.smk"
include: "workflow/rules/segment.smk"
include: "workflow/rules/threshold.smk"
include: "workflow/rules/register.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
