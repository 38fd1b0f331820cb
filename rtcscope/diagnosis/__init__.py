"""Why peers are poor: the fleet broken down by one dimension, and the dimension
values that set the poor peers apart (docs/diagnosis.md).

Pure and synchronous, the same for the two sources:

- live peers, as the detector holds them: an iterable of (call, peer,
  dimension values, verdict, mos), read once per answer;
- ended peers, as InfluxDB's GROUP BY answers over rtc_peer_summaries: rows of
  (value, peers, poor, mos_p50) for a breakdown, groups of (dimension values,
  peers, poor) for an explanation.

- `breakdown`: each value of one dimension with its peers, poor peers, poor
  share, median MOS and lift;
- `explain`: the statistic that ranks values and the rules that pick findings.
"""
# A peer is poor when its verdict is (rtcscope/quality.py's bands).
POOR = "poor"
