"""``chainsense shipment|market|charging``: the settlement actions from a terminal.

They call the contracts directly with :mod:`chainsense.settlement` (no API, no API key): the chain
is the dev chain (``CHAINSENSE_ANVIL_*``) unless ``--rpc`` or ``CHAINSENSE_RPC_URL`` names another,
and the contract addresses come from the deployment recorded in ``CHAINSENSE_DATA_DIR``.

Who signs: a user's action signs with ``--account N`` (an Anvil dev account; dev chain only) or
with the private key in ``CHAINSENSE_WALLET_KEY``. Platform actions (the oracle's report, and by
default claims, proofs, clearing, settling, refunds, which anyone may send) sign with the operator
key (``CHAINSENSE_OPERATOR_KEY``; Anvil dev key 1 on the dev chain). Evidence for ``--reading ID``
comes from the platform's store, as ``chainsense proof get`` reads it (exit 4 while pending).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from chainsense.errors import ChainSenseError, ConfigError

if TYPE_CHECKING:
    from chainsense.chain import ChainClient, Signer
    from chainsense.config import Settings
    from chainsense.provenance.export import Pending
    from chainsense.settlement import Evidence, Settlement, TxResult

__all__ = ["charging_app", "market_app", "shipment_app"]

T = TypeVar("T")


def to_checksum_address(address: str) -> str:
    from eth_utils.address import to_checksum_address as checksum

    return checksum(address)


shipment_app = typer.Typer(help="Cold-chain escrow shipments.", no_args_is_help=True)
market_app = typer.Typer(help="The peer-to-peer energy market.", no_args_is_help=True)
charging_app = typer.Typer(help="Pay-per-use charging sessions.", no_args_is_help=True)

Account = Annotated[
    int | None,
    typer.Option(
        help="Sign with this Anvil dev account (dev chain only; else CHAINSENSE_WALLET_KEY)."
    ),
]
Reading = Annotated[int, typer.Option("--reading", help="Id of a stored, anchored reading.")]


class SettlementInputError(ChainSenseError):
    """The command cannot be carried out with what the platform stores."""


class _ProofPendingError(Exception):
    def __init__(self, pending: Pending) -> None:
        super().__init__(pending.detail)
        self.pending = pending


def _rpc_option(
    ctx: typer.Context,
    rpc: Annotated[
        str | None,
        typer.Option(
            "--rpc", help="JSON-RPC URL (default: CHAINSENSE_RPC_URL, else the dev chain)."
        ),
    ] = None,
) -> None:
    ctx.obj = rpc


for _app in (shipment_app, market_app, charging_app):
    _app.callback()(_rpc_option)


class _Ctx:
    def __init__(self, settings: Settings, client: ChainClient, settlement: Settlement) -> None:
        self.settings = settings
        self.client = client
        self.s = settlement

    def user(self, account: int | None) -> Signer:
        from chainsense.chain import Signer
        from chainsense.chain.devkeys import ANVIL_DEV_KEYS

        if account is not None:
            if not self.settings.uses_dev_chain:
                raise ConfigError("--account uses a public Anvil dev key: dev chain only; set "
                                  "CHAINSENSE_WALLET_KEY to your wallet's key instead")  # fmt: skip
            if not 0 <= account < len(ANVIL_DEV_KEYS):
                raise ConfigError(f"--account must be 0-{len(ANVIL_DEV_KEYS) - 1}")
            return Signer(self.client, ANVIL_DEV_KEYS[account])
        key = os.environ.get("CHAINSENSE_WALLET_KEY")
        if not key:
            raise ConfigError("give --account N (dev chain) or set CHAINSENSE_WALLET_KEY")
        return Signer(self.client, key)

    def operator(self, account: int | None = None) -> Signer:
        from chainsense.chain import Signer
        from chainsense.chain.runtime import role_keys

        if account is not None:
            return self.user(account)
        return Signer(self.client, role_keys(self.settings).operator)

    async def evidence(self, reading_id: int) -> Evidence:
        from chainsense.cli.proof import _service
        from chainsense.provenance.export import Pending
        from chainsense.settlement import Evidence

        store, service = await _service(self.settings)
        try:
            found = await service.proof(reading_id)
        finally:
            await store.close()
        if isinstance(found, Pending):
            raise _ProofPendingError(found)
        return Evidence(found.reading, found.signature, found.root, tuple(found.proof))


@asynccontextmanager
async def _open(rpc: str | None) -> AsyncIterator[_Ctx]:
    from chainsense.chain import ChainClient, DeploymentStore
    from chainsense.cli._common import settings as load_settings
    from chainsense.settlement import open_settlement

    settings = load_settings(rpc)
    url = settings.dev_rpc_url
    async with await ChainClient.connect(url, timeout=settings.rpc_timeout) as client:
        chain_id = await client.chain_id()
        records = DeploymentStore(settings.deployments_dir)
        deployment = records.load(chain_id)
        if deployment is None:
            raise ConfigError(f"no deployment recorded for chain {chain_id} in "
                              f"{records.path(chain_id)}")  # fmt: skip
        yield _Ctx(settings, client, open_settlement(client, deployment))


def _go(ctx: typer.Context, action: Callable[[_Ctx], Awaitable[T]]) -> T:
    from chainsense.cli._common import run as _run

    async def run() -> T:
        async with _open(ctx.obj) as c:
            return await action(c)

    try:
        return _run(run())
    except _ProofPendingError as exc:
        typer.secho(f"pending: {exc} (retry in about {exc.pending.expected_wait_seconds:.0f} s)",
                    fg="yellow", err=True)  # fmt: skip
        raise typer.Exit(4) from exc


def _tx(tx: TxResult, what: str = "") -> None:
    typer.echo(f"{what}tx {tx.tx_hash} (gas {tx.gas_used})")


# --- shipments --------------------------------------------------------------------------------


@shipment_app.command("open")
def shipment_open(
    ctx: typer.Context,
    carrier: Annotated[str, typer.Option(help="The carrier's address.")],
    logger: Annotated[list[str], typer.Option(help="A logger device address (repeatable).")],
    min_value: Annotated[int, typer.Option("--min", help="Lowest allowed value (schema scale).")],
    max_value: Annotated[int, typer.Option("--max", help="Highest allowed value.")],
    start_ms: Annotated[int, typer.Option(help="Window start, device time ms.")],
    end_ms: Annotated[int, typer.Option(help="Window end, device time ms.")],
    payment: Annotated[int, typer.Option(help="Token units deposited.")],
    penalty: Annotated[int, typer.Option(help="Penalty per breach, token units.")],
    max_penalty: Annotated[int, typer.Option(help="Largest total penalty.")],
    schema: Annotated[str, typer.Option(help="Schema name.")] = "chainsense.coldchain.v1",
    value_index: Annotated[int, typer.Option(help="Which value of the reading.")] = 0,
    account: Account = None,
) -> None:
    """Open a shipment as the shipper, depositing the payment."""
    from chainsense.settlement import ShipmentTerms
    from chainsense.telemetry.schemas import BUILTIN_SCHEMAS

    terms = ShipmentTerms(
        carrier=to_checksum_address(carrier), loggers=[to_checksum_address(a) for a in logger],
        schema=BUILTIN_SCHEMAS.by_name(schema).id, value_index=value_index, min_value=min_value,
        max_value=max_value, window_start_ms=start_ms, window_end_ms=end_ms, payment=payment,
        penalty_per_breach=penalty, max_penalty=max_penalty,
    )  # fmt: skip
    shipment, tx = _go(ctx, lambda c: c.s.escrow.open_shipment(c.user(account), terms))
    _tx(tx, f"shipment {shipment} opened: ")


@shipment_app.command("status")
def shipment_status(
    ctx: typer.Context,
    shipment: int,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a shipment and the penalty if it settled now."""

    async def show(c: _Ctx) -> None:
        state = await c.s.escrow.shipment(shipment)
        breaches, penalty = await c.s.escrow.penalty(shipment)
        if as_json:
            from chainsense.cli._common import echo_json

            echo_json({
                "shipment": shipment, "status": state.status.name.lower(),
                "shipper": state.shipper, "carrier": state.carrier, "payment": state.payment,
                "reported_breaches": state.reported_breaches,
                "proven_breaches": state.proven_breaches, "penalty_now": penalty,
                "breaches_counted": breaches, "claim_deadline": state.claim_deadline,
            })  # fmt: skip
            return
        typer.echo(
            f"shipment {shipment}: {state.status.name.lower()}, shipper {state.shipper}, carrier "
            f"{state.carrier}, payment {state.payment}, breaches reported "
            f"{state.reported_breaches} proven {state.proven_breaches}, penalty {penalty} "
            f"({breaches} counted), claims until {state.claim_deadline}"
        )

    _go(ctx, show)


@shipment_app.command("report")
def shipment_report(
    ctx: typer.Context,
    shipment: int,
    breaches: Annotated[
        int | None, typer.Option(help="Your own result: breaches found (0 = compliant).")
    ] = None,
    root: Annotated[str | None, typer.Option(help="Your own evidence root, 0x + 64 hex.")] = None,
) -> None:
    """Oracle (operator key): report delivery, with the result computed from the stored
    readings (as GET /v1/shipments/ID/compliance), or your own with --breaches and --root."""
    if (breaches is None) != (root is None):
        raise typer.BadParameter("give both --breaches and --root, or neither")

    async def report(c: _Ctx) -> TxResult:
        if breaches is not None and root is not None:
            return await c.s.escrow.report_delivery(c.operator(), shipment, breaches=breaches,
                evidence_root=bytes.fromhex(root.removeprefix("0x")))  # fmt: skip
        from chainsense.cli.proof import _service
        from chainsense.settlement.oracle import assess

        store, _ = await _service(c.settings)
        try:
            found = await assess(store, c.s.escrow, shipment)
        finally:
            await store.close()
        if found.evidence_reading is None:
            raise SettlementInputError(
                f"no readings of shipment {shipment}'s loggers in its window; give --breaches "
                "and --root to report anyway"
            )
        evidence = await c.evidence(found.evidence_reading)
        typer.echo(f"computed: {found.readings} readings in the window, {len(found.breaches)} "
                   f"out of range {list(found.breaches)}; evidence: reading "
                   f"{found.evidence_reading}, root 0x{evidence.root.hex()}")  # fmt: skip
        return await c.s.escrow.report_delivery(
            c.operator(), shipment, breaches=len(found.breaches), evidence_root=evidence.root
        )

    _tx(_go(ctx, report))


@shipment_app.command("claim")
def shipment_claim(
    ctx: typer.Context, shipment: int, reading: Reading, account: Account = None
) -> None:
    """Prove a breach on-chain with a stored, anchored reading (anyone may; default signer:
    the operator key)."""

    async def claim(c: _Ctx) -> TxResult:
        return await c.s.escrow.claim_breach(
            c.operator(account), shipment, await c.evidence(reading)
        )

    _tx(_go(ctx, claim), f"breach proven with reading {reading}: ")


@shipment_app.command("settle")
def shipment_settle(ctx: typer.Context, shipment: int, account: Account = None) -> None:
    """Settle a shipment after its challenge window."""
    _tx(_go(ctx, lambda c: c.s.escrow.settle(c.operator(account), shipment)))


@shipment_app.command("withdraw")
def shipment_withdraw(ctx: typer.Context, account: Account = None) -> None:
    """Withdraw what the escrow owes you."""
    _tx(_go(ctx, lambda c: c.s.escrow.withdraw(c.user(account))))


# --- market -----------------------------------------------------------------------------------


@market_app.command("deposit")
def market_deposit(
    ctx: typer.Context, amount: Annotated[int, typer.Argument()], account: Account = None
) -> None:
    """Deposit token units into your market balance."""
    _tx(_go(ctx, lambda c: c.s.market.deposit(c.user(account), amount)))


@market_app.command("order")
def market_order(
    ctx: typer.Context,
    side: Annotated[str, typer.Argument(help="bid or ask")],
    interval: Annotated[int, typer.Option(help="Interval number (start // interval seconds).")],
    quantity: Annotated[int, typer.Option(help="Wh.")],
    price: Annotated[int, typer.Option(help="Limit price, token units per Wh.")],
    meter: Annotated[str | None, typer.Option(help="Asks: your meter's address.")] = None,
    account: Account = None,
) -> None:
    """Place a bid or a meter-backed ask before the interval starts."""
    if side not in ("bid", "ask") or (side == "ask") != (meter is not None):
        raise typer.BadParameter("SIDE is bid or ask; an ask needs --meter, a bid does not")

    async def place(c: _Ctx) -> tuple[int, TxResult]:
        signer = c.user(account)
        if meter is None:
            return await c.s.market.place_bid(
                signer, interval=interval, quantity_wh=quantity, price_per_wh=price
            )
        return await c.s.market.place_ask(signer, interval=interval, quantity_wh=quantity,
            meter=to_checksum_address(meter), price_per_wh=price)  # fmt: skip

    order, tx = _go(ctx, place)
    _tx(tx, f"{side} {order} placed: ")


@market_app.command("clear")
def market_clear(ctx: typer.Context, interval: int, account: Account = None) -> None:
    """Clear a started interval (uniform-price double auction)."""

    async def clear(c: _Ctx) -> None:
        tx = await c.s.market.clear(c.operator(account), interval)
        state = await c.s.market.interval(interval)
        _tx(tx, f"interval {interval} cleared at {state.price}/Wh, {state.sold_wh} Wh sold: ")

    _go(ctx, clear)


@market_app.command("prove")
def market_prove(ctx: typer.Context, ask: int, reading: Reading, account: Account = None) -> None:
    """Prove an ask's delivery with its meter's stored, anchored reading."""

    async def prove(c: _Ctx) -> TxResult:
        return await c.s.market.prove_delivery(c.operator(account), ask, await c.evidence(reading))

    _tx(_go(ctx, prove), f"delivery of ask {ask} proven: ")


@market_app.command("settle")
def market_settle(ctx: typer.Context, bid: int, account: Account = None) -> None:
    """Finalize a bid after the delivery deadline (pays for delivered energy, refunds the rest)."""
    _tx(_go(ctx, lambda c: c.s.market.finalize_bid(c.operator(account), bid)))


@market_app.command("withdraw")
def market_withdraw(ctx: typer.Context, account: Account = None) -> None:
    """Withdraw your free market balance."""
    _tx(_go(ctx, lambda c: c.s.market.withdraw(c.user(account))))


# --- charging ---------------------------------------------------------------------------------


@charging_app.command("price")
def charging_price(
    ctx: typer.Context, charger: str, price: Annotated[int, typer.Argument()],
    account: Account = None,
) -> None:  # fmt: skip
    """Station: set your charger's price per Wh."""
    address = to_checksum_address(charger)
    _tx(_go(ctx, lambda c: c.s.charging.set_price(c.user(account), address, price)))


@charging_app.command("open")
def charging_open(
    ctx: typer.Context,
    charger: Annotated[str, typer.Option(help="The charger's device address.")],
    deposit: Annotated[int, typer.Option(help="Token units deposited.")],
    account: Account = None,
) -> None:
    """Vehicle: open a session with a deposit."""
    address = to_checksum_address(charger)
    session, tx = _go(ctx, lambda c: c.s.charging.open_session(c.user(account), address, deposit))
    _tx(tx, f"session {session} opened: ")


@charging_app.command("close")
def charging_close(
    ctx: typer.Context, session: int, reading: Reading, account: Account = None
) -> None:
    """Station: close a session with the charger's stored, anchored reading."""

    async def close(c: _Ctx) -> None:
        tx = await c.s.charging.close_session(
            c.operator(account), session, await c.evidence(reading)
        )
        state = await c.s.charging.session(session)
        _tx(tx, f"session {session} closed: {state.energy_wh} Wh, {state.amount_due} due: ")

    _go(ctx, close)


@charging_app.command("refund")
def charging_refund(ctx: typer.Context, session: int, account: Account = None) -> None:
    """Refund a session the station never closed, after the timeout."""
    _tx(_go(ctx, lambda c: c.s.charging.refund_expired(c.operator(account), session)))


@charging_app.command("withdraw")
def charging_withdraw(ctx: typer.Context, account: Account = None) -> None:
    """Withdraw what the charging contract owes you."""
    _tx(_go(ctx, lambda c: c.s.charging.withdraw(c.user(account))))
