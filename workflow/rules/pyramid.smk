rule pyramid:
    input:
        imported=sentinel("import"),
    output:
        sentinel=sentinel("pyramid"),
    log:
        log_of("pyramid/{group}.log"),
    benchmark:
        benchmark_of("pyramid/{group}.tsv")
    conda:
        "../../envs/percell.yaml"
    threads: get_resources("pyramid", "threads")
    resources:
        mem_mb=get_resources("pyramid", "mem_mb"),
        runtime=get_resources("pyramid", "runtime"),
    params:
        spec=get_pyramid_params(),
    script:
        "../scripts/pyramid.py"
