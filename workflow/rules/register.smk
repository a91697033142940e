rule hierarchy:
    output:
        sentinel=sentinel("hierarchy", "all"),
    log:
        log_of("hierarchy.log"),
    benchmark:
        benchmark_of("hierarchy.tsv")
    localrule: True
    conda:
        "../../envs/percell.yaml"
    params:
        spec=MANIFEST.hierarchy_params().to_params(),
    script:
        "../scripts/hierarchy.py"


rule register:
    input:
        imported=get_all("import"),
        pyramids=get_all("pyramid"),
        segmented=get_segment_sentinels(),
        thresholds=get_all_thresholds(),
        measured=get_measure_sentinels(),
        hierarchy=sentinel("hierarchy", "all"),
    output:
        sentinel=sentinel("register", "all"),
    log:
        log_of("register.log"),
    benchmark:
        benchmark_of("register.tsv")
    localrule: True
    conda:
        "../../envs/percell.yaml"
    resources:
        mem_mb=get_resources("register", "mem_mb"),
        runtime=get_resources("register", "runtime"),
    params:
        spec=MANIFEST.register_params().to_params(),
    script:
        "../scripts/register.py"
