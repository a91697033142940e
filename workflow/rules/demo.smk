# Synthetic raw images, made only when the config asks for a demo.
if MANIFEST.generated and MANIFEST.config.input.demo:

    rule demo_region:
        output:
            tiffs=get_demo_outputs(),
        log:
            log_of("demo/{group}/{region}.log"),
        benchmark:
            benchmark_of("demo/{group}/{region}.tsv")
        conda:
            "../../envs/percell.yaml"
        params:
            spec=get_demo_params,
        script:
            "../scripts/demo_region.py"


# one rule per demo plate: each writes its own directory's file names
for plate in MANIFEST.config.input.plates if MANIFEST.generated else ():

    rule:
        name:
            f"demo_well_{plate.name}"
        output:
            tiffs=get_plate_demo_outputs(plate),
        log:
            log_of(f"demo/{plate.name}/{{well}}.log"),
        benchmark:
            benchmark_of(f"demo/{plate.name}/{{well}}.tsv")
        conda:
            "../../envs/percell.yaml"
        params:
            plate=plate.to_params(),
            channels=len(MANIFEST.channel_names),
        script:
            "../scripts/demo_well.py"
