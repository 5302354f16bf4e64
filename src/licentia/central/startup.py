"""Getting Central ready to serve: data directory, keys, migrations, checks."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import select

from ..core.hazmat import CryptoError
from .db import Database, migrate, require_head
from .keys import SecretBox, load_or_create
from .models import Firm
from .services import AttemptService, Context
from .settings import Settings, SettingsError

log = logging.getLogger("licentia.central")


def prepare(settings: Settings, clock: Callable[[], int]) -> Context:
    """Make the data directory and the key files (kept outside it; a key file open
    to other users is refused; with a database server none is made), migrate the
    database to head (with ``settings.migrate`` off: refuse a database that is not at
    head), check the master key opens the firm secrets already stored. Safe to run on
    every start."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    keys = load_or_create(settings)
    db = Database(settings.db_url, pool_size=settings.pool_size)
    try:
        if settings.migrate:
            migrate(db.engine)
        else:
            require_head(db.engine)
        ctx = Context(settings=settings, db=db, clock=clock, keys=keys, box=SecretBox(keys.master_key))
        _check_master_key(ctx)
        with db.session() as session:
            AttemptService(ctx, session).prune()
    except BaseException:
        db.dispose()
        raise
    return ctx


def _check_master_key(ctx: Context) -> None:
    with ctx.db.session() as session:
        firm = session.scalars(select(Firm).order_by(Firm.created).limit(1)).first()
    if firm is None:
        return
    try:
        ctx.box.open(firm.code, SecretBox.PRODUCT_SECRET, firm.secret_enc)
    except CryptoError:
        raise SettingsError(
            f"the master key from {ctx.keys.master_source} does not open the firm secrets in this database: "
            "start Central with the master key this database was made with"
        ) from None
