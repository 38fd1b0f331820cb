"""Alerts from outside the server: a rules file."""


def high_rtt_rules(hold="1s"):
    """An alert rules file (TOML) with one rule: rtt above 400 ms held for `hold`."""
    return f"""
[[rule]]
name = "high_rtt"
metric = "rtt"
op = ">"
threshold = 400
for = "{hold}"
severity = "critical"
"""
