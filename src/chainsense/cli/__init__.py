"""The ``chainsense`` command line: the same services as the API, for a terminal.

It starts at once: this module imports only Typer, and each command group lives in its own module
(``chainsense.cli.<group>``) that is imported when, and only when, that command runs or its own
help is shown. Heavy libraries (web3, SQLAlchemy, FastAPI, httpx) are imported inside the command
functions that need them. ``chainsense --help`` lists every command from :data:`COMMANDS`
without importing any of them.

Modules: ``_common`` (settings, API client, errors -> exit codes), ``serve``, ``chain`` (``chain``
and ``contracts``), ``apikey``, ``device``, ``proof`` (``proof`` and ``export``), ``verify``,
``anomalies``, ``alarms``, ``settlement`` (``shipment``, ``market``, ``charging``),
``market_agent`` (``market agent``), ``demo``. They import ``_common``, never this module or each
other (except ``market_agent``, which builds on ``settlement``).

Exit codes: 0 success, 1 a check failed or the platform refused (verify mismatch, audit finding,
rejected reading), 2 a usage or configuration error, 3 the chain or the platform could not be
reached (or a transaction reverted), 4 a proof is not ready yet (pending anchoring).
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

__all__ = ["COMMANDS", "app", "main"]

#: Every top-level command: name -> (``module:attribute``, one-line help). The attribute is a
#: ``typer.Typer`` (a command group) or a function (a single command). The help line is what
#: ``chainsense --help`` shows without importing the module; a test checks it matches.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": (
        "chainsense.cli.serve:serve",
        "Serve the API and the console (starting the dev chain when no RPC URL is set).",
    ),
    "chain": (
        "chainsense.cli.chain:chain_app",
        "The chain ChainSense anchors to.",
    ),
    "contracts": (
        "chainsense.cli.chain:contracts_app",
        "Deploy, verify and audit the contracts.",
    ),
    "apikey": (
        "chainsense.cli.apikey:apikey_app",
        "API keys for operators (hashed at rest).",
    ),
    "device": (
        "chainsense.cli.device:device_app",
        "Device keys, registration, and signed readings (buffered while the platform is down).",
    ),
    "proof": (
        "chainsense.cli.proof:proof_app",
        "Proofs of single readings.",
    ),
    "export": (
        "chainsense.cli.proof:export",
        "Export a device's readings, with their proofs, or every anchored batch of a period.",
    ),
    "verify": (
        "chainsense.cli.verify:verify_command",
        "Verify a proof or a bundle: each check is named; exit 0 valid, 1 a check failed.",
    ),
    "anomalies": (
        "chainsense.cli.anomalies:anomalies",
        "List anomaly events (oldest first); with --follow keep printing new ones.",
    ),
    "shipment": (
        "chainsense.cli.settlement:shipment_app",
        "Cold-chain escrow shipments.",
    ),
    "market": (
        "chainsense.cli.settlement:market_app",
        "The peer-to-peer energy market.",
    ),
    "charging": (
        "chainsense.cli.settlement:charging_app",
        "Pay-per-use charging sessions.",
    ),
    "alarms": (
        "chainsense.cli.alarms:alarms_app",
        "Alarms: anomalies grouped per device, acknowledged and cleared.",
    ),
    "demo": (
        "chainsense.cli.demo:demo_command",
        "Run the scripted scenario (trucks, homes, charger, machine) on a fresh platform.",
    ),
}

#: Sub-groups attached to a lazily loaded group when it loads: group -> [(name, module:attr)].
SUBGROUPS: dict[str, list[tuple[str, str]]] = {
    "market": [("agent", "chainsense.cli.market_agent:agent_app")],
}


def _import(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def load_command(name: str) -> Any:
    """Import a top-level command's module and build its click command."""
    spec, _ = COMMANDS[name]
    target = _import(spec)
    command: Any
    if isinstance(target, typer.Typer):
        for sub_name, sub_spec in SUBGROUPS.get(name, []):
            sub = _import(sub_spec)
            if all(info.typer_instance is not sub for info in target.registered_groups):
                target.add_typer(sub, name=sub_name)
        command = typer.main.get_group(target)
    else:
        single = typer.Typer(add_completion=False)
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    _plain_help(command)
    return command


def _plain_help(command: Any) -> None:
    """Click's plain help layout instead of Rich's: Rich and its Markdown parser take a few
    hundred milliseconds to import, more than the rest of ``--help``."""
    command.rich_markup_mode = None
    for sub in getattr(command, "commands", {}).values():
        _plain_help(sub)


class LazyGroup(TyperGroup):
    """A Typer group whose commands are imported on first use (see :data:`COMMANDS`)."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._loaded: dict[str, Any] = {}
        self._listing = False
        _tidy_help_types()

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *COMMANDS]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        eager = super().get_command(ctx, cmd_name)
        if eager is not None or cmd_name not in COMMANDS:
            return eager
        if cmd_name not in self._loaded:
            if self._listing:  # the command list needs its help line only
                return TyperCommand(name=cmd_name, help=COMMANDS[cmd_name][1])
            self._loaded[cmd_name] = load_command(cmd_name)
        return self._loaded[cmd_name]

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


_TYPE_NAMES = {
    "str": "TEXT",
    "int": "INTEGER",
    "float": "FLOAT",
    "path": "PATH",
    "file": "FILE",
    "directory": "DIR",
    "int range": "INTEGER",
    "float range": "FLOAT",
}


def _tidy_help_types() -> None:
    """Show option types the way click and most CLIs do (``TEXT``, ``INTEGER``, ``PATH``; no
    type on a flag) instead of Typer 0.29's ``<str>``, ``<bool>``, ``<list[str]>``."""
    from typer.core import TyperArgument, TyperOption, _TyperParameter

    if getattr(_TyperParameter, "_chainsense_tidy", False):
        return
    original = _TyperParameter.display_type

    def display_type(self: Any, ctx: Any) -> str | None:
        if isinstance(self, TyperOption) and (self.is_flag or self.count):
            return None
        label = original(self, ctx).strip("<>")
        if label.startswith("list[") and label.endswith("]"):
            label = label[5:-1]
        if "|" in label:
            return f"[{label}]"
        return _TYPE_NAMES.get(label, label.upper())

    def display_name_raw(self: Any) -> str:
        return str(self.metavar) if self.metavar is not None else str(self.name).upper()

    _TyperParameter.display_type = display_type  # type: ignore[assignment,method-assign]
    TyperArgument.display_name_raw = property(display_name_raw)  # type: ignore[assignment,method-assign]
    _TyperParameter._chainsense_tidy = True  # type: ignore[attr-defined]


app = typer.Typer(
    cls=LazyGroup,
    help="ChainSense: signed IoT readings, anchored on an EVM chain, provable to anyone.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from chainsense import __version__

        typer.echo(f"chainsense {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_version, help="Print the version."),
    ] = False,
) -> None:
    import os

    from chainsense.redact import env_secrets, install_log_redaction

    # Whatever a library logs (a URL with its credentials, a key), it is scrubbed first.
    install_log_redaction(env_secrets(os.environ))
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)
