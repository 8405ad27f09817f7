"""Check a shown command with its own program's parser (raddino, torchrun, papermill, jupytext,
hf) without running it: a renamed or misspelt flag is a ValueError naming the command."""

from __future__ import annotations

import argparse
import contextlib
import io
import shlex
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raddino.rerun import ShownCommand


def check_command(command: ShownCommand) -> dict[str, Any]:
    """Parse `command` with its program's own parser; the parsed values, or a ValueError."""
    program, *args = command.argv
    checkers = {
        "raddino": _check_raddino,
        "torchrun": parse_torchrun,
        "papermill": _check_papermill,
        "jupytext": _check_jupytext,
        "hf": _check_hf,
    }
    if program not in checkers:
        raise ValueError(f"{command.purpose}: no parser known for program {program!r}")
    try:
        return checkers[program](args)
    except ValueError as err:
        raise ValueError(f"`{shlex.join(command.argv)}`: {err}") from None


def _parse_argparse(
    parser: argparse.ArgumentParser, args: list[str], *, exact: bool = True
) -> argparse.Namespace:
    """parse_args that raises ValueError instead of printing and exiting; with `exact`, options
    must be spelled in full (argparse would accept an abbreviation of a renamed flag)."""
    known = {s for action in parser._actions for s in action.option_strings}
    for word in args if exact else ():
        if word == "--":
            break
        name = word.split("=", 1)[0]
        if name.startswith("--") and name not in known:
            raise ValueError(f"{parser.prog}: unknown option {name!r}")
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            return parser.parse_args(args)
    except SystemExit:
        lines = stderr.getvalue().strip().splitlines() or ["exit without message"]
        raise ValueError(lines[-1]) from None


def _check_raddino(args: list[str]) -> dict[str, Any]:
    from raddino.cli import build_parser

    parser = build_parser()
    if not args or args[0].startswith("-"):
        raise ValueError("expected a raddino subcommand")
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if args[0] not in subparsers.choices:
        raise ValueError(f"unknown raddino subcommand {args[0]!r}")
    _parse_argparse(subparsers.choices[args[0]], args[1:])  # exact option names
    parsed = vars(_parse_argparse(parser, args, exact=False))  # the subcommand's were checked
    parsed.pop("_run", None)
    return parsed


def parse_torchrun(args: list[str]) -> dict[str, Any]:
    """torchrun's own options (its parser) and the `raddino pretrain` arguments after `-m`."""
    from torch.distributed.run import get_args_parser

    parser = get_args_parser()
    parser.prog = "torchrun"
    if "-m" not in args:
        raise ValueError("expected `-m raddino.cli` (torchrun runs the CLI as a module)")
    split = args.index("-m") + 2
    launcher = vars(_parse_argparse(parser, args[:split]))
    if launcher["training_script"] != "raddino.cli":
        raise ValueError(f"torchrun runs {launcher['training_script']!r}, expected raddino.cli")
    launcher.pop("training_script_args")
    script = _check_raddino(args[split:])
    if script["command"] != "pretrain":
        raise ValueError(f"torchrun launches `raddino {script['command']}`, expected pretrain")
    return {"torchrun": launcher, "raddino": script}


def _click_params(group, name: str, args: list[str]) -> dict[str, Any]:
    import click

    try:
        # The group's own options are not used; resilient: no help page for the empty list.
        with group.make_context(name, [], resilient_parsing=True) as context:
            if not args or group.get_command(context, args[0]) is None:
                raise ValueError(f"unknown {name} command {args[:1]}")
            command = group.get_command(context, args[0])
            # hf registers lazy placeholders whose options appear once materialised.
            command = command.materialize() if hasattr(command, "materialize") else command
            with command.make_context(
                args[0], list(args[1:]), parent=context, resilient_parsing=False
            ) as sub:
                return dict(sub.params)
    except click.ClickException as err:
        raise ValueError(err.format_message()) from None


def _check_hf(args: list[str]) -> dict[str, Any]:
    from huggingface_hub.cli.hf import app  # the `hf` console script's click group

    return _click_params(app, "hf", args)


def _check_papermill(args: list[str]) -> dict[str, Any]:
    import click
    import yaml
    from papermill.cli import papermill

    try:
        with papermill.make_context("papermill", list(args)) as context:
            params = dict(context.params)
    except click.ClickException as err:
        raise ValueError(err.format_message()) from None
    if not params["notebook_path"].endswith(".ipynb"):
        raise ValueError(f"papermill reads .ipynb notebooks, got {params['notebook_path']!r}")
    injected: dict[str, Any] = {}
    for text in params["parameters_yaml"]:
        injected.update(yaml.safe_load(text))
    params["injected"] = injected
    return params


def _check_jupytext(args: list[str]) -> dict[str, Any]:
    from jupytext.cli import parse_jupytext_args

    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            return vars(parse_jupytext_args(args))
    except SystemExit:
        lines = stderr.getvalue().strip().splitlines() or ["exit without message"]
        raise ValueError(lines[-1]) from None
