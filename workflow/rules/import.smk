if SCOPES:

    # Flat-fields of each scope (a plate, or a condition), fitted on a sample
    # of its raw fields before any of its regions is imported.
    rule illumination:
        input:
            get_illumination_files,
        output:
            sentinel=sentinel("illumination", "{scope}"),
        log:
            log_of("illumination/{scope}.log"),
        benchmark:
            benchmark_of("illumination/{scope}.tsv")
        conda:
            "../../envs/percell.yaml"
        threads: 1
        resources:
            mem_mb=get_resources("import", "mem_mb"),
            runtime=get_resources("import", "runtime"),
        params:
            spec=get_illumination_params,
        script:
            "../scripts/illumination.py"


rule import_images:
    input:
        get_sources,
        illumination=get_group_illumination,
    output:
        sentinel=sentinel("import"),
    log:
        log_of("import/{group}.log"),
    benchmark:
        benchmark_of("import/{group}.tsv")
    conda:
        "../../envs/percell.yaml"
    threads: get_resources("import", "threads")
    resources:
        mem_mb=get_resources("import", "mem_mb"),
        runtime=get_resources("import", "runtime"),
    params:
        spec=get_import_params,
    script:
        "../scripts/import_images.py"
