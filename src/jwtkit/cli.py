"""The ``jwtkit`` command: a thin shell over jwtkit's layers, built with typer and rich.

``main()`` is the one boundary where failures become a single line on stderr and an exit code (listed in
``jwtkit --help``); no input, however bad, prints a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated

import typer

from jwtkit._cli import _dpop, _server, _tokens
from jwtkit._cli._output import (
    EXIT_CODES_HELP,
    EXIT_INVALID,
    EXIT_REFUSED,
    EXIT_SOFTWARE,
    EXIT_STORE,
    EXIT_USAGE,
    CLIError,
    out,
)

__all__ = ["app", "main"]

app = typer.Typer(
    name="jwtkit",
    help=f"JSON Web Tokens from the terminal: make keys, sign, inspect and verify tokens, run the server.\n\n"
    f"{EXIT_CODES_HELP}",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root(
    json_output: Annotated[
        bool, typer.Option("--json", help="Machine-readable JSON output (every command).")
    ] = False,
) -> None:
    out.use_json(json_output)


_tokens.register(app)
_server.register(app)
_dpop.register(app)

# typer vendors click from 0.2x on; find the base of its usage errors wherever it lives.
_CLICK_ERROR: type[Exception] = next(
    cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException"
)


def _layer_errors() -> tuple[tuple[type[Exception], int], ...]:
    """Errors of the layers below, with their exit codes; imported here so token commands never load them."""
    from jwtkit.service import ServiceConfigError, ServiceError
    from jwtkit.store import StoreConfigError, StoreUnavailable

    return (
        (StoreUnavailable, EXIT_STORE),
        (StoreConfigError, EXIT_USAGE),
        (ServiceConfigError, EXIT_USAGE),  # before ServiceError, its base
        (ServiceError, EXIT_REFUSED),
    )


def _click_message(exc: Exception) -> str:
    format_message = getattr(exc, "format_message", None)
    return str(format_message()) if callable(format_message) else str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return (and, as the console script, exit with) the exit code."""
    from jwtkit import JWTError

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = app(args=args, prog_name="jwtkit", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except CLIError as exc:
        out.error(exc.code, exc.message)
        code = exc.exit_code
    except JWTError as exc:
        out.error(exc.code, str(exc))
        code = EXIT_INVALID
    except _CLICK_ERROR as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `jwtkit` or `jwtkit user` alone: show the help
            sys.stdout.write(_click_message(exc) + "\n")
            return 0
        out.error("usage", f"{_click_message(exc)} (see jwtkit --help)")
        code = int(getattr(exc, "exit_code", EXIT_USAGE))
    except KeyboardInterrupt:
        code = 130
    except typer.Abort:
        out.error("aborted", "aborted")
        code = 1
    except Exception as exc:
        code = _unexpected(exc)
    sys.stdout.flush()
    return code


def _unexpected(exc: Exception) -> int:
    for error_type, exit_code in _layer_errors():
        if isinstance(exc, error_type):
            out.error(str(getattr(exc, "code", "error")), str(exc) or type(exc).__name__)
            return exit_code
    if isinstance(exc, OSError):
        out.error("os", f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
        return EXIT_USAGE
    out.error("internal", f"{type(exc).__name__}: {exc} (a bug in jwtkit; please report it)")
    return EXIT_SOFTWARE


if __name__ == "__main__":
    sys.exit(main())
