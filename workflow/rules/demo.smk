# Synthetic raw images, made only when the config asks for a demo.
if MANIFEST.generated and MANIFEST.config.input.demo:

    rule demo_region:
        output:
            tiffs=get_demo_outputs(),
        log:
            "logs/demo/{group}/{region}.log",
        benchmark:
            "benchmarks/demo/{group}/{region}.tsv"
        conda:
            "../envs/percell.yaml"
        params:
            spec=get_demo_params,
        script:
            "../scripts/demo_region.py"


if MANIFEST.generated and MANIFEST.config.input.plate:

    rule demo_well:
        output:
            tiffs=get_plate_demo_outputs(),
        log:
            "logs/demo/{well}.log",
        benchmark:
            "benchmarks/demo/{well}.tsv"
        conda:
            "../envs/percell.yaml"
        params:
            plate=get_plate().to_params(),
            channels=len(MANIFEST.channel_names),
        script:
            "../scripts/demo_well.py"
