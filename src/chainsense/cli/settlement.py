"""``chainsense shipment|market|charging``: the settlement actions from a terminal.

What they need from the platform comes through its HTTP API, at the URL every command derives
from the settings (``--api`` after the group, ``CHAINSENSE_API_URL``, ``CHAINSENSE_HOST`` /
``CHAINSENSE_PORT``, the running server's record; see :mod:`chainsense.cli._common`): the
contract addresses (``GET /v1/chain``, public), the proof behind ``--reading ID`` (``GET
/v1/readings/{reading_id}/proof``; exit 4 while pending) and the oracle's compliance result
(``GET /v1/shipments/{shipment}/compliance``), with the key in ``CHAINSENSE_API_KEY`` where the
route needs one. The commands never open the platform's database or data dir.

Transactions go straight to the chain (the chain is not the platform): the dev chain
(``CHAINSENSE_ANVIL_*``) unless ``--rpc`` or ``CHAINSENSE_RPC_URL`` names another, which must be
the chain the platform anchors to. Who signs: a user's action signs with ``--account N`` (an Anvil
dev account; dev chain only) or with the private key in ``CHAINSENSE_WALLET_KEY``. Platform
actions (the oracle's report, and by default claims, proofs, clearing, settling, refunds, which
anyone may send) sign with the operator key (``CHAINSENSE_OPERATOR_KEY``; Anvil dev key 1 on the
dev chain).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from chainsense.cli._common import ApiOption, JsonOption, RpcOption
from chainsense.errors import ChainSenseError, ConfigError

if TYPE_CHECKING:
    import httpx

    from chainsense.chain import ChainClient, Signer
    from chainsense.config import Settings
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


class ProofPendingError(Exception):
    """What the command needs rests on a reading whose batch is not anchored yet (exit 4)."""

    def __init__(self, detail: str, wait_s: float) -> None:
        super().__init__(detail)
        self.wait_s = wait_s


def _options(ctx: typer.Context, rpc: RpcOption = None, api: ApiOption = None) -> None:
    ctx.obj = (rpc, api)


for _app in (shipment_app, market_app, charging_app):
    _app.callback()(_options)


def _settings_of(ctx: typer.Context) -> Settings:
    from chainsense.cli._common import settings

    rpc, api = ctx.obj or (None, None)
    return settings(rpc, api)


def platform_get(cfg: Settings, path: str, *, public: bool = False, **kwargs: Any) -> Any:
    """``GET path`` on the platform's API, as JSON (``public``: no API key needed)."""
    return platform_call(cfg, "GET", path, public=public, **kwargs).json()


def platform_call(
    cfg: Settings, method: str, path: str, *, public: bool = False, **kwargs: Any
) -> httpx.Response:
    """One request to the platform's API; an error status raises (see ``api_request``)."""
    from chainsense.cli._common import api_key, api_request

    key = (api_key(required=False) or "") if public else None
    return api_request(cfg, method, path, key=key, **kwargs)


def proof_evidence(cfg: Settings, reading_id: int) -> Evidence:
    """The on-chain evidence of a stored reading, from its proof document (``GET
    /v1/readings/{reading_id}/proof``); :class:`ProofPendingError` while it is not anchored."""
    from chainsense.provenance.proof import ProofDocument
    from chainsense.settlement import Evidence

    response = platform_call(cfg, "GET", f"/v1/readings/{reading_id}/proof")
    body = response.json()
    if response.status_code == 202:
        raise ProofPendingError(
            f"reading {reading_id} is {body['state']} ({body['detail']})",
            float(body["expected_wait_seconds"]),
        )
    doc = ProofDocument.from_json(body)
    return Evidence(doc.reading, doc.signature, doc.root, doc.proof)


def compliance(cfg: Settings, shipment: int) -> dict[str, Any]:
    """The oracle's result computed by the platform (``GET /v1/shipments/{shipment}/compliance``);
    :class:`ProofPendingError` while its evidence reading is not anchored."""
    from chainsense.cli._common import PlatformError, problem_text

    path = f"/v1/shipments/{shipment}/compliance"
    response = platform_call(cfg, "GET", path, ok=(409,))
    if response.status_code == 409:
        if "Retry-After" in response.headers:
            raise ProofPendingError(problem_text(response), float(response.headers["Retry-After"]))
        raise PlatformError(409, f"GET {cfg.client_api_url}{path}: {problem_text(response)}")
    found: dict[str, Any] = response.json()
    return found


def _read(ctx: typer.Context, path: str, **params: Any) -> Any:
    """A read command's answer from the platform's API (no chain access)."""
    from chainsense.cli._common import call

    cfg = _settings_of(ctx)
    query = {k: v for k, v in params.items() if v is not None}
    return call(lambda: platform_get(cfg, path, params=query))


def _show(doc: dict[str, Any], as_json: bool, text: Callable[[dict[str, Any]], str]) -> None:
    """One document of the API: as JSON, or as a line of text."""
    if as_json:
        from chainsense.cli._common import echo_json

        echo_json(doc)
        return
    typer.echo(text(doc))


def _show_page(page: dict[str, Any], as_json: bool, line: Callable[[dict[str, Any]], str]) -> None:
    """A list route's page: as JSON, or one line per item and the cursor of older ones."""
    if as_json:
        from chainsense.cli._common import echo_json

        echo_json(page)
        return
    for item in page["items"]:
        typer.echo(line(item))
    if page["next_cursor"] is not None:
        typer.echo(f"(older: --cursor {page['next_cursor']})")


Cursor = Annotated[int | None, typer.Option(min=1, help="next_cursor of the last page.")]
Limit = Annotated[int, typer.Option(min=1, max=100, help="Records per page.")]


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
        return proof_evidence(self.settings, reading_id)


async def _settlement_at(client: ChainClient, contracts: dict[str, Any]) -> Settlement:
    """Clients of the settlement contracts the platform names, paid in the escrow's token."""
    from chainsense.settlement import (
        ChargingPaymentsClient,
        ColdChainEscrowClient,
        EnergyMarketClient,
        Settlement,
    )

    try:
        escrow, market, charging = (
            str(contracts[name]["address"])
            for name in ("ColdChainEscrow", "EnergyMarket", "ChargingPayments")
        )
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"the platform's deployment has no settlement contract {exc}") from None
    token = str(await client.call(client.contract("ColdChainEscrow", escrow).functions.token()))
    return Settlement(
        escrow=ColdChainEscrowClient(client, escrow, token),
        market=EnergyMarketClient(client, market, token),
        charging=ChargingPaymentsClient(client, charging, token),
    )


@asynccontextmanager
async def _open(settings: Settings) -> AsyncIterator[_Ctx]:
    from chainsense.chain import ChainClient

    chain = platform_get(settings, "/v1/chain", public=True)
    url = settings.dev_rpc_url
    async with await ChainClient.connect(url, timeout=settings.rpc_timeout) as client:
        chain_id = await client.chain_id()
        if chain_id != chain["chain_id"]:
            raise ConfigError(
                f"the platform at {settings.client_api_url} uses chain {chain['chain_id']} but "
                f"the RPC {url} is chain {chain_id}; point --rpc (CHAINSENSE_RPC_URL) at the "
                "platform's chain"
            )
        yield _Ctx(settings, client, await _settlement_at(client, chain["contracts"]))


def _pending(exc: ProofPendingError) -> NoReturn:
    typer.secho(f"pending: {exc} (retry in about {exc.wait_s:.0f} s)", fg="yellow", err=True)
    raise typer.Exit(4) from exc


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine: ChainSense errors as one line and an exit code (see
    :mod:`chainsense.cli`), a pending proof as exit 4."""
    from chainsense.cli._common import run

    try:
        return run(coro)
    except ProofPendingError as exc:
        _pending(exc)


def _run_sync(func: Callable[[], T]) -> T:
    """:func:`_run` for a blocking call."""
    from chainsense.cli._common import call

    try:
        return call(func)
    except ProofPendingError as exc:
        _pending(exc)


def _go(ctx: typer.Context, action: Callable[[_Ctx], Awaitable[T]]) -> T:
    async def run() -> T:
        async with _open(_settings_of(ctx)) as c:
            return await action(c)

    return _run(run())


def _tx(tx: TxResult, what: str = "", as_json: bool = False, **fields: Any) -> None:
    """A mined transaction: ``<what>tx 0x… (gas N)``, or with ``--json`` one object with
    ``tx_hash``, ``gas_used`` and what the command made or found (``fields``)."""
    if as_json:
        from chainsense.cli._common import echo_json

        echo_json({**fields, "tx_hash": tx.tx_hash, "gas_used": tx.gas_used})
        return
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
    as_json: JsonOption = False,
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
    _tx(tx, f"shipment {shipment} opened: ", as_json, shipment=shipment)


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


def _shipment_line(x: dict[str, Any]) -> str:
    return (
        f"shipment {x['id']}: {x['status']}, shipper {x['shipper']}, carrier {x['carrier']}, "
        f"payment {x['payment']}, breaches reported {x['reported_breaches']} proven "
        f"{x['proven_breaches']}, penalty {x['penalty']} ({x['breaches_counted']} counted), "
        f"claims until {x['claim_deadline']}"
    )


@shipment_app.command("list")
def shipment_list(
    ctx: typer.Context, cursor: Cursor = None, limit: Limit = 20, as_json: JsonOption = False
) -> None:
    """The platform's shipments, newest first (GET /v1/shipments)."""
    _show_page(_read(ctx, "/v1/shipments", cursor=cursor, limit=limit), as_json, _shipment_line)


@shipment_app.command("compliance")
def shipment_compliance(ctx: typer.Context, shipment: int, as_json: JsonOption = False) -> None:
    """The oracle's result the platform computes from its stored readings (what `report` sends);
    exit 4 while its evidence reading is not anchored."""
    cfg = _settings_of(ctx)
    found = _run_sync(lambda: compliance(cfg, shipment))
    if as_json:
        from chainsense.cli._common import echo_json

        echo_json(found)
        return
    verdict = "compliant" if found["compliant"] else "NOT compliant"
    typer.echo(
        f"shipment {shipment}: {verdict}, {found['readings']} readings in the window, "
        f"{found['breaches']} out of range {found['breach_reading_ids']}; evidence: reading "
        f"{found['evidence_reading_id']}, root {found['evidence_root']}"
    )


@shipment_app.command("report")
def shipment_report(
    ctx: typer.Context,
    shipment: int,
    breaches: Annotated[
        int | None, typer.Option(help="Your own result: breaches found (0 = compliant).")
    ] = None,
    root: Annotated[str | None, typer.Option(help="Your own evidence root, 0x + 64 hex.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Oracle (operator key): report delivery, with the result computed from the stored
    readings (as GET /v1/shipments/ID/compliance), or your own with --breaches and --root."""
    if (breaches is None) != (root is None):
        raise typer.BadParameter("give both --breaches and --root, or neither")

    reported: dict[str, Any] = {"shipment": shipment, "breaches": breaches, "evidence_root": root}

    async def report(c: _Ctx) -> TxResult:
        if breaches is not None and root is not None:
            return await c.s.escrow.report_delivery(c.operator(), shipment, breaches=breaches,
                evidence_root=bytes.fromhex(root.removeprefix("0x")))  # fmt: skip
        found = compliance(c.settings, shipment)
        if found["evidence_root"] is None:
            raise SettlementInputError(
                f"no readings of shipment {shipment}'s loggers in its window; give --breaches "
                "and --root to report anyway"
            )
        reported.update(breaches=found["breaches"], evidence_root=found["evidence_root"],
                        computed=found)  # fmt: skip
        if not as_json:
            typer.echo(
                f"computed: {found['readings']} readings in the window, {found['breaches']} "
                f"out of range {found['breach_reading_ids']}; evidence: reading "
                f"{found['evidence_reading_id']}, root {found['evidence_root']}"
            )
        return await c.s.escrow.report_delivery(
            c.operator(), shipment, breaches=found["breaches"],
            evidence_root=bytes.fromhex(found["evidence_root"].removeprefix("0x")),
        )  # fmt: skip

    _tx(_go(ctx, report), "", as_json, **reported)


@shipment_app.command("claim")
def shipment_claim(
    ctx: typer.Context, shipment: int, reading: Reading, account: Account = None,
    as_json: JsonOption = False,
) -> None:  # fmt: skip
    """Prove a breach on-chain with a stored, anchored reading (anyone may; default signer:
    the operator key)."""

    async def claim(c: _Ctx) -> TxResult:
        return await c.s.escrow.claim_breach(
            c.operator(account), shipment, await c.evidence(reading)
        )

    _tx(_go(ctx, claim), f"breach proven with reading {reading}: ", as_json,
        shipment=shipment, reading=reading)  # fmt: skip


@shipment_app.command("settle")
def shipment_settle(
    ctx: typer.Context, shipment: int, account: Account = None, as_json: JsonOption = False
) -> None:
    """Settle a shipment after its challenge window."""
    tx = _go(ctx, lambda c: c.s.escrow.settle(c.operator(account), shipment))
    _tx(tx, "", as_json, shipment=shipment)


@shipment_app.command("withdraw")
def shipment_withdraw(
    ctx: typer.Context, account: Account = None, as_json: JsonOption = False
) -> None:
    """Withdraw what the escrow owes you."""
    _tx(_go(ctx, lambda c: c.s.escrow.withdraw(c.user(account))), "", as_json)


# --- market -----------------------------------------------------------------------------------


def _interval_text(i: dict[str, Any]) -> str:
    if not i["cleared"]:
        return f"interval {i['interval']} not cleared (starts at {i['starts_at']})"
    return (f"interval {i['interval']} cleared at {i['price']}/Wh, {i['sold_wh']} Wh sold, "
            f"{i['delivered_wh']} Wh proven delivered")  # fmt: skip


@market_app.command("orders")
def market_orders(
    ctx: typer.Context, cursor: Cursor = None, limit: Limit = 20, as_json: JsonOption = False
) -> None:
    """Market orders, newest first, with their interval's clearing (GET /v1/market/orders)."""
    _show_page(_read(ctx, "/v1/market/orders", cursor=cursor, limit=limit), as_json, _order_line)


def _order_line(o: dict[str, Any]) -> str:
    meter = f", meter {o['meter']}" if o["meter"] else ""
    return (
        f"{o['side']} {o['id']} by {o['participant']}{meter}: {o['quantity_wh']} Wh "
        f"at {o['price_per_wh']}/Wh; {_interval_text(o['interval_state'])}"
    )


@market_app.command("interval")
def market_interval(ctx: typer.Context, interval: int, as_json: JsonOption = False) -> None:
    """An interval's clearing state (GET /v1/market/intervals/N)."""
    _show(_read(ctx, f"/v1/market/intervals/{interval}"), as_json, _interval_text)


@market_app.command("deposit")
def market_deposit(
    ctx: typer.Context,
    amount: Annotated[int, typer.Argument()],
    account: Account = None,
    as_json: JsonOption = False,
) -> None:
    """Deposit token units into your market balance."""
    tx = _go(ctx, lambda c: c.s.market.deposit(c.user(account), amount))
    _tx(tx, "", as_json, amount=amount)


@market_app.command("order")
def market_order(
    ctx: typer.Context,
    side: Annotated[str, typer.Argument(help="bid or ask")],
    interval: Annotated[int, typer.Option(help="Interval number (start // interval seconds).")],
    quantity: Annotated[int, typer.Option(help="Wh.")],
    price: Annotated[int, typer.Option(help="Limit price, token units per Wh.")],
    meter: Annotated[str | None, typer.Option(help="Asks: your meter's address.")] = None,
    account: Account = None,
    as_json: JsonOption = False,
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
    _tx(tx, f"{side} {order} placed: ", as_json, side=side, order=order)


@market_app.command("clear")
def market_clear(
    ctx: typer.Context, interval: int, account: Account = None, as_json: JsonOption = False
) -> None:
    """Clear a started interval (uniform-price double auction)."""

    async def clear(c: _Ctx) -> None:
        tx = await c.s.market.clear(c.operator(account), interval)
        state = await c.s.market.interval(interval)
        _tx(tx, f"interval {interval} cleared at {state.price}/Wh, {state.sold_wh} Wh sold: ",
            as_json, interval=interval, price=state.price, sold_wh=state.sold_wh)  # fmt: skip

    _go(ctx, clear)


@market_app.command("prove")
def market_prove(
    ctx: typer.Context, ask: int, reading: Reading, account: Account = None,
    as_json: JsonOption = False,
) -> None:  # fmt: skip
    """Prove an ask's delivery with its meter's stored, anchored reading."""

    async def prove(c: _Ctx) -> TxResult:
        return await c.s.market.prove_delivery(c.operator(account), ask, await c.evidence(reading))

    _tx(_go(ctx, prove), f"delivery of ask {ask} proven: ", as_json, ask=ask, reading=reading)


@market_app.command("settle")
def market_settle(
    ctx: typer.Context, bid: int, account: Account = None, as_json: JsonOption = False
) -> None:
    """Finalize a bid after the delivery deadline (pays for delivered energy, refunds the rest)."""
    _tx(_go(ctx, lambda c: c.s.market.finalize_bid(c.operator(account), bid)), "", as_json, bid=bid)


@market_app.command("withdraw")
def market_withdraw(
    ctx: typer.Context, account: Account = None, as_json: JsonOption = False
) -> None:
    """Withdraw your free market balance."""
    _tx(_go(ctx, lambda c: c.s.market.withdraw(c.user(account))), "", as_json)


# --- charging ---------------------------------------------------------------------------------


def _session_line(x: dict[str, Any]) -> str:
    return (
        f"session {x['id']}: {x['status']}, vehicle {x['vehicle']}, charger {x['charger']}, "
        f"{x['energy_wh']} Wh at {x['price_per_wh']}/Wh, {x['amount_due']} due of "
        f"{x['deposit']} deposited"
    )


@charging_app.command("list")
def charging_list(
    ctx: typer.Context, cursor: Cursor = None, limit: Limit = 20, as_json: JsonOption = False
) -> None:
    """Charging sessions, newest first (GET /v1/charging/sessions)."""
    _show_page(
        _read(ctx, "/v1/charging/sessions", cursor=cursor, limit=limit), as_json, _session_line
    )


@charging_app.command("status")
def charging_status(ctx: typer.Context, session: int, as_json: JsonOption = False) -> None:
    """A charging session (GET /v1/charging/sessions/ID)."""
    _show(_read(ctx, f"/v1/charging/sessions/{session}"), as_json, _session_line)


@charging_app.command("price")
def charging_price(
    ctx: typer.Context, charger: str, price: Annotated[int, typer.Argument()],
    account: Account = None, as_json: JsonOption = False,
) -> None:  # fmt: skip
    """Station: set your charger's price per Wh."""
    address = to_checksum_address(charger)
    tx = _go(ctx, lambda c: c.s.charging.set_price(c.user(account), address, price))
    _tx(tx, "", as_json, charger=address, price_per_wh=price)


@charging_app.command("open")
def charging_open(
    ctx: typer.Context,
    charger: Annotated[str, typer.Option(help="The charger's device address.")],
    deposit: Annotated[int, typer.Option(help="Token units deposited.")],
    account: Account = None,
    as_json: JsonOption = False,
) -> None:
    """Vehicle: open a session with a deposit."""
    address = to_checksum_address(charger)
    session, tx = _go(ctx, lambda c: c.s.charging.open_session(c.user(account), address, deposit))
    _tx(tx, f"session {session} opened: ", as_json, session=session)


@charging_app.command("close")
def charging_close(
    ctx: typer.Context, session: int, reading: Reading, account: Account = None,
    as_json: JsonOption = False,
) -> None:  # fmt: skip
    """Station: close a session with the charger's stored, anchored reading."""

    async def close(c: _Ctx) -> None:
        tx = await c.s.charging.close_session(
            c.operator(account), session, await c.evidence(reading)
        )
        state = await c.s.charging.session(session)
        what = f"session {session} closed: {state.energy_wh} Wh, {state.amount_due} due: "
        _tx(tx, what, as_json, session=session, energy_wh=state.energy_wh,
            amount_due=state.amount_due)  # fmt: skip

    _go(ctx, close)


@charging_app.command("refund")
def charging_refund(
    ctx: typer.Context, session: int, account: Account = None, as_json: JsonOption = False
) -> None:
    """Refund a session the station never closed, after the timeout."""
    tx = _go(ctx, lambda c: c.s.charging.refund_expired(c.operator(account), session))
    _tx(tx, "", as_json, session=session)


@charging_app.command("withdraw")
def charging_withdraw(
    ctx: typer.Context, account: Account = None, as_json: JsonOption = False
) -> None:
    """Withdraw what the charging contract owes you."""
    _tx(_go(ctx, lambda c: c.s.charging.withdraw(c.user(account))), "", as_json)
