"""``report.py`` reads any module's figures, counts the hostile tests from pytest's JUnit XML, and says what failed."""

from __future__ import annotations

from reliability import REPORT_DIR_ENV, record_figures
from reliability.report import Figures, hostile_figures, read_figures, summary, table


def test_figures_of_any_shape_become_rows_and_the_same_fault_is_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv(REPORT_DIR_ENV, str(tmp_path))
    record_figures("reliability.test_a", {"fault": "kill", "trials": 3, "survived": 2, "lost_entries": 0})
    record_figures("reliability.test_a", {"fault": "kill", "trials": 4, "survived": 4, "lost_entries": 0})
    record_figures("reliability.test_b", {"fault": "fuzz", "cases": 50, "server_errors": 1, "seed": 7})
    (tmp_path / "test_c.json").write_text('{"attacks": 5, "refused": 5}')
    rows = read_figures(tmp_path)
    assert [row["module"] for row in rows] == ["test_a", "test_b", "test_c"]
    figures = Figures(rows)
    assert (figures.total("trials"), figures.total("survived"), figures.total("attacks")) == (4, 4, 5)
    assert figures.problems() == ["a fuzz case got a server error"]
    printed = table(figures)
    assert "| kill | 4 | 4 |" in printed and "seed 7" in printed and "| test_c |" in printed
    assert "Fuzz cases run: 50, server errors: 1" in summary(figures, full=False)


def test_nothing_is_written_without_a_report_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(REPORT_DIR_ENV, raising=False)
    assert record_figures("reliability.test_a", {"fault": "kill", "trials": 1}) is None


def test_hostile_tests_count_as_attacks_tried_and_refused(tmp_path):
    junit = tmp_path / "hostile.xml"
    junit.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.test_hostile_station" name="test_a[1]"/>'
        '<testcase classname="tests.test_hostile_station" name="test_a[2]"><failure message="x"/></testcase>'
        '<testcase classname="tests.test_hostile_payloads" name="test_b"><skipped message="no pg"/></testcase>'
        '<testcase classname="tests.test_hostile_payloads" name="test_c"/>'
        '</testsuite></testsuites>')
    rows = {row["module"]: row for row in hostile_figures(junit)}
    assert (rows["test_hostile_station"]["attacks"], rows["test_hostile_station"]["refused"]) == (2, 1)
    assert (rows["test_hostile_payloads"]["attacks"], rows["test_hostile_payloads"]["skipped"]) == (1, 1)
    assert Figures(list(rows.values()), ["tests"]).problems() == ["pytest failed: tests", "an attack was not refused"]
