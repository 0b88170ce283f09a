"""Read models: SQL tables kept up to date from the notification log.

Processing an event (the write side) decides and records it; a projection only
follows the recorded log and shapes it for questions the write side can't
answer cheaply ("which accounts does this owner have?", "the statement for
March", "this account's pending transfers"). The projection here is a separate
consumer: it reads the application's notification log after its own tracked
position and applies a batch of events to its tables in one transaction, in
which it also advances the position with a compare-and-set (`UPDATE ... WHERE
position = <where I started>`). Two projectors racing over the same batch
cannot both commit it, so every event is applied exactly once, and the tables
can be dropped and rebuilt from the log at any time.
"""

from bank.projections.projector import BATCH_SIZE, LedgerProjection
from bank.projections.queries import Ledger, Page, ReadModelsUnavailableError
from bank.projections.sealer import Sealer
from bank.projections.tables import (
    CREDIT_KINDS,
    HOLD_ENDS,
    HOLD_EVENTS,
    LINE_KINDS,
    MAX_POSITION,
    MAX_VERSION,
    PROJECTION_NAME,
    STATEMENT_KINDS,
    TRANSFER_FIELDS,
    LedgerTables,
    ledger_tables,
    statement_kind,
)

__all__ = [
    "BATCH_SIZE",
    "CREDIT_KINDS",
    "HOLD_ENDS",
    "HOLD_EVENTS",
    "LINE_KINDS",
    "MAX_POSITION",
    "MAX_VERSION",
    "PROJECTION_NAME",
    "STATEMENT_KINDS",
    "TRANSFER_FIELDS",
    "Ledger",
    "LedgerProjection",
    "LedgerTables",
    "Page",
    "ReadModelsUnavailableError",
    "Sealer",
    "ledger_tables",
    "statement_kind",
]
