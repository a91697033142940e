# Segmentation (only when the config has a `segmentation` section).
if MANIFEST.segmentation:

    if MANIFEST.segmentation["method"] == "cellpose":

        # One local job finds (or fetches) the model before any segment job
        # starts, so parallel jobs never race to download it.
        rule resolve_model:
            output:
                sentinel=sentinel("model", "segmentation"),
            log:
                "logs/resolve_model.log",
            benchmark:
                "benchmarks/resolve_model.tsv"
            localrule: True
            conda:
                "../../envs/cellpose.yaml"
            params:
                model=MANIFEST.segmentation["model"],
                experiment=get_experiment,
            script:
                "../scripts/resolve_model.py"

    rule segment:
        input:
            imported=sentinel("import"),
            pyramid=sentinel("pyramid"),
            model=get_model_sentinel(),
        output:
            sentinel=sentinel("segment"),
        log:
            "logs/segment/{group}.log",
        benchmark:
            "benchmarks/segment/{group}.tsv"
        conda:
            "../../envs/cellpose.yaml"
        threads: MANIFEST.segmentation["resources"]["threads"]
        resources:
            mem_mb=MANIFEST.segmentation["resources"]["mem_mb"],
            runtime=MANIFEST.segmentation["resources"]["runtime"],
            gpu=MANIFEST.segmentation["resources"]["gpu"],
        params:
            settings=MANIFEST.segment_params(),
            channels=MANIFEST.channel_names,
            experiment=get_experiment,
        script:
            "../scripts/segment.py"
