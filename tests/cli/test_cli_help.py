"""A CLI that helps: help for every command and option in plain text, did-you-mean for unknown commands and
options (exit status 2), and ``--config`` taken the same way by every command that reads a configuration."""

from __future__ import annotations

import argparse

import pytest

from gateway_authz.cli.main import _parser, main


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _parsers(sub)
    return found


def test_every_command_and_option_has_help_in_plain_text() -> None:
    for parser in _parsers(_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    assert choice.help, (parser.prog, choice.dest)
                continue
            if action.help == argparse.SUPPRESS:
                continue
            assert action.help, (parser.prog, action.option_strings or action.dest)
        text = parser.format_help()
        assert "`" not in text and ":class:" not in text and ":func:" not in text, parser.prog


@pytest.mark.parametrize(
    ("argv", "suggestion"),
    [
        (["serv"], "did you mean 'serve'?"),
        (["chekc", "--url", "x"], "did you mean 'check'?"),
        (["config", "validat"], "did you mean 'validate'?"),
        (["keys", "generat"], "did you mean 'generate'?"),
        (["check", "--confg", "c.yaml", "--url", "https://h/"], "did you mean '--config' instead of '--confg'?"),
        (["test", "--juint", "x.xml", "t.yaml"], "did you mean '--junit' instead of '--juint'?"),
    ],
)
def test_an_unknown_command_or_option_gets_a_suggestion_and_exit_status_2(
    argv: list[str], suggestion: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert suggestion in capsys.readouterr().err


@pytest.mark.parametrize(
    "command", [["check", "--url", "https://h/"], ["test", "t.yaml"], ["config", "validate"], ["token"], ["serve"]]
)
def test_every_command_that_reads_a_config_takes_the_config_flag(command: list[str]) -> None:
    options = {}
    for parser in _parsers(_parser()):
        options[parser.prog] = {opt for action in parser._actions for opt in action.option_strings}
    prog = "gateway-authz " + " ".join(word for word in command if not word.startswith(("-", "h", "t.")))
    assert "--config" in options[prog.strip()], prog


def test_check_without_a_config_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--url", "https://contoso.servicebus.windows.net/orders"]) == 2
    assert "--config PATH is required" in capsys.readouterr().err
