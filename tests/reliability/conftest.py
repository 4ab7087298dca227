"""The reliability trials' conventions (see ``tests/reliability/__init__.py``): every test here is marked
``reliability``; ``--reliability-full`` is ``RELIABILITY_FULL=1``; ``reliability_report`` keeps a module's figures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reliability import FULL_ENV, record_figures

HERE = Path(__file__).parent


def pytest_addoption(parser):
    parser.addoption("--reliability-full", action="store_true", default=False,
                     help="Make the full counts of the reliability trials (as RELIABILITY_FULL=1).")


def pytest_configure(config):
    if config.getoption("--reliability-full", default=False):
        # The environment, so that module-level counts and the processes the trials start see it too.
        os.environ[FULL_ENV] = "1"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.reliability)


@pytest.fixture
def reliability_report(request):
    """``reliability_report(fault=..., trials=N, survived=N, lost_entries=0)``: keep one fault's figures in the
    module's ``<module>.json`` when ``RELIABILITY_REPORT_DIR`` is set (else nothing is written)."""

    def keep(**figures):
        return record_figures(request.module.__name__, figures)

    return keep
