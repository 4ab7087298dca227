"""The sync server, killed (kill -9 of its own process) after it has committed a batch and before its answer leaves.

A WSGI wrapper around the real app, for the trials only: each file in the folder ``$KILL_AFTER_COMMIT_DIR`` arms
one kill. A batch request runs through the app whole (the view returns after its transaction has committed and the
ack is signed); if it succeeded and a kill is armed, the file is removed and the process sends itself SIGKILL
before handing the answer to the server. So the window between commit and reply is hit every time, not by chance.

    gunicorn reliability.dying_server:app      # (``tests`` on PYTHONPATH) a worker dies; the master starts another
    python -m waitress reliability.dying_server:app      # one process: the whole server dies
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from sync_server import create_app

ARMED_DIR_ENV = "KILL_AFTER_COMMIT_DIR"


def disarm_one(folder: Path) -> bool:
    """Take one armed kill (remove its file); False when none is armed (or another process took the last)."""
    for armed in sorted(folder.iterdir()):
        try:
            armed.unlink()
        except FileNotFoundError:
            continue
        return True
    return False


def dying_after_commit(app, folder: Path):
    """``app``, killing its process after each successful batch while kills are armed in ``folder``."""

    def serve(environ, start_response):
        if environ["REQUEST_METHOD"] != "POST" or not environ["PATH_INFO"].endswith("/batches"):
            return app(environ, start_response)
        started = []
        body = b"".join(app(environ, lambda status, headers, exc_info=None: started.append((status, headers))))
        status, headers = started[0]
        if status.startswith("200") and disarm_one(folder):
            os.kill(os.getpid(), signal.SIGKILL)
        start_response(status, headers)
        return [body]

    return serve


if ARMED_DIR_ENV in os.environ:  # run as the server's app (imported by the trial only for the name above)
    app = dying_after_commit(create_app(), Path(os.environ[ARMED_DIR_ENV]))
