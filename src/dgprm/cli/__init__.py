"""The ``dgprm`` command line: one module per command group, each a thin layer that parses
options, calls a library function and renders the result with rich.

- ``tree`` (:mod:`.tree`), ``data`` (:mod:`.data`), ``bench`` (:mod:`.bench`) are groups;
- ``score`` (:mod:`.score`), ``pairs`` (:mod:`.pairs`), ``train`` (:mod:`.train`),
  ``report`` (:mod:`.report`), ``serve`` (:mod:`.serve`) are commands;
- :mod:`.common` holds the shared options, progress bars and tables.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from dgprm.cli import bench, data, tree
from dgprm.cli.common import console
from dgprm.cli.pairs import pairs
from dgprm.cli.report import report
from dgprm.cli.score import score
from dgprm.cli.serve import serve
from dgprm.cli.train import train
from dgprm.errors import InputError
from dgprm.scale import ShardError

app = typer.Typer(
    help="DG-PRM: reward trees, dynamic step rewards, Pareto pairs, PRM benchmarks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from dgprm.version import __version__

        print(f"dgprm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """DG-PRM: reward trees, dynamic step rewards, Pareto pairs, PRM benchmarks."""


app.add_typer(tree.app, name="tree")
app.add_typer(data.app, name="data")
app.command("score")(score)
app.command("pairs")(pairs)
app.command("train")(train)
app.command("report")(report)
app.command("serve")(serve)
app.add_typer(bench.app, name="bench")

_INTERRUPTED = 130  # exit status of a run stopped by Ctrl-C (128 + SIGINT)


def main() -> None:
    """Entry point: run the app, turning bad input into a one-line error and exit code 2."""
    try:
        status = app(standalone_mode=False)
    except (InputError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except ShardError as exc:  # a Ray worker died: the run continues when run again
        console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except (typer.Abort, KeyboardInterrupt):
        status = _INTERRUPTED
    except Exception as exc:
        # click's usage errors and exits, matched by shape: typer vendors its own copy of
        # click in recent versions, whose classes are not click's
        code = getattr(exc, "exit_code", None)
        if not isinstance(code, int):
            raise
        if callable(getattr(exc, "show", None)):
            exc.show()
        sys.exit(code)
    # Outside standalone mode typer returns an exit status instead of exiting; Ctrl-C
    # inside a command comes back as status 130.
    if status == _INTERRUPTED:
        console.print("[red]interrupted[/] (re-run the same command to continue)")
    if isinstance(status, int) and status:
        sys.exit(status)
