"""Command-line options generated from a job's pydantic parameters model, so a field added to the model is a flag of
its command (``spotter train``, ``evaluate``, ``export``, ``active-learning``) with no other edit.

Each field becomes ``--field-name`` with the field's type, its description as help and the model's default shown;
the option itself defaults to "not given", so only what the user set is sent and the model's defaults apply (the
gateway's, for a submitted job). ``bool`` is ``--x/--no-x``, a ``Literal`` a choice, a ``list`` a repeatable option,
``X | None`` an ``X``; a nested model (``train``'s ``export``) gives one option per field of it, prefixed with the
field's name (``--export-model``). A field that is required (and not inside an optional nested model) is a required
option. A type with no option form is refused when the command is built, never silently left out.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

SCALARS = (str, int, float)
SKIPPED = ("type",)
"""Fields that are no option: ``type`` is the command itself."""


@dataclass(frozen=True, slots=True)
class JobOption:
    """One option of a job command: the field it sets (``path``: the field, or nested model field and its field),
    its Python name in the command's signature, its flags, its type and whether it is required."""

    path: tuple[str, ...]
    name: str
    flags: tuple[str, ...]
    annotation: Any
    required: bool
    help: str
    default: str | bool = False
    """The model's default, as the help shows it (``False``: none)."""

    def parameter(self) -> inspect.Parameter:
        default = typer.Option(... if self.required else None, *self.flags, help=self.help, show_default=self.default)
        annotation = self.annotation if self.required else self.annotation | None
        return inspect.Parameter(self.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def _bare(annotation: Any) -> Any:
    """``X`` for ``Annotated[X, ...]`` (pydantic's constraints stay with the model, which checks them)."""
    return get_args(annotation)[0] if get_origin(annotation) is Annotated else annotation


def _optional_inner(annotation: Any) -> tuple[Any, bool]:
    """``(X, True)`` for ``X | None``; ``(annotation, False)`` otherwise (``Annotated`` taken off)."""
    annotation = _bare(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(get_args(annotation)) == 2:
            return _bare(args[0]), True
    return annotation, False


def _option_type(annotation: Any, where: str) -> Any:
    """The type typer gets for a field's (non-optional) type; ``TypeError`` for one with no option form."""
    if annotation is bool or annotation in SCALARS:
        return annotation
    if get_origin(annotation) is Literal and all(isinstance(a, str) for a in get_args(annotation)):
        return annotation
    if get_origin(annotation) is list and len(get_args(annotation)) == 1:
        item = _bare(get_args(annotation)[0])
        if item in SCALARS or get_origin(item) is Literal:
            return list[item]  # type: ignore[valid-type]
    raise TypeError(f"{where}: no command-line option for the type {annotation!r}")


def _flag(name: str, annotation: Any) -> str:
    flag = "--" + name.replace("_", "-")
    return f"{flag}/--no-{flag[2:]}" if annotation is bool else flag


def _help(field: FieldInfo, annotation: Any) -> str:
    text = field.description or ""
    if get_origin(annotation) is list:
        text = f"{text} (repeat the option for several)".strip()
    return text


def _default_text(field: FieldInfo) -> str | bool:
    """The model's default as the help shows it (``False``: none to show)."""
    default = field.get_default(call_default_factory=True)
    if default is PydanticUndefined or default is None:
        return False
    return str(default).lower() if isinstance(default, bool) else str(default)


def job_options(model: type[BaseModel], aliases: Mapping[str, Sequence[str]] | None = None) -> list[JobOption]:
    """The options of every field of ``model`` (nested models flattened); ``aliases`` maps a field's dotted path
    (``export.threshold``) to more flags for it (the CLI's older names).

    Raises:
        TypeError: a field whose type has no option form.
    """
    aliases = aliases or {}
    options: list[JobOption] = []
    for name, field in model.model_fields.items():
        if name in SKIPPED:
            continue
        inner, _ = _optional_inner(field.annotation)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            for sub_name, sub in inner.model_fields.items():
                options.append(_option((name, sub_name), sub, parent_required=field.is_required(), aliases=aliases))
        else:
            options.append(_option((name,), field, parent_required=True, aliases=aliases))
    return options


def _option(
    path: tuple[str, ...], field: FieldInfo, *, parent_required: bool, aliases: Mapping[str, Sequence[str]]
) -> JobOption:
    dotted = ".".join(path)
    inner, _ = _optional_inner(field.annotation)
    annotation = _option_type(inner, dotted)
    flag = _flag("_".join(path), annotation)
    # An older flag of a boolean keeps its --no- form too.
    extra = tuple(f"{a}/--no-{a[2:]}" if annotation is bool and "/" not in a else a for a in aliases.get(dotted, ()))
    return JobOption(
        path=path,
        name="__".join(path),
        flags=(flag, *extra),
        annotation=annotation,
        required=field.is_required() and parent_required,
        help=_help(field, annotation),
        default=_default_text(field),
    )


def body_of(options: Sequence[JobOption], values: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters the user gave: the options that were set, nested as the model nests them."""
    body: dict[str, Any] = {}
    for option in options:
        value = values.get(option.name)
        if value is None or (isinstance(value, list | tuple) and not value):
            continue
        target = body
        for part in option.path[:-1]:
            target = target.setdefault(part, {})
        target[option.path[-1]] = list(value) if isinstance(value, list | tuple) else value
    return body


def _flags(name: str, decls: Sequence[str] | None) -> set[str]:
    """Every flag an option answers to (``--x/--no-x`` is two), its default one from its name included."""
    return {f for decl in (*(decls or ()), "--" + name.replace("_", "-")) for f in decl.split("/")}


def job_command(
    options: Sequence[JobOption],
    common: Sequence[inspect.Parameter],
    run: Callable[[dict[str, Any], dict[str, Any]], None],
    *,
    name: str,
    doc: str,
) -> Callable[..., None]:
    """A typer command function whose options are ``options`` then ``common``: it calls ``run(body, rest)`` with the
    body of the options that were set (:func:`body_of`) and the values of ``common`` by name.

    Raises:
        ValueError: an option's Python name or flag is also one of ``common``.
    """
    taken = {p.name for p in common} | {
        f for p in common for f in _flags(p.name, getattr(p.default, "param_decls", ()))
    }
    clash = [o.name for o in options if o.name in taken or taken & _flags(o.name, o.flags)]
    if clash:
        raise ValueError(f"{name}: the fields {clash} clash with the command's own options")

    def command(**values: Any) -> None:
        rest = {p.name: values.pop(p.name) for p in common}
        run(body_of(options, values), rest)

    parameters = [*(o.parameter() for o in options), *common]
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__name__ = name.replace("-", "_")
    command.__doc__ = doc
    return command
