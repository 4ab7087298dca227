"""A full disk without filling one: SQLite's per-connection ``max_page_count`` makes the station's database answer
SQLITE_FULL as soon as a write needs one page more than it has now (tests/test_storage_full.py,
tests/reliability/test_full_disk.py, the storage-full screen of tests/test_screens_fit.py)."""

from __future__ import annotations

from station import errors, operations, receipts


def limit_database(st, extra_pages: int = 0) -> None:
    """Let this thread's connection to the station's database grow by ``extra_pages`` pages at most."""
    pages = st.db.execute_sql("PRAGMA page_count").fetchone()[0]
    st.db.execute_sql(f"PRAGMA max_page_count = {pages + extra_pages}")


def lift_database_limit(st) -> None:
    """Space is back: SQLite's largest page limit."""
    st.db.execute_sql("PRAGMA max_page_count = 4294967294")


def deposit_until_full(st, agent, auth, limit: int = 500) -> list[receipts.Receipt]:
    """Record 10-yuan deposits until the station refuses one as StorageFull; the receipts handed out before."""
    handed_out = []
    for _ in range(limit):
        try:
            handed_out.append(operations.deposit_cash(st, agent, auth, "10", receipts.new_txn_id()))
        except errors.StorageFull:
            return handed_out
    raise AssertionError(f"{limit} deposits and the database never filled up")
