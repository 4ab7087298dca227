"""The product's costs for PINs and passwords, as a fresh interpreter has them (tests/conftest.py lowers both for
the rest of the suite, whose verifiers name their own cost)."""

from __future__ import annotations

import json
import subprocess
import sys

from station.protocol import pins

PRODUCT = """
import json
from station.protocol.pins import check_pin, make_pin_verifier
from sync_server import bank_users
from sync_server.bank_users import _dummy_hash, _hash
verifier = make_pin_verifier("2580")
print(json.dumps({"pin": verifier, "pin_ok": check_pin("2580", verifier), "pin_wrong": check_pin("2581", verifier),
                  "password": _hash("correct horse battery"), "dummy": _dummy_hash(bank_users.PASSWORD_METHOD)}))
"""


def product_secrets() -> dict:
    done = subprocess.run([sys.executable, "-c", PRODUCT], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(done.stdout)


def test_a_pin_verifier_costs_scrypt_2_to_the_14_and_a_password_scrypt_2_to_the_15():
    made = product_secrets()
    assert made["pin"].startswith("scrypt$14$8$1$"), made["pin"]
    assert made["pin_ok"] is True and made["pin_wrong"] is False
    assert made["password"].startswith("scrypt:32768:8:1$"), made["password"]
    # An unknown name is checked against a hash as costly as a real one.
    assert made["dummy"].startswith("scrypt:32768:8:1$"), made["dummy"]


def test_a_verifier_is_checked_at_the_cost_it_names_whatever_the_default_is_now():
    """A station whose verifiers were made at another cost (an older release, the demo's 2**8) still checks them."""
    cheap, costly = pins.make_pin_verifier("2580", log2_n=8), pins.make_pin_verifier("2580", log2_n=14)
    assert cheap.startswith("scrypt$8$") and costly.startswith("scrypt$14$")
    for verifier in (cheap, costly):
        assert pins.check_pin("2580", verifier) and not pins.check_pin("0000", verifier)
    forged = costly.replace("scrypt$14$", "scrypt$8$", 1)  # the hash was not made at the cost the text now names
    assert not pins.check_pin("2580", forged)


WARMED = """
import json, sys, tempfile
from pathlib import Path
import sync_server
from sync_server import bank_users, create_app
from sync_server.db import connect_url, migrate_database
from sync_server.keys import create_keys
before = bank_users._dummy_hash.cache_info().currsize
folder = Path(tempfile.mkdtemp())
create_keys(folder / "keys")
url = f"sqlite:///{folder / 'bank.db'}"
database = connect_url(url)
database.connect()
migrate_database(database)  # sync-server init-db
database.close()
create_app({"DATABASE_URL": url, "SYNC_SERVER_KEYS_DIR": str(folder / "keys")})
print(json.dumps({"before": before, "after": bank_users._dummy_hash.cache_info().currsize,
                  "cn2an": "cn2an" in sys.modules}))
"""


def test_the_unknown_names_hash_is_made_with_the_app_not_by_every_command():
    """``sync-server`` commands import the package without paying for that hash (nor for cn2an's tables); the
    app makes it before its first login."""
    done = subprocess.run([sys.executable, "-c", WARMED], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(done.stdout) == {"before": 0, "after": 1, "cn2an": False}
