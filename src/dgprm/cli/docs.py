"""``docs/cli.md``, generated from the Typer app so it cannot drift from the code.

Regenerate with ``python -m dgprm.cli.docs > docs/cli.md``; a test fails when the file
is stale.
"""

from __future__ import annotations

import inspect
from typing import Any

import typer.main

# Typer vendors its own copy of click in recent versions, so commands and parameters are
# recognised by shape, not by click's classes.
Command = Any
Parameter = Any


def _is_option(param: Parameter) -> bool:
    return getattr(param, "param_type_name", "") == "option"


def _default(param: Parameter) -> str:
    if _is_option(param) and param.is_flag:
        return ""
    default = param.default
    if default is None or default == () or callable(default):
        return ""
    return f"`{default}`"


def _kind(param: Parameter) -> str:
    """The value type, with its range when it has one (``INT ≥ 0``)."""
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if annotation is not None:
        kind = getattr(annotation, "__name__", str(annotation)).upper()
    else:
        kind = str(getattr(getattr(param, "type", None), "name", "")).upper()
    kind = {"STR": "TEXT", "PATH": "PATH"}.get(kind, kind)
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if low is not None:
        kind += f" ≥ {low}"
    if high is not None:
        kind += f" ≤ {high}"
    return kind


def _option_row(param: Parameter) -> str:
    names = ", ".join(f"`{n}`" for n in [*param.opts, *param.secondary_opts])
    kind = "" if param.is_flag else _kind(param)
    text = (getattr(param, "help", None) or "").replace("|", "\\|").replace("\n", " ")
    default = "required" if param.required else _default(param)
    return f"| {names} | {kind} | {default} | {text} |"


def _command(path: list[str], command: Command) -> list[str]:
    lines = [f"### `dgprm {' '.join(path)}`", ""]
    if command.help:
        lines += [inspect.cleandoc(command.help), ""]
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    options = [p for p in command.params if _is_option(p) and not p.hidden]
    usage = " ".join(["dgprm", *path, *(a.name.upper() for a in arguments if a.name), "[OPTIONS]"])
    lines += ["```", usage, "```", ""]
    if options:
        lines += ["| option | type | default | help |", "|---|---|---|---|"]
        lines += [_option_row(p) for p in options if p.name != "help"]
        lines.append("")
    return lines


def _walk(path: list[str], command: Command) -> list[str]:
    if hasattr(command, "commands"):
        lines: list[str] = []
        if path:
            lines += [f"## `dgprm {' '.join(path)}`", "", inspect.cleandoc(command.help or ""), ""]
        for name in sorted(command.commands):
            lines += _walk([*path, name], command.commands[name])
        return lines
    return _command(path, command)


def render() -> str:
    """Every command and option of ``dgprm`` as Markdown.

    Example:
        >>> "### `dgprm score`" in render()
        True
    """
    from dgprm.cli import app

    root = typer.main.get_command(app)
    head = [
        "# Command-line reference",
        "",
        "Generated from the code by `python -m dgprm.cli.docs > docs/cli.md`; "
        "`dgprm COMMAND --help` prints the same.",
        "",
        "Options left unset take their default from the config classes in "
        "`dgprm.config` (or from a `--config` TOML file); exit status 0 = done, "
        "2 = bad input or a usage error (one message, nothing written), 130 = interrupted "
        "(run the same command again to continue).",
        "",
    ]
    return "\n".join(head + _walk([], root)).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
