# Threshold runs (config `thresholds`): a mask per region and run.
if MANIFEST.thresholds:

    # Pooled scopes only: each group's histograms, then one value per scope unit.
    rule histogram:
        input:
            imported=sentinel("import"),
            pyramid=sentinel("pyramid"),
        output:
            histograms=f"{EXP}/.workflow/histogram/{{run}}/{{group}}.npz",
        log:
            "logs/histogram/{run}/{group}.log",
        benchmark:
            "benchmarks/histogram/{run}/{group}.tsv"
        conda:
            "../../envs/percell.yaml"
        threads: 1
        resources:
            mem_mb=get_resources("threshold", "mem_mb"),
            runtime=get_resources("threshold", "runtime"),
        params:
            run=get_threshold_run,
            channels=MANIFEST.channel_names,
        script:
            "../scripts/histogram.py"

    rule threshold_value:
        input:
            histograms=get_run_histograms,
            imported=get_all("import"),
        output:
            values=f"{EXP}/.workflow/threshold_value/{{run}}.json",
        log:
            "logs/threshold_value/{run}.log",
        benchmark:
            "benchmarks/threshold_value/{run}.tsv"
        localrule: True
        conda:
            "../../envs/percell.yaml"
        params:
            run=get_threshold_run,
        script:
            "../scripts/threshold_value.py"

    rule threshold:
        input:
            imported=sentinel("import"),
            pyramid=sentinel("pyramid"),
            values=get_pooled_values,
        output:
            sentinel=sentinel("threshold/{run}"),
        log:
            "logs/threshold/{run}/{group}.log",
        benchmark:
            "benchmarks/threshold/{run}/{group}.tsv"
        conda:
            "../../envs/percell.yaml"
        threads: 1
        resources:
            mem_mb=get_resources("threshold", "mem_mb"),
            runtime=get_resources("threshold", "runtime"),
        params:
            run=get_threshold_run,
            channels=MANIFEST.channel_names,
        script:
            "../scripts/threshold.py"


# Per-cell measurements (needs segmentation).
if MANIFEST.segmentation:

    rule measure:
        input:
            imported=sentinel("import"),
            segmented=sentinel("segment"),
            thresholds=get_group_thresholds,
        output:
            sentinel=sentinel("measure"),
        log:
            "logs/measure/{group}.log",
        benchmark:
            "benchmarks/measure/{group}.tsv"
        conda:
            "../../envs/percell.yaml"
        threads: 1
        resources:
            mem_mb=get_resources("measure", "mem_mb"),
            runtime=get_resources("measure", "runtime"),
        params:
            spec=MANIFEST.measure_params().to_params(),
        script:
            "../scripts/measure.py"

    rule export:
        input:
            registered=sentinel("register", "all"),
        output:
            csv=f"{EXPORT_PREFIX}_cells.csv",
            parquet=f"{EXPORT_PREFIX}_cells.parquet",
        log:
            "logs/export.log",
        benchmark:
            "benchmarks/export.tsv"
        localrule: True
        conda:
            "../../envs/percell.yaml"
        params:
            experiment=get_experiment_of_input,
        script:
            "../scripts/export.py"
