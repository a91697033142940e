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
            log_of("histogram/{run}/{group}.log"),
        benchmark:
            benchmark_of("histogram/{run}/{group}.tsv")
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
            log_of("threshold_value/{run}.log"),
        benchmark:
            benchmark_of("threshold_value/{run}.tsv")
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
            log_of("threshold/{run}/{group}.log"),
        benchmark:
            benchmark_of("threshold/{run}/{group}.tsv")
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
            log_of("measure/{group}.log"),
        benchmark:
            benchmark_of("measure/{group}.tsv")
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
            log_of("export.log"),
        benchmark:
            benchmark_of("export.tsv")
        localrule: True
        conda:
            "../../envs/percell.yaml"
        params:
            experiment=get_experiment_of_input,
        script:
            "../scripts/export.py"
