"""What every command line of the kit (``station``, ``sync-server``, ``recon``) does with an error nobody expected.

A refusal the code foresaw is a ``click.ClickException``: one line, exit status 1. Anything else (a bug, a
damaged file no check caught) must not end in a Python traceback either: the person at the terminal reads one
line naming the error, and the command exits with status 70 (``EX_SOFTWARE`` of sysexits.h), so a script tells a
fault from a refusal. The traceback goes to the log: at ERROR when the command keeps a log (``station serve``
configures logging, so under systemd it lands in the journal), else at DEBUG, which ``KIT_DEBUG=1`` prints on
stderr for the technician who needs it.

It lives in ``station.protocol`` because that is the one part of ``station`` the server may import; it is pure
code (click and the standard library).
"""

from __future__ import annotations

import logging
import os

import click

#: The exit status of a command that failed on an error nobody expected (sysexits.h ``EX_SOFTWARE``).
UNEXPECTED_ERROR_EXIT = 70
#: Set to 1 to have the traceback of an unexpected error printed on stderr.
DEBUG_ENV = "KIT_DEBUG"

log = logging.getLogger(__name__)


class GuardedGroup(click.Group):
    """A click group whose commands end with one line and status 70 on an unexpected error, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            report_unexpected(ctx, exc)
            ctx.exit(UNEXPECTED_ERROR_EXIT)


def report_unexpected(ctx: click.Context, exc: Exception) -> None:
    """One line on stderr naming the error; the traceback to the log (module docstring)."""
    if os.environ.get(DEBUG_ENV) == "1" and not logging.getLogger().handlers:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    level = logging.ERROR if logging.getLogger().handlers else logging.DEBUG
    command = ctx.command_path if ctx.invoked_subcommand is None else f"{ctx.command_path} {ctx.invoked_subcommand}"
    log.log(level, "%s failed on an unexpected error", command, exc_info=exc)
    message = str(exc).splitlines()[0] if str(exc) else ""
    click.echo(f"Error: {command} failed on an unexpected error ({type(exc).__name__}"
               f"{': ' + message if message else ''}). Run it again with {DEBUG_ENV}=1 "
               "for the details, and report them to the technician.", err=True)
