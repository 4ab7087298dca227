"""A WSGI app served by waitress on 127.0.0.1 in a thread of the test process, and stopping it cleanly."""

from __future__ import annotations

import threading

from waitress.server import create_server


def serve_in_thread(app, threads: int = 4, port: int = 0) -> tuple[str, object, threading.Thread]:
    """Serve ``app`` on 127.0.0.1 (``port`` 0: an ephemeral one); returns its base URL, the server, its thread."""
    server = create_server(app, host="127.0.0.1", port=port, threads=threads)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{server.effective_port}", server, thread


def stop_server(server, thread: threading.Thread) -> None:
    """Stop ``server`` (run by ``thread``) in waitress's own order (``MultiSocketServer.close``).

    First the task threads, each after the request it is answering, waited for here and not in the loop (which
    may still have a task's output to send): a task ends by pulling the server's trigger, and one still running
    after the trigger's pipe was closed wrote to a closed, or by then reused, descriptor. Then, in the loop's own
    thread, every connection and the server: the loop polls no socket after it is closed, and ``run`` returns.
    """
    server.task_dispatcher.shutdown(timeout=10)
    try:
        server.trigger.pull_trigger(lambda: close_all(server))
    except OSError:
        # The trigger's pipe already closed (EBADF), so the loop cannot be woken: close everything from here,
        # which also ends the loop's poll.
        close_all(server)
    thread.join(timeout=15)
    assert not thread.is_alive(), "waitress did not stop"


def close_all(server) -> None:
    """Close the browser's or client's keep-alive connections, the trigger and the server itself.

    Run in waitress's loop thread, this leaves no socket for the loop to poll after it is closed and none to be
    garbage-collected unclosed later (a ResourceWarning, an error under filterwarnings=error).
    """
    for channel in list(server._map.values()):
        if channel is not server:
            channel.close()
    server.close()
