"""Command-line plumbing shared by every track.

- `add_data_args` / `data_kwargs`: the same task and data flags everywhere (--task or --data …, --n-eval,
  --results-dir, --overwrite).
- `parse_config(Config, argv)`: a typed dataclass is the config; `--config x.yaml` sets defaults, the command line
  wins, unknown keys fail (the TrlParser habit, written here so the harness needs no transformers). The help text
  of a field is its `metadata["help"]`, written once.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def task_help() -> str:
    """--task's help: the tasks there are (read from eval/tasks/, so the list is never stale)."""
    names = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "tasks").glob("*.yaml"))
    return (f"a task in eval/tasks/ ({', '.join(names)}) or a path to a task YAML; with --data, the name of your "
            "data (its results folder; default: folder, file name and content hash)")


def add_data_args(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("data")
    g.add_argument("--task", help=task_help())
    g.add_argument("--data", help="ad-hoc local data: CSV/TSV/JSONL/JSON/parquet, any common encoding")
    g.add_argument("--encoding", help="the encoding of --data (and --test-data), e.g. cp1252, cp1251, gbk, "
                   "shift_jis; default: UTF-8 if valid, else the Western rule or detection (docs/encodings.md)")
    g.add_argument("--test-data", help="test file for --data (default: a fixed stratified 20%% of --data)")
    g.add_argument("--text-column", help="text column of --data")
    g.add_argument("--label-column", help="label column of --data")
    g.add_argument("--labels", help="comma-separated label names; rows with other labels are reported")
    g.add_argument("--n-eval", type=int, default=None, help="evaluate the first N items of the fixed test order")


def data_kwargs(args: argparse.Namespace | dict) -> dict:
    d = vars(args) if isinstance(args, argparse.Namespace) else args
    return {k: d.get(k) for k in ("task", "data", "test_data", "text_column", "label_column", "labels", "encoding")}


def add_run_args(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("runs")
    g.add_argument("--n-train", nargs="+", default=["full"], help="training subset sizes, e.g. 16 64 256 full")
    g.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed")
    g.add_argument("--results-dir", default="results", help="where run records go (default: results/)")
    g.add_argument("--overwrite", action="store_true", help="rerun runs whose records exist")
    g.add_argument("--dry-run", action="store_true",
                   help="check every run as the run would, print the plan (run id, done/todo), stop")
    g.add_argument("--debug", action="store_true", help="show the full traceback of an error")


def flag(key: str, value: object) -> str:
    """One CLI flag as `config_parser` reads it: booleans as --x / --no-x, lists as space-separated values."""
    name = key.replace("_", "-")
    if isinstance(value, bool):
        return f" --{name}" if value else f" --no-{name}"
    if isinstance(value, (list, tuple)):
        return f" --{name} " + " ".join(str(v) for v in value) if value else ""
    return f" --{name} {value}"


def flags(options: dict | None, skip: tuple[str, ...] = ()) -> str:
    """The options as flags (each with a leading space), sorted by name; nested mappings, unset values and `skip`
    (said otherwise) left out."""
    return "".join(flag(k, v) for k, v in sorted((options or {}).items())
                   if k not in skip and not isinstance(v, dict) and v is not None)


EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ValueError, LookupError, FileNotFoundError, PermissionError)


def report_errors(body: Callable[[], int], debug: bool = False) -> int:
    """Run a command's body: an error becomes one line on stderr and exit code 2 (the traceback only with --debug
    or EVAL_DEBUG=1); Ctrl-C exits 130. Records already written stay: each is written atomically when its run ends.
    Errors the suite raises on purpose (bad input: ValueError and its kin, the tracks' BackendError) are printed
    as they are; anything else also names its type."""
    import os
    import sys

    from eval.run.noise import quiet_libraries

    debug = debug or os.environ.get("EVAL_DEBUG") == "1"
    quiet_libraries(verbose=debug)  # library warnings that are not the user's problem (eval/run/noise.py)
    try:
        return body()
    except KeyboardInterrupt:
        print("interrupted: finished runs keep their records; the same command skips them", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 -- one line for the user; --debug shows the rest
        if debug:
            raise
        expected = isinstance(exc, EXPECTED_ERRORS) or type(exc).__name__ in ("BackendError", "RunsFailed")
        msg = str(exc).strip() or type(exc).__name__
        print(f"error: {msg if expected else f'{type(exc).__name__}: {msg}'}", file=sys.stderr)
        if not expected:
            print("(rerun with --debug for the traceback)", file=sys.stderr)
        return 2


THINK_LEVELS = ("low", "medium", "high")


def parse_think(value: object) -> bool | str | None:
    """`--think`, parsed once for every backend: None (the model's default), True / False, or a reasoning level
    (low / medium / high, as gpt-oss style models and OpenAI's reasoning_effort take them)."""
    if value is None or isinstance(value, bool):
        return value
    t = str(value).strip().lower()
    if t in ("true", "on", "yes", "1"):
        return True
    if t in ("false", "off", "no", "0", "none"):
        return False
    if t in THINK_LEVELS:
        return t
    raise ValueError(f"--think takes true, false, {', '.join(THINK_LEVELS)} (or leave it unset), got {value!r}")


def think_text(value: object) -> str | None:
    """The canonical spelling of a --think value (so "on" and "true" are one setting and one run id)."""
    v = parse_think(value)
    return None if v is None else str(v).lower()


# --- typed dataclass configs ----------------------------------------------------------------------------------------

ROLES = ("result", "runtime", "spec", "cli")


def option(default: Any, help: str, role: str = "result", **meta: Any) -> Any:  # noqa: A002 - mirrors argparse
    """A config field with its help text written once (config_parser reads `metadata["help"]`); list defaults are
    copied per instance. Extra metadata such as `choices=` reaches argparse too.

    `role` says where the field goes in a RunSpec (eval/tracks.py):
    - "result": it changes the result, so it is part of `RunSpec.options` and of the run id (the default);
    - "runtime": only where or how fast the run happens (batch size for inference, server URL, export): carried in
      `RunSpec.runtime`, outside the run id;
    - "spec": a RunSpec field of its own (model, method);
    - "cli": a command-line convenience that the run grid replaces (data flags, seeds, n_eval lists)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    meta = {"help": help, "role": role, **meta}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def fields_with_role(cls: Any, role: str) -> list[str]:
    """Names of the config fields with this role (a field without one counts as "result")."""
    return [f.name for f in dataclasses.fields(cls) if f.metadata.get("role", "result") == role]


def values_with_role(cfg: Any, role: str) -> dict:
    """{field: value} of a config instance for the fields with this role."""
    return {k: _plain(getattr(cfg, k)) for k in fields_with_role(type(cfg), role)}


def check_choices(cfg: Any) -> None:
    """A field declared with `choices=` holds one of them (a YAML file or a sweep gets the same check as argparse)."""
    for f in dataclasses.fields(cfg):
        choices = f.metadata.get("choices")
        value = getattr(cfg, f.name)
        if choices and value is not None and value not in choices:
            raise ValueError(f"{f.name} must be one of {', '.join(map(str, choices))}, got {value!r}")


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """(inner type, is_optional) for `X | None` / Optional[X]."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), True
    return tp, False


def _converter(tp: Any):
    tp, _ = _unwrap(tp)
    if tp is bool:
        return None
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        (inner,) = typing.get_args(tp)[:1] or (str,)
        return _converter(inner)
    if tp in (int, float, str):
        return tp
    return str


def _is_list(tp: Any) -> bool:
    return typing.get_origin(_unwrap(tp)[0]) in (list, tuple)


def _shown(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


def config_parser(cls: type, ap: argparse.ArgumentParser | None = None, title: str = "options",
                  file_values: dict | None = None, sources: dict[str, str] | None = None, skip: tuple[str, ...] = ()
                  ) -> argparse.ArgumentParser:
    """Flags for every field of `cls`. `file_values` (each from the config file `sources[name]`) are shown as the
    defaults that apply, so --help never shows a built-in default that a config file replaces."""
    ap = ap or argparse.ArgumentParser()
    files = list(dict.fromkeys(_shown(p) for p in (sources or {}).values()))
    ap.add_argument("--config", help="YAML file of defaults for these options, above the model's own config file "
                    "(the command line wins)" + (f"; here: {', '.join(files)}" if files else ""))
    hints = typing.get_type_hints(cls)
    g = ap.add_argument_group(title + (f" (defaults from {', '.join(files)} where set)" if files else ""))
    for f in dataclasses.fields(cls):
        if f.name in skip:  # the command defines this flag itself
            continue
        tp = hints[f.name]
        flag = "--" + f.name.replace("_", "-")
        helptext = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        if file_values and f.name in file_values:
            default = f"{file_values[f.name]}, from {Path((sources or {}).get(f.name, '?')).name}"
        kw: dict[str, Any] = {"default": argparse.SUPPRESS, "help": f"{helptext} (default: {default})"}
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        if _unwrap(tp)[0] is bool:
            g.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        else:
            g.add_argument(flag, type=_converter(tp), nargs="+" if _is_list(tp) else None, **kw)
    return ap


def coerce(cls: type, values: dict) -> dict:
    """Values as the dataclass declares them: an int given for a float field becomes a float, so `epochs: 6` in a
    YAML file and `--epochs 6` on the command line are the same setting (and give the same run id)."""
    hints = typing.get_type_hints(cls)
    out = dict(values)
    for k, v in values.items():
        if k in hints and _unwrap(hints[k])[0] is float and isinstance(v, int) and not isinstance(v, bool):
            out[k] = float(v)
    return out


class ConfigError(ValueError):
    """A config file that cannot be used (missing, not YAML, not a mapping, unknown options); the message names it
    and the fix."""


_KINDS = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}


def _type_problem(tp: Any, value: Any) -> str | None:
    inner, optional = _unwrap(tp)
    if value is None:
        return None if optional else "a value (not empty)"
    if typing.get_origin(inner) in (list, tuple):
        (item,) = typing.get_args(inner)[:1] or (str,)
        if not isinstance(value, (list, tuple)):
            value = [value]  # one value for a list option is a list of one (as on the command line)
        bad = [_type_problem(item, v) for v in value]
        return next((f"a list of {b}" for b in bad if b), None)
    ok = {bool: lambda v: isinstance(v, bool),
          int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          str: lambda v: isinstance(v, (str, int, float)) and not isinstance(v, bool)}.get(inner)
    return None if ok is None or ok(value) else _KINDS[inner]


def type_problems(cls: type, values: dict, choices: bool = True) -> list[str]:
    """Every option of `values` whose value is not of its field's declared type (or not one of its choices), one
    message each, so a config file or a sweep block lists all its problems at once. Unknown names are left to the
    caller (a sweep block's track may take keys of its own), and so are `choices` when False (a track may translate
    a value, e.g. a sweep's method name, before its config checks it)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = []
    for k, v in values.items():
        if k not in fields:
            continue
        want = _type_problem(hints[k], v)
        allowed = fields[k].metadata.get("choices") if choices else None
        if want:
            out.append(f"{k}: expected {want}, got {v!r}")
        elif allowed and v is not None and not isinstance(v, (list, tuple)) and v not in allowed:
            out.append(f"{k}: one of {', '.join(map(str, allowed))}, got {v!r}")
    return out


def load_yaml_config(path: str | Path, cls: type) -> dict:
    """Read a config YAML; unknown keys fail with the list of known ones. Every problem is a ConfigError."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {path} not found: check the path given to --config")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path} is not valid YAML{at} ({getattr(exc, 'problem', None) or exc}): fix the "
                          "file") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text: save it as UTF-8") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a mapping of option: value, e.g. `lr: 0.0002`")
    names = {f.name for f in dataclasses.fields(cls)}
    normalised = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(normalised) - names)
    if unknown:
        import difflib

        close = {k: difflib.get_close_matches(k, names, n=1) for k in unknown}
        hints = "".join(f"; {k}: did you mean {c[0]}?" for k, c in close.items() if c)
        raise ConfigError(f"{path}: unknown options {unknown}{hints}; known options are {sorted(names)}")
    wrong = type_problems(cls, normalised)
    if wrong:
        raise ConfigError(f"{path}: {'; '.join(wrong)}")
    return coerce(cls, normalised)


def exit_on_config_error(exc: ConfigError, argv: list[str] | None) -> None:
    """A command line's config file problem: one line and exit 2 (the traceback with --debug or EVAL_DEBUG=1)."""
    import os
    import sys

    args = sys.argv[1:] if argv is None else argv
    if "--debug" in args or os.environ.get("EVAL_DEBUG") == "1":
        raise exc
    print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(2)


def build_config(cls: type[T], namespace: argparse.Namespace) -> T:
    """Defaults < YAML (--config) < command line."""
    values: dict[str, Any] = {}
    if getattr(namespace, "config", None):
        values.update(load_yaml_config(namespace.config, cls))
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values.update({k: v for k, v in vars(namespace).items() if k in names})
    return cls(**coerce(cls, values))


def parse_track_args(cls: type[T], ap: argparse.ArgumentParser, argv: list[str] | None, title: str,
                     find_config: Callable[[argparse.Namespace], Path | None], skip: tuple[str, ...] = (),
                     load: Callable[[Path], dict] | None = None) -> tuple[T, argparse.Namespace]:
    """Every track's command line, one layering: built-in defaults < the per-model config file < --config FILE <
    the command line (as a sweep block layers defaults < the per-model file < its options).

    `find_config` picks the per-model file (e.g. encoders/configs/<model>_<method>.yaml) from the spec fields
    (`role="spec"`: model, method), taken from the command line, else from the --config file, else the defaults;
    `load` reads it (default: `load_yaml_config`, unknown keys fail). The files are read before the full parser is
    built, so --help shows the defaults that will actually apply and which file set them."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    spec_fields = [n for n in fields_with_role(cls, "spec") if n not in skip]
    for name in spec_fields:
        pre.add_argument("--" + name.replace("_", "-"), dest=name)
    known, _ = pre.parse_known_args(argv)
    try:
        config_values = load_yaml_config(known.config, cls) if known.config else {}
        for name in spec_fields:  # the per-model file of the model the --config file names
            if getattr(known, name) is None and name in config_values:
                setattr(known, name, config_values[name])
        model_file = find_config(known)
        if model_file is not None and known.config and Path(model_file).resolve() == Path(known.config).resolve():
            model_file = None  # --config names the per-model file itself
        model_values = (load or (lambda p: load_yaml_config(p, cls)))(model_file) if model_file else {}
        file_values = {**model_values, **config_values}
        sources = {k: str(known.config if k in config_values else model_file) for k in file_values}
    except ConfigError as exc:
        exit_on_config_error(exc, argv)
    config_parser(cls, ap, title=title, file_values=file_values, sources=sources, skip=skip)
    ns = ap.parse_args(argv)
    ns.config = known.config or (str(model_file) if model_file else None)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    given = {k: v for k, v in vars(ns).items() if k in names and k not in skip}  # only flags given (SUPPRESS)
    try:
        return cls(**coerce(cls, {**file_values, **given})), ns
    except (ValueError, TypeError) as exc:  # a combination the config refuses: one line and exit 2, like argparse
        exit_on_config_error(ConfigError(f"{ap.prog}: {exc}"), argv)
        raise  # not reached


def parse_config(cls: type[T], argv: list[str] | None = None, ap: argparse.ArgumentParser | None = None
                 ) -> tuple[T, argparse.Namespace]:
    ap = config_parser(cls, ap)
    ns = ap.parse_args(argv)
    try:
        return build_config(cls, ns), ns
    except ConfigError as exc:
        exit_on_config_error(exc, argv)
        raise  # not reached
