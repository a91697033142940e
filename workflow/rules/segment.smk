# Segmentation (only when the config has a `segmentation` section).
if MANIFEST.segmentation:

    if MANIFEST.segmentation.method == "cellpose":

        # One local job finds (or fetches) the model before any segment job
        # starts, so parallel jobs never race to download it.
        rule resolve_model:
            output:
                sentinel=sentinel("model", "segmentation"),
            log:
                log_of("resolve_model.log"),
            benchmark:
                benchmark_of("resolve_model.tsv")
            localrule: True
            conda:
                "../../envs/cellpose.yaml"
            params:
                model=MANIFEST.segmentation.model,
            script:
                "../scripts/resolve_model.py"

    if get_cells_model_sentinel():

        # The cell model of compartments.cells: cellpose, found the same way.
        rule resolve_cells_model:
            output:
                sentinel=sentinel("model", "cells"),
            log:
                log_of("resolve_cells_model.log"),
            benchmark:
                benchmark_of("resolve_cells_model.tsv")
            localrule: True
            conda:
                "../../envs/cellpose.yaml"
            params:
                model=MANIFEST.segmentation.compartments.model,
            script:
                "../scripts/resolve_model.py"

    rule segment:
        input:
            imported=sentinel("import"),
            pyramid=sentinel("pyramid"),
            model=get_model_sentinel(),
            cells_model=get_cells_model_sentinel(),
        output:
            sentinel=sentinel("segment"),
        log:
            log_of("segment/{group}.log"),
        benchmark:
            benchmark_of("segment/{group}.tsv")
        conda:
            "../../envs/cellpose.yaml"
        threads: get_resources("segmentation", "threads")
        resources:
            mem_mb=get_resources("segmentation", "mem_mb"),
            runtime=get_resources("segmentation", "runtime"),
            gpu=get_resources("segmentation", "gpu"),
        params:
            settings=get_segment_settings(),
            channels=MANIFEST.channel_names,
        script:
            "../scripts/segment.py"
