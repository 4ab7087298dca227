"""Benchmark: 10,000 pending entries drained from a station to a local sync server over loopback.

Prints JSON lines; the last is the summary. ``seconds`` is the whole drain (build, sign, compress, seal, POST,
server verify and apply, ack applied); ``bytes_per_entry`` is the sealed request bodies over the entry count.
Floors measured in the same run: ``zlib_jws_bytes_per_entry`` (plain zlib over the JWS strings, the naive wire
form), ``floor_bytes_per_entry`` (the raw 64-byte signature plus the 16-byte txn id of each entry), and
``seal_only_seconds`` (building and sealing the same batches without sending them).
Goal: seconds <= 10, bytes_per_entry <= 120.

Run: .venv/bin/python tests/bench/sync_drain.py [--entries 10000] [--database-url sqlite:///...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import append_deposits, emit, enrolled_bench_station  # noqa: E402

from station.journal import iter_entries  # noqa: E402
from station.sync import build_batch, sync_once  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--database-url", default=None, help="default: a SQLite file in a temporary folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        st, _ = enrolled_bench_station(Path(tmp), args.database_url)
        st.config["sync"] = {"max_entries": args.batch, "max_bytes": 4 * 1024 * 1024}
        sync_once(st)
        append_deposits(st, args.entries)
        acked = st.setting("acked_seq")

        tokens = [token for _, token in iter_entries(st, after_seq=acked)]
        zlib_bytes = sum(len(zlib.compress("\n".join(tokens[i:i + args.batch]).encode(), 9))
                         for i in range(0, len(tokens), args.batch))
        started = time.perf_counter()
        sealed_sizes = []
        for start in range(0, len(tokens), args.batch):
            st.set_setting("acked_seq", acked + start)
            sealed_sizes.append(len(build_batch(st).body))
        seal_only = time.perf_counter() - started
        st.set_setting("acked_seq", acked)

        sent = []
        import station.sync as sync_module

        real_send = sync_module.send_batch

        def counting_send(station, sealed, http=None, **kwargs):
            sent.append(len(sealed.body))
            emit({"batch_first": sealed.first, "batch_last": sealed.last, "bytes": len(sealed.body)})
            return real_send(station, sealed, http, **kwargs)

        sync_module.send_batch = counting_send
        started = time.perf_counter()
        result = sync_once(st)
        seconds = time.perf_counter() - started
        sync_module.send_batch = real_send
        entries = result.entries
        bytes_per_entry = sum(sent) / entries
        floor = 64 + 16
        emit({
            "summary": True,
            "entries": entries,
            "batches": result.batches,
            "seconds": round(seconds, 3),
            "entries_per_s": round(entries / seconds),
            "bytes_per_entry": round(bytes_per_entry, 1),
            "zlib_jws_bytes_per_entry": round(zlib_bytes / len(tokens), 1),
            "floor_bytes_per_entry": floor,
            "ratio_bytes_to_floor": round(bytes_per_entry / floor, 2),
            "ratio_bytes_to_zlib_jws": round(bytes_per_entry / (zlib_bytes / len(tokens)), 2),
            "seal_only_seconds": round(seal_only, 3),
            "ratio_seconds_to_seal_only": round(seconds / seal_only, 2),
            "goal_seconds": 10,
            "goal_bytes_per_entry": 120,
            "pending_after": result.pending,
        })


if __name__ == "__main__":
    main()
