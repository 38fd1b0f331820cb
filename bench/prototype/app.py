"""The 2015 Flask prototype's write path, as the historical baseline.

Same steps per request as the prototype's app.py: Werkzeug's threaded
development server (it ran as `python app.py` under supervisor), the
line-protocol body read as a form field named `rtc_stats,id`, split into id,
fields and timestamp, turned into an influxdb-python point, and one
synchronous InfluxDB write per request. Ported to Python 3; nothing else
changed, so it measures what the old server did, not a tuned version of it.

    python app.py PORT INFLUXDB_PORT DATABASE
"""
import json
import sys

from flask import Flask, abort, request
from influxdb import InfluxDBClient

app = Flask(__name__)
client = None


def write_metrics(parts):
    point = {"measurement": "rtc_stats", "tags": {"id": parts[0]}, "fields": {}, "times": parts[2]}
    for pair in parts[1].split(","):
        name, value = pair.split("=")
        point["fields"][name] = float(value)
    return client.write_points([point])


@app.route("/v1/stats/write/", methods=["POST"])
def write_stats():
    if write_metrics(request.form["rtc_stats,id"].split(" ")):
        return json.dumps({"success": True}), 200, {"ContentType": "application/json"}
    abort(500)


@app.route("/healthz")
def healthz():
    return "ok"


if __name__ == "__main__":
    port, influxdb_port, database = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    client = InfluxDBClient("127.0.0.1", influxdb_port, "test", "test", database)
    app.run(host="127.0.0.1", port=port, threaded=True)
