"""A bench's command line, generated from its keyword-only config dataclass.

Each field becomes ``--field-name`` with the field's type and default; its help is the field's
docstring (the string literal right below it, read with `ast`), so ``recgym bench SUITE --help``
explains every option the config has. Supported types: int, float, str, bool (``--x/--no-x``),
``Literal[...]`` (choices), ``tuple[T, ...]`` / ``list[T]`` (one or more values) and ``T | None``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar

C = TypeVar("C")


def field_docs(cls: type) -> dict[str, str]:
    """{field: docstring} for a dataclass whose fields carry a string literal below them."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # a subclass's docstring wins
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
        for node, after in zip(body, body[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0], True
    return tp, False


def _shown(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def _argument(
    name: str, tp: Any, default: Any, doc: str, shown: str, choices: Sequence[Any] | None
) -> tuple[list[str], dict[str, Any]]:
    flag = "--" + name.replace("_", "-")
    tp, optional = _unwrap_optional(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    help_text = f"{doc or name} (default: {shown})".replace("%", "%%")  # argparse formats help
    extra: dict[str, Any] = {"choices": list(choices)} if choices is not None else {}
    if tp is bool:
        return [flag], {"action": argparse.BooleanOptionalAction, "default": default,
                        "help": help_text}  # fmt: skip
    if origin is Literal:
        return [flag], {"choices": list(args), "type": type(args[0]), "default": default,
                        "help": help_text}  # fmt: skip
    if origin in (tuple, list):
        item = args[0] if args else str
        if item not in (int, float, str):
            raise TypeError(f"field {name}: cannot make an option for {tp}")
        return [flag], {"nargs": "+", "type": item, "default": default, "help": help_text,
                        "metavar": item.__name__.upper(), **extra}  # fmt: skip
    if tp in (int, float, str):
        conv = tp
        if optional:

            def conv(text: str, base: Any = tp) -> Any:
                return None if text.lower() == "none" else base(text)

            help_text += "; 'none' for none"
        return [flag], {"type": conv, "default": default, "help": help_text,
                        "metavar": tp.__name__.upper(), **extra}  # fmt: skip
    raise TypeError(f"field {name}: cannot make an option for {tp}")


def config_parser(
    cls: type,
    *,
    prog: str | None = None,
    description: str | None = None,
    exclude: Sequence[str] = (),
    parser: argparse.ArgumentParser | None = None,
    presets: Mapping[str, Any] | None = None,
    choices: Mapping[str, Sequence[Any]] | None = None,
) -> argparse.ArgumentParser:
    """An argparse parser with one option per field of the keyword-only dataclass `cls`.

    With `presets` ({name: config}), an option not given keeps the chosen preset's value (pass
    the preset as `base` to `config_from_args`) and its help lists each preset's value.
    `choices` restricts fields ({field: allowed values}); `exclude` leaves fields out.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    parser = parser or argparse.ArgumentParser(
        prog=prog,
        description=description or (inspect.getdoc(cls) or "").split("\n")[0],
    )
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    choices = choices or {}
    for f in dataclasses.fields(cls):
        if f.name in exclude or not f.init:
            continue
        if presets:
            default: Any = argparse.SUPPRESS
            values = {name: _shown(getattr(p, f.name)) for name, p in presets.items()}
            shown = (
                next(iter(values.values()))
                if len(set(values.values())) == 1
                else ", ".join(f"{name} {v}" for name, v in values.items())
            )
        elif f.default is not dataclasses.MISSING:
            default = f.default
            shown = _shown(default)
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
            shown = _shown(default)
        else:
            raise TypeError(f"field {f.name} of {cls.__name__} needs a default for the CLI")
        flags, kwargs = _argument(
            f.name, hints[f.name], default, docs.get(f.name, ""), shown, choices.get(f.name)
        )
        if f.metadata.get("const") is not None:  # `--flag` alone means this value
            kwargs.update(nargs="?", const=f.metadata["const"])
        if f.metadata.get("metavar"):
            kwargs["metavar"] = f.metadata["metavar"]
        parser.add_argument(*flags, dest=f.name, **kwargs)
    return parser


def config_from_args(
    cls: type[C], namespace: argparse.Namespace, base: C | None = None, **overrides: Any
) -> C:
    """The config `cls` from parsed options (list values become tuples where the field is one);
    with `base`, options absent from `namespace` keep `base`'s values."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init or not hasattr(namespace, f.name):
            continue
        v = getattr(namespace, f.name)
        tp, _ = _unwrap_optional(hints[f.name])
        if typing.get_origin(tp) is tuple and isinstance(v, list):
            v = tuple(v)
        values[f.name] = v
    values.update(overrides)
    return dataclasses.replace(base, **values) if base is not None else cls(**values)


def sweep_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The run options every bench on the engine takes (`benchmarks.sweep.SweepConfig`):
    ``--workers N``, ``--ray [ADDRESS]``, ``--retries N``, ``--no-tensorboard``; added to
    `parser` when given."""
    from recgym.benchmarks.sweep import SweepConfig

    parser = parser or argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    return config_parser(SweepConfig, parser=parser, exclude=("threads",))


def split_sweep_args(argv: Sequence[str]) -> tuple[Any, list[str]]:
    """(the `SweepConfig` the sweep options in `argv` give, the rest of `argv`)."""
    from recgym.benchmarks.sweep import SweepConfig

    ns, rest = sweep_parser().parse_known_args(list(argv))
    return config_from_args(SweepConfig, ns), rest


def parse_config(
    cls: type[C], argv: Sequence[str] | None = None, **parser_kwargs: Any
) -> tuple[C, argparse.Namespace]:
    """Parse `argv` with `config_parser(cls)`; returns (config, namespace)."""
    ns = config_parser(cls, **parser_kwargs).parse_args(argv)
    return config_from_args(cls, ns), ns


def preset_parser(
    cls: type,
    presets: Mapping[str, Any],
    *,
    prog: str,
    description: str,
    sizes: Mapping[str, str],
    out_help: str,
    work_help: str,
    choices: Mapping[str, Sequence[Any]] | None = None,
) -> argparse.ArgumentParser:
    """A preset bench's parser: one flag per preset in `sizes` ({"quick": help, ...}; the
    first preset of `presets` is the default, taken without a flag), ``--out``, ``--work``,
    ``--fresh``, ``--quiet`` and every field of `cls` but ``mode`` (a preset's value unless
    given; `config_parser`)."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    size = p.add_mutually_exclusive_group()
    for name, text in sizes.items():
        size.add_argument(f"--{name}", action="store_true", help=text)
    p.add_argument("--out", metavar="DIR", help=out_help)
    p.add_argument("--work", metavar="DIR", help=work_help)
    config_parser(cls, parser=p, presets=presets, exclude=("mode",), choices=choices)
    p.add_argument(
        "--fresh",
        action="store_true",
        help="discard every earlier stage output first (never needed for correctness)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def preset_config(
    cls: type[C],
    presets: Mapping[str, C],
    args: argparse.Namespace,
    choices: Mapping[str, Sequence[Any]] | None = None,
) -> C:
    """The preset whose flag is set in `args` (else the first of `presets`) with every given
    option applied; a field in `choices` keeps its values in the choices' order (table order)."""
    mode = next((n for n in presets if getattr(args, n, False)), next(iter(presets)))
    cfg = config_from_args(cls, args, base=presets[mode])
    ordered = {
        f: tuple(c for c in allowed if c in getattr(cfg, f))
        for f, allowed in (choices or {}).items()
    }
    return dataclasses.replace(cfg, **ordered) if ordered else cfg  # type: ignore[type-var]


def preset_main(
    parser: argparse.ArgumentParser,
    config: Any,
    run: Any,
    argv: Sequence[str] | None,
    *,
    results: str,
    work: str,
) -> int:
    """Parse `argv`, build the config (``config(args)``) and ``run(cfg, out, work, fresh=,
    progress=)``, which returns {"markdown": ...}; ``--out``/``--work`` default to
    ``<results>/<name>`` and ``<work>/<name>``, name = the config's ``mode`` (``-data`` added
    when it has ``data``); prints the markdown unless ``--quiet``."""
    args = parser.parse_args(argv)
    cfg = config(args)
    name = cfg.mode + ("-data" if getattr(cfg, "data", None) else "")
    result = run(
        cfg,
        args.out or f"{results}/{name}",
        args.work or f"{work}/{name}",
        fresh=args.fresh,
        progress=not args.quiet,
    )
    if not args.quiet:
        print(result["markdown"])
    return 0


@dataclasses.dataclass(frozen=True)
class PresetCLI:
    """A preset bench's whole command line in one value: ``parser()``, ``config(args)`` and
    ``main(run, argv)`` (`preset_parser`, `preset_config`, `preset_main` with these settings);
    `results`/`work` are the roots of the default ``--out``/``--work`` (``<root>/<mode>``)."""

    cls: type
    presets: Mapping[str, Any]
    prog: str
    description: str
    sizes: Mapping[str, str]
    results: str
    work: str
    out_help: str
    work_help: str
    choices: Mapping[str, Sequence[Any]] | None = None

    def parser(self) -> argparse.ArgumentParser:
        return preset_parser(
            self.cls,
            self.presets,
            prog=self.prog,
            description=self.description,
            sizes=self.sizes,
            out_help=self.out_help,
            work_help=self.work_help,
            choices=self.choices,
        )

    def config(self, args: argparse.Namespace) -> Any:
        return preset_config(self.cls, self.presets, args, self.choices)

    def main(self, run: Any, argv: Sequence[str] | None = None) -> int:
        return preset_main(
            self.parser(), self.config, run, argv, results=self.results, work=self.work
        )


__all__ = [
    "PresetCLI",
    "config_from_args",
    "config_parser",
    "field_docs",
    "parse_config",
    "preset_config",
    "preset_main",
    "preset_parser",
    "split_sweep_args",
    "sweep_parser",
]
