"""The sync server killed (kill -9) between committing a batch and answering it; the station retries and converges.

``dying_server`` hits that window on purpose: the server process commits, then kills itself before its answer
leaves. Under gunicorn a worker dies and the master starts another; under waitress (one process, as
``sync-server serve --dev``) the whole server dies and the trial starts it again. Each kill: the station's sync
fails and nothing leaves its outbox, although the bank holds the batch; its next sync sends the batch again, the
bank answers the duplicate with an ack and the station converges. At the end the bank holds the journal byte for
byte, applied once. A few kills by default, 20 per server with ``RELIABILITY_FULL=1``.
"""

from __future__ import annotations

import re

import pytest
from sync_support import enrolled_station, server_db

from reliability import counts
from reliability.convergence import ServerProcess, ShopCounter, assert_bank_holds_the_journal, sync_until_converged
from reliability.dying_server import ARMED_DIR_ENV
from station.journal import journal_head
from station.sync import ServerUnreachable, sync_once
from sync_server.db import Entry

KILLS = counts(quick=2, full=20)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("kind", ["gunicorn", "waitress"])
def test_server_killed_between_commit_and_reply(kind, server, tmp_path, clock, reliability_report):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    counter = ShopCounter(st)
    armed = tmp_path / "armed"
    armed.mkdir()
    dying = ServerProcess(kind, {"DATABASE_URL": server.database_url, "SYNC_SERVER_KEYS_DIR": str(server.keys_dir),
                                 ARMED_DIR_ENV: str(armed)}, app="reliability.dying_server:app")
    st.config["server"]["url"] = dying.url
    survived = 0
    try:
        for kill in range(KILLS):
            counter.record(5)
            acked_before = st.setting("acked_seq")
            (armed / f"kill-{kill:04d}").touch()
            with pytest.raises(ServerUnreachable):
                sync_once(st, attempts=1)
            assert not list(armed.iterdir()), "the server was not killed"
            # Nothing left the outbox without its ack, although the bank had committed the batch.
            assert st.setting("acked_seq") == acked_before
            server_db()
            head_seq, _ = journal_head(st)
            assert Entry.select().where(Entry.station_id == "ST-0001").count() == head_seq
            if kind == "waitress":  # the whole server died; under gunicorn only the worker (the master starts one)
                dying.wait_killed()
                dying.start()
            sync_until_converged(st, pause=0.1)
            assert st.setting("acked_seq") == head_seq
            survived += 1
    finally:
        errors = dying.stop()
    assert "Traceback" not in errors
    assert_bank_holds_the_journal(st)
    if kind == "gunicorn":
        assert len(re.findall(r"Booting worker", errors)) == KILLS + 1
    reliability_report(fault=f"sync server ({kind}) killed (kill -9) between commit and reply", trials=KILLS,
                       survived=survived, lost_entries=0)
    st.close()
