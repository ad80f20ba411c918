"""The README keeps its promises: the settings table and the two commands."""

from __future__ import annotations

from bot.runtime.help import SETTINGS_HELP
from tests.support import ROOT

README = (ROOT / "README.md").read_text()
CI = (ROOT / ".ci" / "run").read_text()


def test_readme_documents_every_setting() -> None:
    for name, _ in SETTINGS_HELP:
        assert f"| `{name}` |" in README, name


def test_ci_runs_the_readme_test_command() -> None:
    blocks = README.split("```sh\n")
    test_command = blocks[2].split("\n```")[0].strip()
    assert "pytest" in test_command
    assert test_command in CI
