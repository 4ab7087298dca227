"""Central reconciliation: the ``recon`` command that proves every fen (docs/recon.md).

- ``kinds``: the kinds of discrepancy (the JSON contract) and ``Discrepancy``;
- ``context``: a run's scope (period, stations), clock and policy;
- ``facts``: what the signed tokens say, extracted into the temporary table ``recon_fact``;
- ``completeness``, ``integrity``, ``ledger``, ``billers``, ``cash``, ``risk``: the checks, set-based SQL;
- ``run``: every check over one consistent snapshot; ``store``: exceptions with stable ids and their audit trail;
- ``settlement``: the daily settlement report; ``i18n``: explanations in Chinese or English; ``cli``: ``recon``.

Imports only ``sync_server`` and ``station.protocol``.
"""
