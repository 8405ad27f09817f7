"""The `raddino` CLI: every subcommand has --help, and unknown commands fail clearly."""

from __future__ import annotations

import pytest

from raddino import cli


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_each_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([name, "--help"])
    assert exc.value.code == 0
    assert "usage: raddino " + name in capsys.readouterr().out


def test_unknown_command_is_an_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["no-such-command"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["release", "--reprobe", "phantom", "--name", "x"], "--reprobe NAME takes no run folder"),
        (["release", "--name", "x"], "packaging a run needs RUN, --profile"),
    ],
)
def test_release_says_which_arguments_a_mode_needs(argv, message):
    with pytest.raises(SystemExit, match=message):
        cli.main(argv)
