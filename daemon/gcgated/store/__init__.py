"""The daemon's store: one diskcache database of named tables (see ``records``).

- :mod:`.records`: :class:`Store`, the core's records (functions, tasks, run
  data, counters) and the tables it hands to backends (:meth:`Store.table`);
- :mod:`.schema`: what the core's tables hold (names, counters, the lost-run-data message);
- :mod:`.table`: the database and :class:`Table`, a named part of it;
- :mod:`.sql`: every SQL statement run on diskcache's database;
- :mod:`.jsondisk`: how values are stored (JSON text, never pickles);
- :mod:`.query`: which task records a listing wants (:class:`TaskFilter`);
- :mod:`.reuse`: the result-reuse index (reuse key -> the task holding that result);
- :mod:`.lifecycle`: which results leave (retention, eviction, forget, purge);
- :mod:`.migrate`: a store of the old layout (a database per table) moved in;
- :mod:`.recovery`: a damaged store moved aside at start.
"""

from .lifecycle import PurgeFilter, Removal, tombstone_message
from .records import NewTask, ReusedTask, Store, function_id_for
from .reuse import reuse_keys
from .schema import DELETED_AT
from .table import Table

__all__ = [
    "DELETED_AT",
    "NewTask",
    "PurgeFilter",
    "Removal",
    "ReusedTask",
    "Store",
    "Table",
    "function_id_for",
    "reuse_keys",
    "tombstone_message",
]
