rule pyramid:
    input:
        imported=sentinel("import"),
    output:
        sentinel=sentinel("pyramid"),
    log:
        "logs/pyramid/{group}.log",
    benchmark:
        "benchmarks/pyramid/{group}.tsv"
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
