"""Alerts, split the way Prometheus splits alerting (docs/alerts.md).

- rules.py: the rules file, parsed and checked.
- inputs.py: what the rules read each tick.
- state.py: each (rule, call, peer)'s state machine and the events it produces.
- election.py: which of the processes on one database sends.
- delivery.py: the webhook receivers, one queue and one worker each.
- service.py: AlertService, which runs these every detector tick.

What they write to and read from InfluxDB is rtcscope/storage/alerts.py.
"""
