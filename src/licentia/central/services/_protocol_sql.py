"""The activation protocol's statements, written once with SQLAlchemy Core: the
protocol runs them on the driver's connection (``..protocol_db``), compiled once per
dialect, without a Session."""

from __future__ import annotations

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.expression import Insert, ScalarSelect

from ..models import (
    Activation,
    Attempt,
    AuditEntry,
    ChainLink,
    CloudProxy,
    Container,
    ContainerFirm,
    Firm,
    FirmKey,
    Flag,
    Item,
    ProcessedReceipt,
    ProcessedRequest,
    Ticket,
    TicketItem,
    TicketState,
)
from ..models import table_of as table_of  # re-exported: the other services' statements use it
from .attempts import ADDRESS, TICKET

ACTIVATED = TicketState.activated.value

_table = table_of


_c, _cf, _t, _ti = _table(Container), _table(ContainerFirm), _table(Ticket), _table(TicketItem)
_f, _fk, _pr, _at = _table(Firm), _table(FirmKey), _table(ProcessedRequest), _table(Attempt)
_base, _mod = _table(Item).alias("base"), _table(Item).alias("module")
_act, _link, _flag = _table(Activation), _table(ChainLink), _table(Flag)
_audit, _receipt = _table(AuditEntry), _table(ProcessedReceipt)


def _attempts(scope: str, key: str) -> ScalarSelect[int]:
    return (
        select(func.count())
        .select_from(_at)
        .where(_at.c.scope == scope, _at.c.key == bindparam(key), _at.c.time > bindparam("since"))
        .scalar_subquery()
    )


#: One statement for the two checks every request starts with: the stored answer
#: (idempotency) and the failed attempts of this address and ticket (rate limit).
Q_START = select(
    select(_pr.c.response).where(_pr.c.digest == bindparam("digest")).scalar_subquery(),
    _attempts(ADDRESS, "address"),
    _attempts(TICKET, "ticket"),
)
Q_CONTAINER = (
    select(_c.c.id, _c.c.serial, _c.c.sign_pub, _c.c.box_pub)
    .where(_c.c.serial == bindparam("serial"))
    .with_for_update()
)
#: The firm and its keys ride along with the ticket or firm row (one query, not two);
#: both name the firm's columns alike (firm_id, code, secret_enc).
_KEY_COLUMNS = (
    _fk.c.kid,
    _fk.c.active,
    _fk.c.private_enc,
    _fk.c.endorsement,
    _fk.c.created_seq,
)
Q_TICKET = (
    select(
        _t.c.id,
        _t.c.ticket,
        _t.c.activation_count,
        _t.c.state,
        _t.c.container_id,
        _t.c.license_id,
        _t.c.first_activated,
        _t.c.options,
        _t.c.firm_id,
        _f.c.code,
        _f.c.name.label("firm_name"),
        _f.c.secret_enc,
        _base.c.name,
        _base.c.product_code,
        _base.c.level,
        _base.c.key_versions,
        _base.c.options.label("template"),
        _base.c.policy,
        _base.c.flag_window_days,
        _mod.c.id.label("item"),
        _mod.c.feature_map,
        *_KEY_COLUMNS,
    )
    .select_from(
        _t.join(_f, _f.c.id == _t.c.firm_id)
        .join(_base, _base.c.id == _t.c.item_id)
        .join(_ti, _ti.c.ticket_id == _t.c.id)
        .join(_mod, _mod.c.id == _ti.c.item_id)
        .join(_fk, _fk.c.firm_id == _t.c.firm_id)
    )
    .where(_t.c.ticket == bindparam("ticket"))
    .with_for_update(of=_t)
)
Q_SERIAL = select(_c.c.serial).where(_c.c.id == bindparam("id"))
Q_FIRM = (
    select(_f.c.id.label("firm_id"), _f.c.code, _f.c.name.label("firm_name"), _f.c.secret_enc, *_KEY_COLUMNS)
    .select_from(_f.join(_fk, _fk.c.firm_id == _f.c.id))
    .where(_f.c.code == bindparam("code"))
)
Q_SLOT = (
    select(_cf.c.id, _cf.c.reported_seq, _cf.c.reported_vtime, _cf.c.issued_seq, _cf.c.reported_gen)
    .where(_cf.c.container_id == bindparam("container"), _cf.c.firm_id == bindparam("firm"))
    .with_for_update()
)
Q_STATE = (
    select(_t.c.entry)
    .where(_t.c.firm_id == bindparam("firm"), _t.c.container_id == bindparam("container"), _t.c.state == ACTIVATED)
    .order_by(_t.c.license_id)
)
_px = table_of(CloudProxy)
#: The entries Central issued to a proxy license server's container (a live proxy's, of the
#: firm; each a JSON list of entry texts): every full-state update of the container keeps them.
Q_PROXIED = select(_px.c.entries).where(
    _px.c.firm_id == bindparam("firm"),
    _px.c.container_id == bindparam("container"),
    _px.c.ended.is_(None),
    _px.c.until > bindparam("now"),
    _px.c.entries.is_not(None),
)
#: The tickets of a firm active in a container, for a rebase or withdrawal.
Q_ACTIVE = (
    select(_t.c.ticket)
    .where(_t.c.firm_id == bindparam("firm"), _t.c.container_id == bindparam("container"), _t.c.state == ACTIVATED)
    .order_by(_t.c.license_id)
)
U_SLOT = update(_cf).where(_cf.c.id == bindparam("slot_id"))
U_FLAG = update(_cf).where(_cf.c.id == bindparam("slot_id")).values(flagged=True, flagged_at=bindparam("at"))

# ---- counters: one activation per signed entry
#: The live activations in a container that a document reports counters for (locked).
Q_COUNTED = (
    select(
        _act.c.id,
        _act.c.digest,
        _act.c.units,
        _act.c.first_use,
        # the ticket's scope, for the usage store's row of the units a report adds
        _t.c.id.label("tid"),
        _t.c.license_id,
        _t.c.customer_id,
        _t.c.item_id,
        _base.c.product_code,
    )
    .select_from(_act.join(_t, _t.c.id == _act.c.ticket_id).join(_base, _base.c.id == _t.c.item_id))
    .where(
        _act.c.container_id == bindparam("container"),
        _act.c.digest.in_(bindparam("digests", expanding=True)),
        _act.c.ended.is_(None),
    )
    .with_for_update(of=_act)
)
U_COUNTED = (
    update(_act).where(_act.c.id == bindparam("aid")).values(units=bindparam("units"), first_use=bindparam("first"))
)
#: A ticket's consumption so far (every activation) and its first use ever.
Q_TOTALS = select(func.coalesce(func.sum(_act.c.units + _act.c.online_units), 0), func.min(_act.c.first_use)).where(
    _act.c.ticket_id == bindparam("tid")
)
U_END = update(_act).where(_act.c.ticket_id == bindparam("tid"), _act.c.ended.is_(None)).values(ended=bindparam("at"))
I_ACTIVATION, I_FLAG = insert(_act), insert(_flag)
#: The live activations of a firm's tickets active in a container: what it should hold.
Q_LIVE = (
    select(_act.c.digest, _act.c.units)
    .select_from(_act.join(_t, _t.c.id == _act.c.ticket_id))
    .where(
        _act.c.container_id == bindparam("container"),
        _act.c.ended.is_(None),
        _t.c.firm_id == bindparam("firm"),
        _t.c.state == ACTIVATED,
    )
)
#: Earlier flags of a ticket within its item's window (escalation).
Q_FLAGS = (
    select(func.count())
    .select_from(_flag)
    .where(_flag.c.ticket_id == bindparam("tid"), _flag.c.time > bindparam("since"))
)

# ---- the chain of a container slot's documents
Q_LINKS = select(_link.c.digest, _link.c.gen, _link.c.successor).where(
    _link.c.slot_id == bindparam("slot"), _link.c.digest.in_(bindparam("digests", expanding=True))
)


def _upsert(dialect: str) -> dict[str, Insert]:
    ins = (sqlite_insert if dialect == "sqlite" else pg_insert)(_link)
    return {
        "doc": ins.on_conflict_do_update(index_elements=["slot_id", "digest"], set_={"gen": ins.excluded.gen}),
        "parent": ins.on_conflict_do_update(
            index_elements=["slot_id", "digest"], set_={"successor": ins.excluded.successor}
        ),
        "ancestor": ins.on_conflict_do_nothing(index_elements=["slot_id", "digest"]),
    }


#: Chain writes per dialect: the document (its generation), its parent (its successor),
#: older ancestors (known, nothing more).
I_LINK = {"sqlite": _upsert("sqlite"), "postgresql": _upsert("postgresql")}
U_BOX = update(_c).where(_c.c.id == bindparam("cid")).values(box_pub=bindparam("box"))
#: SET columns come from the parameter names (Core's executemany form): built once.
U_TICKET = update(_t).where(_t.c.id == bindparam("tid"))
I_SLOT, I_DONE = insert(_cf), insert(_pr)
#: Register a container unless its serial is known (then: look it up, locked).
# RETURNING says whether the row was inserted: rowcount is not reliable for
# INSERT ... ON CONFLICT DO NOTHING on every driver (psycopg reports -1 here).
I_CONTAINER = {
    "sqlite": sqlite_insert(_c).on_conflict_do_nothing(index_elements=["serial"]).returning(_c.c.id),
    "postgresql": pg_insert(_c).on_conflict_do_nothing(index_elements=["serial"]).returning(_c.c.id),
}

# ---- deactivation
Q_RECEIPT_DONE = select(_receipt.c.response).where(_receipt.c.digest == bindparam("digest"))
Q_FIRM_ID = select(_f.c.id, _f.c.code).where(_f.c.code == bindparam("code"))
#: The ticket of a firm's license (row locked).
Q_LICENSE = (
    select(_t.c.id, _t.c.ticket, _t.c.license_id, _t.c.state, _t.c.container_id)
    .where(_t.c.firm_id == bindparam("firm"), _t.c.license_id == bindparam("license"))
    .with_for_update()
)
I_RECEIPT, I_AUDIT = insert(_receipt), insert(_audit)
