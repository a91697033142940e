# Synthetic raw images, made only when the config's input is `demo`.
if MANIFEST.generated:

    rule demo_region:
        output:
            tiffs=get_demo_outputs(),
        log:
            "logs/demo/{group}/{region}.log",
        conda:
            "../../envs/percell.yaml"
        params:
            spec=get_demo_params,
        script:
            "../scripts/demo_region.py"
