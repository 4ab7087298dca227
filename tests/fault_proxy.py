"""A fault-injecting TCP proxy on 127.0.0.1, between a station and its sync server, switchable at run time.

    proxy = FaultProxy.to_url(server.url)      # or FaultProxy(("127.0.0.1", port))
    with proxy:                                 # listening on proxy.url ("http://127.0.0.1:<port>")
        st.config["server"]["url"] = proxy.url
        proxy.set_mode("down")                  # connection refused: nothing listens on the port
        proxy.set_mode("slow", delay_ms=300)    # every answer held back 300 ms
        proxy.set_mode("reset")                 # the request is read, then the connection reset (RST)
        proxy.set_mode("http500")               # the proxy answers HTTP/1.1 500 itself
        proxy.set_mode("pass")                  # pass-through again, on the same port
        proxy.set_random_faults(seed=7, rate=0.3)  # each request meets one of FAULTS at random (or passes)

Modes (:data:`MODES`):

- ``pass``: bytes go both ways untouched;
- ``down``: the listening socket is closed, so a connection is refused (``ECONNREFUSED``), and every connection
  open through the proxy is closed; ``pass`` (or another mode) listens again on the same port;
- ``slow``: each answer (the server's first bytes after the client has sent something) waits ``delay_ms``;
- ``reset``: a new connection's request is read, then the connection is closed with SO_LINGER 0 (a TCP RST);
- ``http500``: a new connection's request is read and answered ``HTTP/1.1 500 Internal Server Error`` by the
  proxy (``Connection: close``), without reaching the server.

Random faults (:meth:`FaultProxy.set_random_faults`, for the reliability trials): the proxy reads each HTTP request
whole and, with probability ``rate``, picks one of :data:`FAULTS` for it from a ``random.Random(seed)`` (so a
single client's run is the same every time):

- ``drop``: the request never reaches the server; the connection is closed without an answer;
- ``delay``: the answer is held back up to ``max_delay_ms``;
- ``truncate``: the server answers (it has committed), the client gets only the answer's first bytes (cut at a
  random byte, in the headers or the body), then the connection is closed;
- ``reset``: the server answers (it has committed), the client gets a TCP RST instead;
- ``duplicate``: the request reaches the server twice (the second time on a connection of its own, as a
  retransmission the client never sees), and the client gets the second answer.

``faults_seen`` counts the faults dealt (``pass`` too).

Switching to ``down``, ``reset`` or ``http500`` closes the connections already open (a client's keep-alive
connection must not carry on as if nothing happened). Threads and sockets only (no dependency); every socket is
closed by :meth:`FaultProxy.stop`.
"""

from __future__ import annotations

import random
import select
import socket
import struct
import threading
import time
from collections import Counter
from urllib.parse import urlparse

MODES = ("pass", "down", "slow", "reset", "http500")
#: The faults of the ``random`` mode (:meth:`FaultProxy.set_random_faults`).
FAULTS = ("drop", "delay", "truncate", "reset", "duplicate")
_CHUNK = 65536
#: How long the proxy waits for a request's bytes in ``reset`` and ``http500`` before giving up on it.
_READ_SECONDS = 5.0
_HTTP_500 = (b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain; charset=utf-8\r\n"
             b"Content-Length: 28\r\nConnection: close\r\n\r\nfault proxy: internal error\n")


class FaultProxy:
    """A TCP proxy from ``127.0.0.1:port`` (0: any free port, chosen at :meth:`start`) to ``target``."""

    def __init__(self, target: tuple[str, int], *, port: int = 0):
        self.target = target
        self.port = port
        self.mode = "pass"
        self.delay_ms = 0
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._connections: set[socket.socket] = set()
        self._stopped = threading.Event()
        self._rng = random.Random(0)
        self.fault_rate = 0.0
        self.max_delay_ms = 0
        self.faults_seen: Counter[str] = Counter()

    @classmethod
    def to_url(cls, url: str, *, port: int = 0) -> FaultProxy:
        """A proxy to the host and port of an ``http://`` URL."""
        parsed = urlparse(url)
        return cls((parsed.hostname, parsed.port or 80), port=port)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: what the station is told its server is."""
        return f"http://127.0.0.1:{self.port}"

    # -- life ----------------------------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        """Listen (in ``pass`` mode) and serve in background threads."""
        self._stopped.clear()
        self._listen()
        return self

    def stop(self) -> None:
        """Stop listening, close every connection and wait for the threads."""
        self._stopped.set()
        self._close_listener()
        self._close_connections()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads = [thread for thread in self._threads if thread.is_alive()]
        assert not self._threads, "fault proxy threads did not stop"

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def set_mode(self, mode: str, *, delay_ms: int | None = None) -> None:
        """Switch to ``mode`` (one of :data:`MODES`); ``delay_ms`` for ``slow``."""
        if mode not in MODES:
            raise ValueError(f"mode is one of {MODES}, not {mode!r}")
        if mode == "slow" and not delay_ms:
            raise ValueError("slow needs delay_ms")
        with self._lock:
            self.mode = mode
            self.delay_ms = delay_ms or 0
        if mode in ("down", "reset", "http500"):
            self._close_connections()
        if mode == "down":
            self._close_listener()
        elif self._listener is None and not self._stopped.is_set():
            self._listen()

    def set_random_faults(self, *, seed: int, rate: float, max_delay_ms: int = 200) -> None:
        """Deal one of :data:`FAULTS` to each request with probability ``rate`` (seeded), from the next connection
        on; :meth:`set_mode` ends it."""
        if not 0 <= rate <= 1:
            raise ValueError("rate is a probability, between 0 and 1")
        with self._lock:
            self.mode = "random"
            self._rng = random.Random(seed)
            self.fault_rate = rate
            self.max_delay_ms = max_delay_ms
            self.faults_seen = Counter()
        if self._listener is None and not self._stopped.is_set():
            self._listen()

    def _deal_fault(self) -> tuple[str, float, float]:
        """The next request's fault, its delay (ms) and where a truncated answer is cut (a fraction)."""
        with self._lock:
            dealt = self.mode == "random" and self._rng.random() < self.fault_rate  # set_mode ended it: pass
            fault = self._rng.choice(FAULTS) if dealt else "pass"
            self.faults_seen[fault] += 1
            delay_ms = self._rng.uniform(0, self.max_delay_ms)
            cut = self._rng.random()
        return fault, delay_ms, cut

    # -- sockets -------------------------------------------------------------------------------------------
    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", self.port))
            listener.listen(64)
        except OSError:
            listener.close()
            raise
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._spawn(self._accept_loop, listener)

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown wakes the accept loop's select; close frees the port (connections are refused from now).
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections.add(sock)

    def _forget(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections.discard(sock)
        sock.close()

    def _close_connections(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, set()
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopped.is_set() and self._listener is listener:
            try:
                ready, _, _ = select.select([listener], [], [], 0.1)
                if not ready:
                    continue
                client, _ = listener.accept()
            except (OSError, ValueError):  # closed under us: "down" or stop
                return
            with self._lock:
                mode = self.mode
            self._track(client)
            self._spawn(self._serve, client, mode)

    def _serve(self, client: socket.socket, mode: str) -> None:
        try:
            if mode == "reset":
                _read_request(client)
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif mode == "http500":
                _read_request(client)
                client.sendall(_HTTP_500)
            elif mode in ("pass", "slow"):
                self._relay(client)
            elif mode == "random":
                self._relay_with_faults(client)
        except (OSError, ValueError):  # ValueError: select on a socket closed under it ("down", stop)
            pass
        finally:
            self._forget(client)

    def _relay(self, client: socket.socket) -> None:
        """Pump bytes both ways until either side closes; in ``slow`` mode hold back each answer."""
        upstream = socket.create_connection(self.target, timeout=10)
        self._track(upstream)
        awaiting_answer = False
        try:
            while not self._stopped.is_set():
                ready, _, _ = select.select([client, upstream], [], [], 0.1)
                if client in ready:
                    data = client.recv(_CHUNK)
                    if not data:
                        return
                    upstream.sendall(data)
                    awaiting_answer = True
                if upstream in ready:
                    data = upstream.recv(_CHUNK)
                    if not data:
                        return
                    with self._lock:
                        delay = self.delay_ms if self.mode == "slow" else 0
                    if awaiting_answer and delay:
                        time.sleep(delay / 1000)
                    awaiting_answer = False
                    client.sendall(data)
        finally:
            self._forget(upstream)

    def _relay_with_faults(self, client: socket.socket) -> None:
        """Request by request (keep-alive), each meeting the fault :meth:`_deal_fault` picks for it."""
        upstream = None
        try:
            while not self._stopped.is_set():
                # A keep-alive connection may stay idle for long between requests.
                if not select.select([client], [], [], 0.1)[0]:
                    continue
                request = _read_request(client)
                if not request:
                    return
                fault, delay_ms, cut = self._deal_fault()
                if fault == "drop":
                    return
                if upstream is None:
                    upstream = socket.create_connection(self.target, timeout=30)
                    self._track(upstream)
                upstream.sendall(request)
                answer = _read_message(upstream)
                if fault == "duplicate":
                    with socket.create_connection(self.target, timeout=30) as again:
                        again.sendall(request)
                        answer = _read_message(again)
                if not answer or _closes(answer):
                    # The server ends the connection after this answer: so does the proxy.
                    client.sendall(answer)
                    return
                if fault == "delay":
                    time.sleep(delay_ms / 1000)
                elif fault == "truncate":
                    client.sendall(answer[: int(len(answer) * cut)])
                    return
                elif fault == "reset":
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                client.sendall(answer)
        finally:
            if upstream is not None:
                self._forget(upstream)


def _closes(message: bytes) -> bool:
    """Whether an HTTP message's headers say the connection closes after it."""
    head = message.partition(b"\r\n\r\n")[0].lower()
    return b"\r\nconnection: close" in head


def _read_request(sock: socket.socket) -> bytes:
    """One HTTP request's bytes (headers, then ``Content-Length`` bytes of body), so that closing the socket does
    not hit unread data; gives up after ``_READ_SECONDS``."""
    return _read_message(sock, _READ_SECONDS)


def _read_message(sock: socket.socket, seconds: float = 30.0) -> bytes:
    """One HTTP message (a request or an answer with ``Content-Length``): its bytes, or as many as came before the
    other side closed or ``seconds`` passed."""
    sock.settimeout(seconds)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(_CHUNK)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip() or 0)
        while len(body) < length:
            chunk = sock.recv(_CHUNK)
            if not chunk:
                break
            body += chunk
        data = head + b"\r\n\r\n" + body
    except TimeoutError:
        pass
    return data
