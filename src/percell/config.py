"""The workflow config: validated against its JSON schema, then typed.

The schema (``schemas/config.schema.yaml``) is the single description of every
key, for users; validation fills in its defaults. ``load_config`` then runs
the checks the schema cannot express (here, all of them: channels, threshold
runs, segmentation and model settings, plate layout, scan pattern) and
returns the typed ``Config`` the planner and the steps work with. The rules a
config implies for the data live here too: timepoint consistency, and where
the pixel size comes from.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterator, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from percell.contracts import Config, SegmentationConfig, config_error
from percell.errors import ConfigError

if TYPE_CHECKING:  # jsonschema and yaml load where a config is validated:
    import jsonschema  # the steps' jobs import this module for its rules only


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The JSON schema ``name`` ("config" or "samples") shipped with percell."""
    import yaml

    text = resources.files("percell").joinpath(f"schemas/{name}.schema.yaml")
    schema: dict[str, Any] = yaml.safe_load(text.read_text())
    return schema


def _extend_with_defaults(base: Any) -> Any:
    """A validator class that also fills in ``default`` values of properties."""
    import jsonschema

    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(
        validator: Any, properties: dict[str, Any], instance: Any, schema: Any
    ) -> Iterator[Any]:
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})


@cache
def _validator_class() -> Any:
    import jsonschema

    return _extend_with_defaults(jsonschema.Draft202012Validator)


def _where(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    return path or "(top level)"


def validate(instance: Any, schema_name: str, source: str) -> Any:
    """Validate (and fill defaults into) ``instance`` or raise ConfigError.

    Args:
        instance: Parsed config dict or a sample-sheet row.
        schema_name: "config" or "samples".
        source: What is being validated, for the message (a file name).

    Returns:
        The same object, with defaults filled in.
    """
    validator = _validator_class()(load_schema(schema_name))
    errors = sorted(
        (_deepest(e) for e in validator.iter_errors(instance)),
        key=lambda e: [str(p) for p in e.path],
    )
    if errors:
        lines = [f"{source}: {_where(e)}: {_message(e)}" for e in errors[:10]]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    return instance


def _deepest(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """For oneOf/anyOf failures, the error of the branch that came closest.

    "not valid under any of the given schemas" names no key; the branch that
    got furthest into the value does (``segmentation.diameter: '16' is a
    string, expected a number``, not "is not of type 'null'"). Where every
    branch refused the value's type, the oneOf itself stays, and its message
    lists what each branch takes.
    """
    while error.context:
        import jsonschema

        deeper = [e for e in error.context if e.relative_path]
        other = [e for e in error.context if e.validator != "type"]
        best = jsonschema.exceptions.best_match(deeper or other or [])
        if best is None:
            break
        error = best
    return error


#: JSON types in words
TYPE_WORDS = {
    "null": "null (nothing)",
    "object": "a mapping of keys",
    "array": "a list",
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
}


def _kind(value: Any) -> str:
    """What a parsed YAML value is, in words."""
    if value is None:
        return "null"
    for kind, words in (
        (bool, "true/false"),
        (int, "a whole number"),
        (float, "a number with a fraction"),
        (str, "a string"),
        (list, "a list"),
        (dict, "a mapping"),
    ):
        if isinstance(value, kind):
            return words
    return type(value).__name__


def _takes(schema: dict[str, Any]) -> str:
    """What a (branch) schema accepts, in words."""
    if "expected" in schema:
        return str(schema["expected"])
    if "const" in schema:
        return repr(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(repr(v) for v in schema["enum"])
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        return " or ".join(TYPE_WORDS.get(k, k) for k in kinds)
    if "$ref" in schema:
        return "a name (letters, digits, '.', '_', '-')"
    return "a valid value"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(error: jsonschema.ValidationError) -> str:
    value, rule, schema = error.instance, error.validator, error.schema
    if rule == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        unknown = sorted(set(value) - set(allowed)) if isinstance(value, dict) else []
        return (
            f"unknown key(s) {', '.join(map(repr, unknown))}; allowed keys: "
            f"{', '.join(allowed)}"
        )
    if rule in ("minProperties", "maxProperties") and "properties" in schema:
        names = list(schema["properties"])
        given = list(value) if isinstance(value, dict) else []
        return (
            f"expected exactly one of {', '.join(names[:-1])} or {names[-1]}; "
            f"got {', '.join(given) or 'none'}"
        )
    if rule == "type":
        return f"{_show(value)} is {_kind(value)}, expected {_takes(schema)}"
    if rule in ("oneOf", "anyOf"):
        branches = " or ".join(_takes(b) for b in error.validator_value)
        return f"{_show(value)} is {_kind(value)}, expected {branches}"
    if rule == "enum":
        return f"{_show(value)} is not allowed, expected {_takes(schema)}"
    if rule == "const":
        return f"{_show(value)} is not allowed, expected {_takes(schema)}"
    if rule == "pattern" and isinstance(value, str):
        if "expected" in schema:
            return f"{value!r} is not {schema['expected']}"
        return f"{value!r} does not match {error.validator_value}"
    bounds = {
        "minimum": ("too small", "at least"),
        "maximum": ("too large", "at most"),
        "exclusiveMinimum": ("too small", "more than"),
        "exclusiveMaximum": ("too large", "less than"),
        "minItems": ("too short", "at least this many items:"),
    }
    if rule in bounds:
        what, expected = bounds[rule]
        return f"{_show(value)} is {what}, expected {expected} {error.validator_value}"
    if rule == "not":
        return f"{value!r} is not allowed (contains '..')"
    return error.message


def load_config(config: dict[str, Any], source: str = "config") -> Config:
    """Validate the workflow config (filling its defaults in place, for the
    rules) and return it typed.

    Raises:
        ConfigError: naming the key and what was expected.
    """
    validate_config(config, source)
    try:
        typed = Config.model_validate(config)
    except ValidationError as exc:
        raise config_error(exc, source) from None
    if typed.segmentation is not None:
        check_segmentation(typed.segmentation, typed.channel_names, source)
    check_experiment_is_local(typed.experiment.path, source)
    return typed


def check_experiment_is_local(path: str, source: str = "config") -> None:
    """The experiment is a directory on a local or shared filesystem: its
    SQLite database needs file locks and in-place page writes, which object
    storage and HTTP do not offer. Inputs may be URLs; the experiment not."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", path):
        raise ConfigError(
            f"{source}: experiment.path {path!r} is a URL, but an experiment "
            "must be on a local or shared filesystem (its SQLite database "
            "needs file locks and in-place writes, which object storage does "
            "not offer); inputs may be URLs. Give a local path ending in "
            ".percell"
        )


def check_config_file(path: str | Path) -> Config:
    """Read a config file as Snakemake would and validate it; ConfigError
    naming the file, and for a YAML error its line and column."""
    return load_config(read_config_file(path), str(path))


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The settings in a YAML config file; ConfigError naming the file, and
    for a YAML error its line and column (Snakemake's own message names
    neither)."""
    import yaml

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        line = text.splitlines()[mark.line] if mark else ""
        tab = (
            " (a tab in the indentation: YAML indents with spaces)"
            if ("\t" in line[: len(line) - len(line.lstrip())])
            else ""
        )
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            f"{path}{where}: not valid YAML: {problem}{tab}\n    {line.rstrip()}"
        ) from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, not {config!r}")
    return config


def validate_config(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Validate the workflow config; return it with defaults filled in."""
    validate(config, "config", source)
    names = [c["name"] for c in config["channels"]]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{source}: channels: duplicate channel names {dupes}")
    check_threshold_runs(config["thresholds"], names, source)
    check_background(config["background"], names, source)
    for name in (config["illumination"] or {}).get("channels") or []:
        if name not in names:
            raise ConfigError(
                f"{source}: illumination.channels: unknown channel {name!r} "
                f"(channels: {', '.join(names)})"
            )
    inp = config["input"]
    if "plate" in inp:
        plates = inp["plate"] if isinstance(inp["plate"], list) else [inp["plate"]]
        for i, plate in enumerate(plates):
            where = (
                f"input.plate.{i}" if isinstance(inp["plate"], list) else "input.plate"
            )
            if (plate.get("grid") is None) == (plate.get("positions") is None):
                raise ConfigError(
                    f"{source}: {where} needs exactly one of grid (rows, columns) "
                    "and positions (a stage-position CSV)"
                )
            if plate.get("demo") and plate.get("positions"):
                raise ConfigError(f"{source}: {where}.demo needs a grid, not positions")
        if len({bool(p.get("demo")) for p in plates}) > 1:
            raise ConfigError(
                f"{source}: input.plate: demo plates and plates read from disk "
                "cannot be mixed in one experiment"
            )
        names = [p["name"] for p in plates]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(
                f"{source}: input.plate: duplicate plate names {dupes}; each plate "
                "is its own group images.zarr/<name>"
            )
    if "scan" in inp:
        pattern = inp["scan"]["pattern"]
        for needed in ("{condition}", "{region}"):
            if needed not in pattern:
                raise ConfigError(
                    f"{source}: input.scan.pattern {pattern!r} lacks {needed}"
                )
    return config


#: the parameter each background method needs
BACKGROUND_PARAMETER = {
    "constant": "value",
    "percentile": "percentile",
    "rolling_ball": "radius",
}


def check_background(
    background: dict[str, dict], channel_names: list[str], source: str = "config"
) -> None:
    """Checks of ``background`` the schema cannot express."""
    for channel, setting in background.items():
        if channel not in channel_names:
            raise ConfigError(
                f"{source}: background.{channel}: unknown channel {channel!r} "
                f"(channels: {', '.join(channel_names)})"
            )
        needed = BACKGROUND_PARAMETER[setting["method"]]
        if setting.get(needed) is None:
            raise ConfigError(
                f"{source}: background.{channel}: method {setting['method']} "
                f"needs {needed}"
            )


def check_threshold_runs(
    runs: list[dict], channel_names: list[str], source: str = "config"
) -> None:
    """Checks of ``thresholds`` the schema cannot express; fills in run names."""
    seen = set()
    for i, run in enumerate(runs):
        where = f"{source}: thresholds.{i}"
        run.setdefault("name", run["channel"])
        if run["channel"] not in channel_names:
            raise ConfigError(
                f"{where}.channel: unknown channel {run['channel']!r} "
                f"(channels: {', '.join(channel_names)})"
            )
        if run["method"] == "manual" and "value" not in run:
            raise ConfigError(f"{where}: method manual needs a value")
        if run["method"] == "percentile" and "percentile" not in run:
            raise ConfigError(f"{where}: method percentile needs a percentile (0-100)")
        if run["name"] in seen:
            raise ConfigError(
                f"{where}.name: duplicate threshold run name "
                f"{run['name']!r}; give each run its own name"
            )
        seen.add(run["name"])


def check_segmentation(
    seg: SegmentationConfig, channel_names: list[str], source: str = "config"
) -> None:
    """Checks of ``segmentation`` the schema cannot express."""
    comp = seg.compartments
    for key, name in (
        ("channel", seg.channel),
        ("nucleus_channel", seg.nucleus_channel),
        ("compartments.channel", comp.channel if comp else None),
    ):
        if name is not None and name not in channel_names:
            raise ConfigError(
                f"{source}: segmentation.{key}: unknown channel {name!r} (channels: "
                f"{', '.join(channel_names)})"
            )
    overlap = seg.tile_overlap
    if (
        seg.diameter_unit == "pixels"
        and overlap != "auto"
        and overlap < 2 * seg.diameter
    ):
        raise ConfigError(
            f"{source}: segmentation.tile_overlap {overlap} is less than two "
            f"diameters ({2 * seg.diameter:g} px): cells on tile borders could be cut"
        )
    if comp is not None and comp.cells != "expand" and comp.channel is None:
        raise ConfigError(
            f"{source}: segmentation.compartments: cells: {comp.cells} needs the "
            "cytoplasm channel to find the cells in (compartments.channel)"
        )
    if seg.method == "cellpose":
        check_model_setting(seg.model, source)
    if comp is not None and comp.cells == "cellpose":
        check_model_setting(comp.model, source, "segmentation.compartments.model")


def check_model_setting(
    model: str, source: str = "config", key: str = "segmentation.model"
) -> None:
    """A model given as a path must exist (a name is looked up by the
    resolve_model job, which may download it)."""
    if ("/" in model or os.path.splitext(model)[1]) and not Path(
        model
    ).expanduser().is_file():
        raise ConfigError(f"{source}: {key}: model file {model} does not exist")


def check_timepoints(regions: Sequence[tuple[str, str | None]]) -> None:
    """Every row of a condition has a timepoint, or none does.

    Args:
        regions: (condition, timepoint) of every region.
    """
    with_tp = {c for c, t in regions if t}
    without = {c for c, t in regions if not t}
    both = sorted(with_tp & without)
    if both:
        raise ConfigError(
            f"condition(s) {both} have rows with and rows without a timepoint; "
            "give every row of a condition a timepoint, or none"
        )


def pixel_size_or_error(
    configured: float | None,
    from_file: float | None,
    where: str,
    path: str,
    why: str = "",
) -> float:
    """The pixel size: the config's, else the file's metadata, else an error
    naming the region and the file."""
    size = configured or from_file
    if size is None:
        raise ConfigError(
            f"{where}: no pixel size in {path} and pixel_size_um is not set in the "
            "config" + (f" ({why})" if why else "")
        )
    return float(size)
