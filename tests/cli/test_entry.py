"""The CLI entry point stays light: it imports no heavy library, lists every command without
importing it, and each listed command loads with the help line the list shows."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from chainsense import __version__
from chainsense.cli import COMMANDS, app, load_command

HEAVY = ("web3", "sqlalchemy", "fastapi", "httpx", "eth_account", "uvicorn", "chainsense.config")


def _modules_after(*argv: str) -> set[str]:
    """The modules loaded by a fresh interpreter running ``chainsense *argv``."""
    code = (
        "import json, sys\n"
        f"sys.argv = ['chainsense', *{list(argv)!r}]\n"
        "from chainsense.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return set(json.loads(done.stderr.splitlines()[-1]))


@pytest.mark.parametrize(
    "argv",
    [(), ("--help",), ("--version",), ("verify", "--help"), ("device", "--help")],
    ids=["bare", "help", "version", "verify-help", "device-help"],
)
def test_the_entry_point_imports_no_heavy_library(argv: tuple[str, ...]) -> None:
    loaded = _modules_after(*argv)
    assert "typer" in loaded  # the probe works
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY or m in HEAVY)
    assert heavy == []


def test_the_command_list_loads_no_command_module() -> None:
    loaded = _modules_after("--help")
    assert not [m for m in loaded if m.startswith("chainsense.cli.") and m != "chainsense.cli"]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_loads_and_its_listed_help_is_its_own(name: str) -> None:
    command = load_command(name)
    assert command.name == name
    listed = COMMANDS[name][1]
    own = " ".join((command.help or "").split())
    assert own.startswith(listed.rstrip(".")), (listed, own)
    result = CliRunner().invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert re.search(r"<(str|bool|int|float|path|list\[\w+\])>", result.output) is None


def test_version_and_clean_metavars() -> None:
    runner = CliRunner()
    version = runner.invoke(app, ["--version"])
    assert (version.exit_code, version.output.strip()) == (0, f"chainsense {__version__}")
    send = runner.invoke(app, ["device", "send", "--help"]).output
    assert "--value TEXT" in send
    assert "--count INTEGER" in send
    assert re.search(r"<(str|bool|int|list\[str\])>", send) is None
    assert re.search(r"^  --help +Show", send, re.MULTILINE)


def test_a_bad_setting_is_one_line_naming_it() -> None:
    result = CliRunner().invoke(app, ["device", "list"], env={"CHAINSENSE_PORT": "abc"})
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: CHAINSENSE_PORT: ")
