"""Benchmark (not a test): render the home, withdrawal-confirm and receipt screens through waitress over loopback.

Prints one JSON line per page and a last line with ``p95_ms`` over all three pages and ``ratio_to_static``
(against a static file served by the same waitress). Goal: p95 <= 50 ms on the reference machine.

    .venv/bin/python tests/bench/ui_pages.py [--requests 200]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import threading
import time

import requests
from waitress.server import create_server

from station import agents, business_day
from station.app import create_app
from station.db import Customer
from station.demo import load_demo_customers
from station.provision import init_station


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def timed(session: requests.Session, url: str, count: int) -> list[float]:
    for _ in range(10):  # warm-up: templates compiled, connections open
        session.get(url).raise_for_status()
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        response = session.get(url)
        samples.append((time.perf_counter() - start) * 1000)
        response.raise_for_status()
    return samples


def form_post(session: requests.Session, url: str, page_url: str, data: dict) -> requests.Response:
    token = re.search(r'name="csrf_token" value="([^"]+)"', session.get(page_url).text).group(1)
    return session.post(url, data={**data, "csrf_token": token})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="timed requests per page")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        st = init_station(f"{data_dir}/station", "ST-BENCH")
        load_demo_customers(st, count=20)
        agent = agents.login_agent(st, "A01", "1357")
        business_day.open_day(st, agent, {"10000": 300})
        app = create_app({"STATION": st})
        server = create_server(app, host="127.0.0.1", port=0, threads=4)
        threading.Thread(target=server.run, daemon=True).start()
        base = f"http://127.0.0.1:{server.effective_port}"
        try:
            with requests.Session() as session:
                form_post(session, f"{base}/login", f"{base}/login?agent_id=A01", {"agent_id": "A01", "pin": "1357"})
                with st.bound():
                    card = Customer.select().where(Customer.card_number.is_null(False)).first().card_number
                # One finished withdrawal for the receipt screen, then one waiting on its confirm screen.
                form_post(session, f"{base}/op/withdrawal/start", f"{base}/home", {})
                form_post(session, f"{base}/op/withdrawal/customer", f"{base}/home", {"number": card})
                form_post(session, f"{base}/op/withdrawal/amount", f"{base}/home", {"amount": "100"})
                form_post(session, f"{base}/op/withdrawal/confirm", f"{base}/home", {})
                pin_page = session.get(f"{base}/op/withdrawal/pin").text
                txn = re.search(r'name="txn" value="([^"]+)"', pin_page).group(1)
                receipt_url = form_post(session, f"{base}/op/withdrawal/pin", f"{base}/home",
                                        {"pin": "123456", "txn": txn}).url
                form_post(session, f"{base}/op/withdrawal/start", f"{base}/home", {})
                form_post(session, f"{base}/op/withdrawal/customer", f"{base}/home", {"number": card})
                form_post(session, f"{base}/op/withdrawal/amount", f"{base}/home", {"amount": "200"})
                pages = {
                    "home": f"{base}/home",
                    "withdraw_confirm": f"{base}/op/withdrawal/confirm",
                    "receipt": receipt_url,
                }
                all_samples = []
                for name, url in pages.items():
                    samples = timed(session, url, args.requests)
                    all_samples += samples
                    print(json.dumps({"page": name, "n": len(samples), "p50_ms": round(statistics.median(samples), 2),
                                      "p95_ms": round(percentile(samples, 0.95), 2)}))
                static = timed(session, f"{base}/static/station.css", args.requests)
                static_p95 = percentile(static, 0.95)
                print(json.dumps({"page": "static", "n": len(static), "p50_ms": round(statistics.median(static), 2),
                                  "p95_ms": round(static_p95, 2)}))
                p95 = percentile(all_samples, 0.95)
                print(json.dumps({"p95_ms": round(p95, 2), "static_p95_ms": round(static_p95, 2),
                                  "ratio_to_static": round(p95 / static_p95, 1), "goal_p95_ms": 50,
                                  "goal_met": p95 <= 50}))
        finally:
            server.close()
            st.close()


if __name__ == "__main__":
    main()
