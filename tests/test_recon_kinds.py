from recon_support import history  # noqa: F401


def test_a_clean_history_has_no_discrepancy(history):
    assert history.find() == []
