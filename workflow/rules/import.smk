rule import_images:
    input:
        get_sources,
    output:
        sentinel=sentinel("import"),
    log:
        "logs/import/{group}.log",
    benchmark:
        "benchmarks/import/{group}.tsv"
    conda:
        "../envs/percell.yaml"
    threads: get_resources("import", "threads")
    resources:
        mem_mb=get_resources("import", "mem_mb"),
        runtime=get_resources("import", "runtime"),
    params:
        spec=get_import_params,
    script:
        "../scripts/import_images.py"
