"""The InfluxDB side: database set-up, batch writes and every query the API runs.

Every value that reaches InfluxQL is either a number formatted here or an
identifier that already matched a strict pattern, and is quoted anyway.
"""
import asyncio
import contextlib
import gc
import time
import warnings
from typing import NamedTuple
from urllib.parse import urlparse

import aiohttp
import orjson

from ..timeparse import parse_duration
from .feed import decode_dimensions, decode_sample_runs
from .schema import (
    DIMENSIONS_MEASUREMENT,
    EVENTS_MEASUREMENT,
    FEED_MEASUREMENT,
    FEED_RETENTION,
    FEED_RETENTION_POLICY,
    MEASUREMENT,
    PEER_SUMMARIES_MEASUREMENT,
    PRESENCE_MEASUREMENT,
    RETENTION_POLICY,
    SESSIONS_MEASUREMENT,
    SUMMARIES_MEASUREMENT,
)
from .writer import WriteRejected

warnings.filterwarnings("ignore", message="Pandas/Numpy is not available")
from aioinflux import InfluxDBClient  # noqa: E402  (after silencing its optional-pandas warning)
from aioinflux.client import InfluxDBError, InfluxDBWriteError  # noqa: E402,F401  (InfluxDBError: what writes raise, for callers)

_FEED_PREFIX = FEED_MEASUREMENT.encode() + b","
FIELD_CACHE_SECONDS = 5.0
# Rows per chunk of the feed's chunked answers (query_chunks): a chunk is decoded and folded
# in one hold of the event loop, some milliseconds; the feed's rows carry samples, its keys little.
FEED_CHUNK_ROWS = 300
FEED_KEY_CHUNK_ROWS = 5000


class StoreError(Exception):
    """InfluxDB could not answer a query."""


@contextlib.contextmanager
def collection_paused():
    """No cyclic garbage collection inside (nothing may await there): for decoding and
    folding large answers. Their objects live a moment, long enough for the collections
    their own allocations trigger to promote them into the old generation, and every
    such batch ends in a full collection of the whole heap (measured: half of a tick's
    CPU at 20,000 live calls). Reference counting frees them as well."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class FeedRows(NamedTuple):
    """What `Store.feed_since` read: each list [(call, peer, row)], but `samples`: the
    feed.SampleRuns of the presence rows that carry samples, one per chunk of the answer;
    `dimensions` rows (receive ms, {name: value or None}) of the presence rows that carry
    them (`d`); `keys` {node: {time ns}} of every row read whole (ints, which the cyclic
    collector never has to look at); `queries` the queries it took."""

    presence: list
    ends: list
    disconnects: list
    imports: list
    samples: list
    dimensions: list
    keys: dict
    queries: int = 1


def quote_identifier(name):
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_literal(value):
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# InfluxDB's time is int64 nanoseconds (1677-09-21 to 2262-04-11): a bound
# beyond it is a query error, so bounds are clamped to what can be stored.
MIN_TIME_MS = -9_223_372_036_854
MAX_TIME_MS = 9_223_372_036_853


def time_range(start_ms, end_ms):
    """Inclusive of both ends at millisecond resolution (points carry µs)."""
    start_ms = min(max(int(start_ms), MIN_TIME_MS), MAX_TIME_MS)
    end_ms = min(max(int(end_ms), MIN_TIME_MS), MAX_TIME_MS)
    return f"time >= {start_ms}ms AND time < {end_ms + 1}ms"


class Store:
    def __init__(self, url, database, retention="30d", timeout=10.0):
        parsed = urlparse(url)
        self.database = database
        self.retention = retention
        self.client = InfluxDBClient(
            host=parsed.hostname or "127.0.0.1", port=parsed.port or 8086,
            path=(parsed.path.rstrip("/") + "/") if parsed.path else "/",
            ssl=parsed.scheme == "https", db=database, output="json",
            username=parsed.username, password=parsed.password,
            timeout=timeout, loop=asyncio.get_event_loop())
        self._fields = (0.0, frozenset())
        self.queries = 0

    async def close(self):
        await self.client.close()

    async def setup(self):
        """Create the database and make our retention policy its default.

        A short shard duration keeps each shard's index small, since every
        call adds series."""
        await self.query(f"CREATE DATABASE {quote_identifier(self.database)}")
        duration = "INF" if self.retention in ("0", "inf", "INF") else self.retention
        shard = "1d" if duration == "INF" or (parse_duration(duration) or 0) >= 86400 else "1h"
        rows = await self.query(f"SHOW RETENTION POLICIES ON {quote_identifier(self.database)}")
        exists = any(row.get("name") == RETENTION_POLICY for series in rows for row in series["rows"])
        verb = "ALTER" if exists else "CREATE"
        replication = "" if exists else " REPLICATION 1"
        await self.query(
            f"{verb} RETENTION POLICY {quote_identifier(RETENTION_POLICY)} ON "
            f"{quote_identifier(self.database)} DURATION {duration}{replication} "
            f"SHARD DURATION {shard} DEFAULT")
        verb = "ALTER" if any(row.get("name") == FEED_RETENTION_POLICY for series in rows for row in series["rows"]) \
            else "CREATE"
        await self.query(
            f"{verb} RETENTION POLICY {quote_identifier(FEED_RETENTION_POLICY)} ON "
            f"{quote_identifier(self.database)} DURATION {FEED_RETENTION}{'' if verb == 'ALTER' else ' REPLICATION 1'} "
            f"SHARD DURATION {FEED_RETENTION}")

    async def ping(self):
        try:
            await self.client.ping()
            return True
        except (TimeoutError, aiohttp.ClientError, OSError):
            return False

    async def write(self, data):
        """One HTTP write of a batch; 400 means InfluxDB refused the points themselves.

        The retention policy is named: before set-up has created it InfluxDB
        answers 500 and the batch is retried, where a write to the database's
        first default policy would land where queries never look."""
        feed = None
        if _FEED_PREFIX in data:
            lines = data.split(b"\n")
            feed = b"\n".join(line for line in lines if line.startswith(_FEED_PREFIX))
            data = b"\n".join(line for line in lines if not line.startswith(_FEED_PREFIX))
        refused = None
        if data:
            try:
                await self.client.write(data, rp=RETENTION_POLICY)
            except InfluxDBWriteError as exc:
                if exc.status != 400:  # 404/401/5xx: the whole batch is retried
                    raise
                # Bad points (e.g. a field type conflict): InfluxDB kept the others, whose
                # feed rows must still be written, or the detector would never see them.
                refused = WriteRejected(str(exc))
        if feed:  # after the points it announces: the detector reads them once it has seen the feed
            try:
                await self.client.write(feed, rp=FEED_RETENTION_POLICY)
            except InfluxDBWriteError as exc:
                if exc.status == 400:
                    raise WriteRejected(str(exc)) from None
                raise
        if refused is not None:
            raise refused

    async def query(self, statement):
        """Run one statement; returns [{"name", "tags", "rows": [dict]}]."""
        return [{"name": series.get("name"), "tags": series.get("tags") or {},
                 "rows": [dict(zip(series["columns"], values)) for values in series.get("values", [])]}
                for series in await self.query_series(statement)]

    async def query_series(self, statement, epoch="ms"):
        """Run one statement; returns InfluxDB's series as they come ("columns", "values").

        The answer is decoded by orjson, over the client's session: the client's own
        json.loads was a third of the detector's CPU at 20,000 live calls."""
        body, status = await self.answer(statement, epoch)
        return _series_of(body, status)

    async def query_chunks(self, statement, epoch, rows):
        """Run one statement; yields InfluxDB's series a chunk of at most `rows` rows at a
        time (its chunked answer), the event loop given back before each next one: a large
        answer decoded, and folded by the caller, in pieces the loop can wait for
        (docs/live.md, "The loop's budget")."""
        body, status = await self.answer(statement, epoch, {"chunked": "true", "chunk_size": str(rows)})
        for chunk in body.split(b"\n"):
            if chunk:
                yield _series_of(chunk, status)
                await asyncio.sleep(0)

    async def answer(self, statement, epoch, options=None):
        """(body, HTTP status) of one statement's answer."""
        self.queries += 1
        client = self.client
        try:
            if client._session is None:
                await client.create_session()
            async with client._session.post(client.url.format(endpoint="query"),
                                            data={"q": statement, "db": self.database, "epoch": epoch,
                                                  **(options or {})}) as response:
                return await response.read(), response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise StoreError(str(exc) or type(exc).__name__) from None

    async def field_names(self):
        """Field keys stored in rtc_stats, cached briefly: they decide 404 vs 200."""
        fetched, names = self._fields
        if time.monotonic() - fetched > FIELD_CACHE_SECONDS:
            rows = await self.query(f"SHOW FIELD KEYS FROM {MEASUREMENT}")
            names = frozenset(row["fieldKey"] for series in rows for row in series["rows"])
            self._fields = (time.monotonic(), names)
        return names

    async def metric_series(self, metric, start_ms, end_ms, bucket_s, *, rate, call=None, calls=None, by="call"):
        """Bucketed values of a metric per call (or per peer, `by="peer"`): {name: [(ms, value|None)]},
        of one `call` or of the `calls` listed (by the tag index: their series alone are read).

        Gauges are averaged over a call's (or peer's) series; counters shown as
        rates are differentiated per series (peer x kind) and then summed."""
        where = time_range(start_ms, end_ms)
        if call is not None:
            calls = [call]
        if calls is not None:
            if not calls:
                return {}
            where += " AND (" + " OR ".join(f'"call" = {quote_literal(name)}' for name in calls) + ")"
        statement = _series_statement(metric, where, bucket_s, rate, quote_identifier(by),
                                      "fill(none)" if rate else "fill(null)")
        scale = metric.scale
        result = {}
        for series in await self.query(statement):
            result[series["tags"].get(by, "")] = [
                (row["time"], None if row["value"] is None else row["value"] * scale)
                for row in series["rows"]]
        return result

    async def metric_band(self, metric, start_ms, end_ms, bucket_s, *, rate, percentiles):
        """Per bucket, the `percentiles` across calls of each call's value as metric_series
        gives it: {ms: [value of each percentile]}. One statement whose answer is a row per
        bucket however many calls there are; InfluxDB still reads every call's series in
        the range (a subquery per call, then percentile() across them: nearest rank, rounded)."""
        where = time_range(start_ms, end_ms)
        per_call = _series_statement(metric, where, bucket_s, rate, '"call"', "fill(none)")
        names = [f"p{int(rank)}" for rank in percentiles]
        columns = ", ".join(f'percentile("value", {int(rank)}) AS "{name}"' for rank, name in zip(percentiles, names))
        statement = f'SELECT {columns} FROM ({per_call}) WHERE {where} GROUP BY time({bucket_s}s) fill(none)'
        scale = metric.scale
        return {row["time"]: [None if row[name] is None else row[name] * scale for name in names]
                for series in await self.query(statement) for row in series["rows"]}

    async def call_activity(self, since_ms, until_ms, call=None):
        """Presence and end events per (call, peer) since `since_ms`."""
        where = time_range(since_ms, until_ms)
        if call is not None:
            where += f' AND "call" = {quote_literal(call)}'
        presence_q = (f'SELECT min("first") AS "first", max("last") AS "last", max("recv") AS "recv" '
                      f'FROM {PRESENCE_MEASUREMENT} WHERE {where} GROUP BY "call", "peer"')
        # One statement, two selections per group: the latest end (one selector, so the row keeps
        # that end's time, detail and reason) and the latest disconnect marker, which has no `at`.
        ends_q = (f'SELECT * FROM (SELECT last("at") AS "at", "detail", "reason" FROM {EVENTS_MEASUREMENT} WHERE {where} '
                  f'GROUP BY "call", "peer"), (SELECT last("disconnected") AS "disconnected" FROM '
                  f'{EVENTS_MEASUREMENT} WHERE {where} GROUP BY "call", "peer") WHERE {where} GROUP BY "call", "peer"')
        presence, ends = await asyncio.gather(self.query(presence_q), self.query(ends_q))
        return _complete_rows(presence, ("first", "last", "recv")), _latest_events(ends)

    async def feed_since(self, since_ms, known=None):
        """The live feed's rows received since `since_ms`, from every process, as FeedRows:
        presence, ends and disconnect markers with the fields call_activity gives them,
        imports ({time, imported}: a dump's points were all written), and the samples of
        the presence rows that carry them.

        No grouping over calls: the cost is per row read. A row InfluxDB shows
        only partly (some fields not visible yet) is skipped; a reader with an
        overlap reads it whole next time. With `known` ({node: {time ns}}, the rows
        read whole before), the overlap is first read by key alone, and rows are read
        whole only from the first one not known: at a 1 s tick with a 3 s overlap,
        three quarters of the rows are re-read, and whole they were most of the read
        (InfluxDB encoding them, the detector decoding them)."""
        since = f"{min(max(int(since_ms), MIN_TIME_MS), MAX_TIME_MS)}ms"
        kept = {}
        if known:
            nothing = frozenset()
            first_unknown = None
            keys = (f'SELECT "call" FROM {quote_identifier(FEED_RETENTION_POLICY)}.{quote_identifier(FEED_MEASUREMENT)} '
                    f'WHERE time >= {since} GROUP BY "node"')
            async for answer in self.query_chunks(keys, epoch="ns", rows=FEED_KEY_CHUNK_ROWS):
                for series in answer:
                    node = (series.get("tags") or {}).get("node", "")
                    read_whole, seen = known.get(node, nothing), kept.setdefault(node, set())
                    for stamp, _ in series.get("values", ()):
                        if stamp in read_whole:
                            seen.add(stamp)
                        elif first_unknown is None or stamp < first_unknown:
                            first_unknown = stamp
            if first_unknown is None:
                return FeedRows([], [], [], [], [], [], kept, queries=1)
            since = str(first_unknown)  # ns
        names = ("node", "call", "peer", "first", "last", "recv", "w", "d", "end", "at", "detail", "disconnected",
                 "imported", "reason")
        statement = (f"SELECT {', '.join(map(quote_identifier, names))} FROM "
                     f"{quote_identifier(FEED_RETENTION_POLICY)}.{quote_identifier(FEED_MEASUREMENT)} "
                     f"WHERE time >= {since}")
        read = FeedRows([], [], [], [], [], [], {})
        async for answer in self.query_chunks(statement, epoch="ns", rows=FEED_CHUNK_ROWS):
            with collection_paused():
                _fold_feed(answer, names, known or {}, read)
        for node, stamps in kept.items():
            read.keys.setdefault(node, set()).update(stamps)
        return read._replace(queries=2) if known else read

    async def dimension_points(self, start_ms, end_ms, call=None):
        """The rtc_dimensions points in the range, of one call when `call` is given: {call:
        [(peer, time ms, {name: value or None})] oldest first}."""
        where = f' AND "call" = {quote_literal(call)}' if call is not None else ""
        statement = (f'SELECT "d" FROM {DIMENSIONS_MEASUREMENT} WHERE {time_range(start_ms, end_ms)}{where} '
                     f'GROUP BY "call", "peer"')
        found = {}
        for series in await self.query(statement):
            tags = series["tags"]
            points = found.setdefault(tags.get("call", ""), [])
            points.extend((tags.get("peer", ""), row["time"], decode_dimensions(row["d"]))
                          for row in series["rows"] if row.get("d"))
        for points in found.values():
            points.sort(key=lambda point: point[1])
        return found

    async def first_seen(self, since_ms, until_ms):
        """{call: its earliest sample (ms)} of the calls with presence rows in the range."""
        statement = (f'SELECT min("first") AS "first" FROM {PRESENCE_MEASUREMENT} '
                     f'WHERE {time_range(since_ms, until_ms)} GROUP BY "call"')
        return {s["tags"].get("call", ""): int(s["rows"][0]["first"]) for s in await self.query(statement)
                if s["rows"] and s["rows"][0]["first"] is not None}

    async def rtcstats_session(self, session, start_ms, end_ms):
        """The newest stored state of an rtcstats session in the range, whatever call and peer
        it was stored under: (its tags, its row with `sn` and `offset`), or None."""
        statement = (f'SELECT last("sn") AS "sn", last("offset") AS "offset" FROM {SESSIONS_MEASUREMENT} '
                     f'WHERE {time_range(start_ms, end_ms)} '
                     f'AND "session" = {quote_literal(session)} GROUP BY "call", "peer"')
        latest = None
        for series in await self.query(statement):
            for row in series["rows"]:
                if row.get("sn") is not None and (latest is None or row["time"] > latest[1]["time"]):
                    latest = (series["tags"], row)
        return latest

    async def call_buckets(self, call, start_ms, end_ms, bucket_s):
        """Every field of one call, bucketed per (peer, kind): [(tags, rows)] with
        mean_<field> and count_<field> (the counts tell a partial bucket)."""
        statement = (f'SELECT mean(*), count(*) FROM {MEASUREMENT} WHERE {time_range(start_ms, end_ms)} '
                     f'AND "call" = {quote_literal(call)} GROUP BY time({bucket_s}s), "peer", "kind" fill(none)')
        return [(series["tags"], series["rows"]) for series in await self.query(statement)]

    async def quality_window(self, start_ms, end_ms, gauges, lasts, counters):
        """Every call's window per (call, peer, kind) in one grouped query: the mean of
        `gauges`, the last of `lasts` and the increase (spread) of `counters`."""
        columns = [f"mean({quote_identifier(name)}) AS {quote_identifier(name)}" for name in gauges]
        columns += [f"last({quote_identifier(name)}) AS {quote_identifier(name)}" for name in lasts]
        columns += [f"spread({quote_identifier(name)}) AS {quote_identifier(name)}" for name in counters]
        statement = (f'SELECT {", ".join(columns)} FROM {MEASUREMENT} WHERE {time_range(start_ms, end_ms)} '
                     f'GROUP BY "call", "peer", "kind"')
        return [(s["tags"].get("call", ""), s["tags"].get("peer", ""), s["tags"].get("kind", ""), s["rows"][0])
                for s in await self.query(statement) if s["rows"]]

    async def call_summaries(self, start_ms, end_ms):
        """The rtc_call_summaries points of calls that ended in the range: {call: row}."""
        statement = f'SELECT * FROM {SUMMARIES_MEASUREMENT} WHERE {time_range(start_ms, end_ms)}'
        return {row["call"]: row for series in await self.query(statement) for row in series["rows"]}

    async def fleet_history(self, start_ms, end_ms, bucket_s):
        """Per bucket of call ends: calls, minutes called, median MOS (nearest rank) and share of poor calls."""
        statement = (f'SELECT count("duration_s") AS "calls", sum("duration_s") AS "seconds", '
                     f'percentile("mos_mean", 50) AS "mos_p50", mean("poor") AS "poor_share" '
                     f'FROM {SUMMARIES_MEASUREMENT} WHERE {time_range(start_ms, end_ms)} '
                     f'GROUP BY time({bucket_s}s) fill(null)')
        return [row for series in await self.query(statement) for row in series["rows"]]

    async def peer_breakdown(self, start_ms, end_ms, dimension):
        """The peers that ended in the range per value of one dimension (a tag of
        rtc_peer_summaries; None: peers without it): [(value, peers, poor, mos_p50)],
        the median MOS by nearest rank as the live breakdown's."""
        statement = (f'SELECT count("poor") AS "peers", sum("poor") AS "poor", percentile("mos_mean", 50) AS "mos_p50" '
                     f'FROM {PEER_SUMMARIES_MEASUREMENT} WHERE {time_range(start_ms, end_ms)} '
                     f'GROUP BY {quote_identifier(dimension)}')
        return [(series["tags"].get(dimension) or None, row["peers"], row["poor"] or 0, row["mos_p50"])
                for series in await self.query(statement) for row in series["rows"]]

    async def peer_tally(self, start_ms, end_ms, dimensions):
        """The peers that ended in the range as an explanation counts them, in two queries:
        (peers, {(dimension, value): peers} of each of `dimensions`, [(values, poor peers)]
        of the poor peers grouped by all their dimensions)."""
        where = time_range(start_ms, end_ms)
        count = f'SELECT count("poor") AS "peers" FROM {PEER_SUMMARIES_MEASUREMENT} WHERE {where}'
        statements = [count] + [f"{count} GROUP BY {quote_identifier(name)}" for name in dimensions]
        peers, counts = 0, {}
        for series in await self.query(";".join(statements)):
            found = series["rows"][0]["peers"] if series["rows"] else 0
            if not series["tags"]:
                peers = found
            for name, value in series["tags"].items():
                if value:
                    counts[(name, value)] = found
        poor = await self.query(f'SELECT count("poor") AS "poor" FROM {PEER_SUMMARIES_MEASUREMENT} '
                                f'WHERE {where} AND "poor" = 1 GROUP BY *')
        poor_groups = [({name: value for name, value in series["tags"].items() if value}, series["rows"][0]["poor"])
                       for series in poor if series["rows"]]
        return peers, counts, poor_groups


def _series_statement(metric, where, bucket_s, rate, group, fill):
    """A metric's value per bucket and `group` (a quoted tag): a gauge's mean over the group's
    series, a counter's non-negative per-second derivative of each series' last value, summed."""
    field = quote_identifier(metric.source_field)
    if rate:
        return (f'SELECT sum("rate") AS "value" FROM ('
                f'SELECT non_negative_derivative(last({field}), 1s) AS "rate" FROM {MEASUREMENT} '
                f'WHERE {where} GROUP BY time({bucket_s}s), "call", "peer", "kind") '
                f'WHERE {where} GROUP BY time({bucket_s}s), {group} {fill}')
    return f'SELECT mean({field}) AS "value" FROM {MEASUREMENT} WHERE {where} GROUP BY time({bucket_s}s), {group} {fill}'


def _fold_feed(answer, names, known, read):
    """The rows of (a chunk of) feed_since's answer (`names` its columns) into its FeedRows `read`."""
    presence, ends, disconnects, imports, samples, dimensions, keys, _ = read
    nothing = frozenset()
    sampled = []  # the presence rows with samples, decoded together
    for series in answer:
        # Rows as lists, by column position: a feed read holds tens of thousands of rows.
        (time_, node_, call_, peer_, first_, last_, recv_, w_, d_, end_, at_, detail_, disconnected_, imported_,
         reason_) = map(
            series["columns"].index, ("time", *names))
        for values in series.get("values", ()):
            node, stamp = values[node_], values[time_]
            seen = keys.get(node)
            if seen is None:
                seen = keys[node] = set()
            if stamp in known.get(node, nothing):
                seen.add(stamp)
                continue
            call, peer = values[call_], values[peer_]
            if not call or peer is None:
                continue
            if values[recv_] is not None:
                last = values[last_]
                if values[first_] is None or last is None:
                    continue
                presence.append((call, peer, {"first": values[first_], "last": last, "recv": values[recv_]}))
                if values[w_] is None:  # not visible yet, or a row of an older server: read again
                    continue
                if values[w_]:
                    sampled.append((call, peer, values[w_], last))
                if values[d_]:
                    dimensions.append((call, peer, (values[recv_], decode_dimensions(values[d_]))))
            elif values[end_] is not None:
                if values[at_] is None:
                    continue
                ends.append((call, peer, {"time": stamp // 1_000_000, "at": values[at_],
                                          "detail": values[detail_], "reason": values[reason_]}))
            elif values[disconnected_] is not None:
                disconnects.append((call, peer, {"time": stamp // 1_000_000, "disconnected": values[disconnected_]}))
            elif values[imported_] is not None:
                imports.append((call, peer, {"time": stamp // 1_000_000, "imported": values[imported_]}))
            else:
                continue
            seen.add(stamp)
    if sampled:
        samples.append(decode_sample_runs(sampled))


def _series_of(body, status):
    """The series of every statement of a query's answer; StoreError for an error in it."""
    try:
        result = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise StoreError(f"InfluxDB answered {status} with no JSON") from None
    if "error" in result:
        raise StoreError(result["error"])
    series_out = []
    for statement_result in result.get("results", []):
        if "error" in statement_result:
            raise StoreError(statement_result["error"])
        series_out.extend(statement_result.get("series", []))
    return series_out


def _complete_rows(series, fields):
    """[(call, peer, row)] of the groups whose row has every one of `fields`.

    InfluxDB can answer while a point is only partly written (some of its
    fields not visible yet): a new peer's group then lacks a value. It is
    skipped, not guessed at; the next read sees the whole point."""
    return [(s["tags"].get("call", ""), s["tags"].get("peer", ""), s["rows"][0]) for s in series
            if s["rows"] and all(s["rows"][0].get(name) is not None for name in fields)]


def _latest_events(series):
    """[(call, peer, {time, at, detail, reason, disconnected})]: a group's end row and marker
    row folded into one; the end's keys are None without an end, `disconnected`
    without a marker. Selectors only pick points whose field is visible, so a
    partly written event is passed by until the next read sees it whole."""
    events = []
    for s in series:
        end = next((row for row in s["rows"] if row.get("at") is not None), {})
        marker = next((row["disconnected"] for row in s["rows"] if row.get("disconnected") is not None), None)
        if end or marker is not None:
            events.append((s["tags"].get("call", ""), s["tags"].get("peer", ""),
                           {"time": end.get("time"), "at": end.get("at"), "detail": end.get("detail"),
                            "reason": end.get("reason"), "disconnected": marker}))
    return events
