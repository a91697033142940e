# QC figures for `snakemake --report`: ordinary rules of the chain, drawn from
# the experiment's arrays and experiment.db (see percell.report).


rule qc_regions:
    input:
        pyramid=sentinel("pyramid"),
        segmented=get_group_segment,
        thresholds=get_group_thresholds,
    output:
        figures=report(
            directory(f"{QC}/regions/{{group}}"),
            patterns=["{name}.png"],
            caption="../report/region.rst",
            category="Regions",
            subcategory="{group}",
            labels={"region": "{name}"},
        ),
    log:
        log_of("qc/regions/{group}.log"),
    benchmark:
        benchmark_of("qc_regions/{group}.tsv")
    # after the chain's own jobs of the same moment: pictures fill the cores
    # that register (a single local job) leaves idle
    priority: -1
    conda:
        "../../envs/percell.yaml"
    params:
        regions=get_group_keys,
        runs=RUNS,
        experiment=get_experiment_of_input,
        # (register writes them into the images, maybe after these figures)
        colours=[c.color for c in MANIFEST.config.channels],
    script:
        "../scripts/qc_regions.py"


rule qc_experiment:
    input:
        registered=sentinel("register", "all"),
        histograms=get_qc_histograms(),
        # after every region's figures: the run summary reads their benchmarks
        regions=[f"{QC}/regions/{g}" for g in GROUPS],
    output:
        **get_qc_outputs(),
    log:
        log_of("qc/experiment.log"),
    benchmark:
        benchmark_of("qc_experiment.tsv")
    localrule: True
    conda:
        "../../envs/percell.yaml"
    params:
        spec=get_qc_params(),
        experiment=get_experiment_of_input,
    script:
        "../scripts/qc_experiment.py"
