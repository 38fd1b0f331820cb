#!/usr/bin/env bash
# Start a local InfluxDB (Debian's influxdb package) with its data under ./var/,
# unless one already answers on the port. Used by `make run`.
set -euo pipefail
port=${INFLUXDB_PORT:-8086}
var=${VAR_DIR:-$PWD/var}
if curl -sf "http://127.0.0.1:$port/ping" >/dev/null 2>&1; then
  echo "InfluxDB already answers on 127.0.0.1:$port"
  exit 0
fi
mkdir -p "$var/influxdb"
sed -e "s#@VAR@#$var/influxdb#g" -e "s#@PORT@#$port#g" -e "s#@RPC_PORT@#$((port + 2))#g" \
  conf/influxdb.conf.in > "$var/influxdb.conf"
nohup influxd run -config "$var/influxdb.conf" >> "$var/influxdb.log" 2>&1 &
echo $! > "$var/influxdb.pid"
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/ping" >/dev/null 2>&1 && { echo "InfluxDB started on 127.0.0.1:$port (data in $var/influxdb)"; exit 0; }
  sleep 0.2
done
echo "InfluxDB did not start; see $var/influxdb.log" >&2
exit 1
