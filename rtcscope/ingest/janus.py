"""What Janus's HTTP event handler posts: the media server's view of every peer.

Janus (`janus.eventhandler.sampleevh`) POSTs each event as a JSON object, or with
`grouping` an array of up to 100 of them (docs/integrations.md). The events of a
handle whose opaque_id names a call (`<call>/<peer>`, or `<call>` alone: peer
`janus-<handle_id>`) are kept under peer `<peer>@janus`, the SFU's view of `<peer>`:

- media statistics (type 32, subtype 3) become samples of the registry's metrics
  per kind (audio, video), as a client's getStats() do, plus the direction each
  figure belongs to (`uplink*`: what Janus received from the peer, `downlink*`:
  what the peer reported of what Janus sent it, in RTCP receiver reports);
- WebRTC state (type 16) becomes `connection` samples of state codes (`iceState`,
  `dtlsState`, `hangupReason`) and, from the selected pair, the peer's candidate
  type and transport (dimensions, never addresses);
- a handle's attach (type 2) is the peer's presence, and the detach of its last
  handle (or its session's timeout or destruction, type 1) its end.

Every other event is counted and not stored. The samples go through the ingest
collector (formats), so they are the same points and feed rows as JSON ingest's.

One peer is often several handles (a videoroom publisher and a subscriber per
feed it watches), whose statistics arrive at their own times: a peer's sample of
a kind is the union of its handles' latest statistics, counters summed, delays and
link qualities the worst, as the registry combines several streams. `JanusPeers`
keeps that state for one process, bounded.
"""
import functools
import operator
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec
import orjson

from ..dimensions import EMITTER_DIMENSION, MAX_VALUE
from ..dimensions.report import CANDIDATE_TYPES, TRANSPORTS
from ..registry import ICE_STATE_CODES
from ..storage.lines import encode_extracted
from ..storage.schema import IDENTIFIER_RE, NOT_IDENTIFIER_RE, SFU_SUFFIX
from .formats import IngestError, Parsed, _Collector, _show

# Janus's event types (src/events/eventhandler.h), named as its `events` setting names them.
EVENT_TYPES = {1: "sessions", 2: "handles", 4: "external", 8: "jsep", 16: "webrtc", 32: "media", 64: "plugins",
               128: "transports", 256: "core"}
SESSION, HANDLE, WEBRTC, MEDIA = 1, 2, 16, 32
_WEBRTC_ICE, _WEBRTC_PAIR, _WEBRTC_DTLS, _WEBRTC_STATE = 1, 4, 5, 6
_MEDIA_STATS = 3
# Types of the events kept: a session's, and those of a handle (skipped without a usable opaque_id).
_USED_TYPES = frozenset({SESSION, HANDLE, WEBRTC, MEDIA})
_SUBTYPES = frozenset({int, type(None)})
# What an event asks for (an action's first item).
_STATS, _STATE, _PAIR, _ATTACHED, _DETACHED, _SESSION_OVER = range(6)
_HANDLE_ACTIONS = {"attached": _ATTACHED, "detached": _DETACHED}

# State codes, stored as numbers like every field: libnice's component states (registry.ICE_STATE_CODES),
# Janus's DTLS states (dtls.h), and the hang-up reasons Janus gives (ice.c, janus.c; 0 for another).
DTLS_STATE_CODES = {"created": 1.0, "trying": 2.0, "connected": 3.0, "failed": 4.0}
HANGUP_REASON_CODES = {"Janus API": 1.0, "Close PC": 2.0, "Detach": 3.0, "DTLS alert": 4.0, "ICE failed": 5.0,
                       "DTLS error": 6.0, "DTLS timeout": 7.0, "DTLS-SRTP stack error": 8.0,
                       "Gathering error": 9.0, "ICE gathering error": 10.0, "Admin API": 11.0}
OTHER_HANGUP_REASON = 0.0

# The media a statistics event names (audio, video, its simulcast substreams) and their kinds; "data" is a data channel's.
_MEDIA_KINDS = {"audio": "audio", "video": "video", "video-sim1": "video", "video-sim2": "video"}
_KINDS = frozenset(_MEDIA_KINDS.values())
# A media statistics event's numbers: eight counters (0 when absent), then the delays and link
# qualities (None when absent).
_STAT_NAMES = ("packets-received", "packets-sent", "bytes-received", "bytes-sent", "lost", "lost-by-remote",
               "nacks-received", "nacks-sent", "rtt", "jitter-local", "jitter-remote", "in-link-quality",
               "in-media-link-quality", "out-link-quality", "out-media-link-quality")
_COUNTERS = 8
_stats_of = operator.itemgetter(*_STAT_NAMES)  # KeyError when one is absent
# A number of a statistics event as Janus sends it (integers, written as InfluxDB floats all the
# same): kept until the handle's next event, a small integer is no object of its own to free then,
# when its memory is long out of the cache. Integers are kept within a double's exact range, so the
# sums of a peer's streams stay far within the 64 bits orjson writes; a larger one is a float.
_EXACT = 2**53
_Number = Annotated[int, msgspec.Meta(ge=-_EXACT, le=_EXACT)] | float
# One medium of a media statistics event as a handle keeps it (`_Handle.streams`), and as msgspec
# decodes it (`_DECODER`): the fields read of what Janus sends.
_Stream = msgspec.defstruct("_Stream", [
    ("media", Literal[(*_MEDIA_KINDS, "data")] | None, None), ("mid", str | None, None), ("codec", str | None, None),
    *((name.replace("-", "_"), _Number, msgspec.field(name=name, default=0)) for name in _STAT_NAMES[:_COUNTERS]),
    *((name.replace("-", "_"), _Number | None, msgspec.field(name=name, default=None))
      for name in _STAT_NAMES[_COUNTERS:])],
    gc=False)  # decoded data: never in a cycle
# What a peer's sample has of its streams' delays and link qualities, when it has them (`_Apply.union`).
_FIGURES = ("rtt", "jitter", "uplinkJitter", "downlinkJitter", "uplinkQuality", "uplinkMediaQuality", "downlinkQuality",
            "downlinkMediaQuality")
_counters_of = operator.attrgetter(*(name.replace("-", "_") for name in _STAT_NAMES[:_COUNTERS]))
_NUMBERS = frozenset({int, float})
_CODEC_DIMENSIONS = {"audio": "audio_codec", "video": "video_codec"}
_LOWERCASE_CODECS = frozenset({"opus", "multiopus", "red"})  # as browsers' mimeTypes spell them

# How long a handle that says nothing is remembered (it then leaves its peer's sums, as a peer
# connection does in rtcstats), and how many handles one process remembers at most.
HANDLE_IDLE_S = 60.0
MAX_HANDLES = 100_000
MAX_ENDED_SESSIONS = 10_000
# Series whose line-protocol prefix a process keeps from one post to the next (a Janus posts the same
# handles' every second), at most.
MAX_SERIES = 100_000


@dataclass
class Outcome:
    """One post: its points (`parsed`), the events per type, the skipped ones per
    reason, and each SFU peer's dimensions ({(call, peer): {name: value}})."""

    parsed: Parsed
    types: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    dimensions: dict = field(default_factory=dict)


class _Handle:
    __slots__ = ("key", "opaque_id", "session", "streams", "detached", "heard")

    def __init__(self, key, opaque_id, session, heard):
        self.key = key  # (call, peer) of the SFU peer, peer with SFU_SUFFIX
        self.opaque_id = opaque_id  # what gave `key`: a handle's later events with the same one need no new look
        self.session = session
        self.streams = {kind: {} for kind in _KINDS}  # kind -> {(mid, media): its latest _Stream}
        self.detached = False
        self.heard = heard


class JanusPeers:
    """The handles one process has heard of, and which of them make each SFU peer.

    A handle is forgotten once its peer ends, or after `idle_s` without an event;
    at most `max_handles` are kept (the least recently heard go first). Behind
    several processes, one Janus's posts go to one process (conf/nginx.conf), so
    its handles are all in one table."""

    def __init__(self, idle_s=HANDLE_IDLE_S, max_handles=MAX_HANDLES, clock=time.monotonic):
        self.idle_s = idle_s
        self.max_handles = max_handles
        self.clock = clock
        self.handles = OrderedDict()  # handle id -> _Handle, least recently heard first
        self.peers = {}  # (call, peer) -> {handle id}
        self.sessions = {}  # session id -> {handle id}
        self.ended_sessions = OrderedDict()  # session id -> end reason, for the detaches that follow
        self.detached_peers = OrderedDict()  # session id -> {peers its detaches ended}, for a timeout that follows
        self._opaque = {}  # opaque_id -> (call, peer) or None: the split and the checks, once per id
        self.prefixes = {}  # the series prefixes of the SFU peers' points (storage.lines.Points)

    def handle(self, handle_id, key, opaque_id, session, now):
        found = self.handles.get(handle_id)
        if found is None or found.key != key:
            if found is not None:
                self._drop(handle_id)
            found = self.handles[handle_id] = _Handle(key, opaque_id, session, now)
            self.peers.setdefault(key, set()).add(handle_id)
            self.sessions.setdefault(session, set()).add(handle_id)
        else:
            found.opaque_id = opaque_id
            found.heard = now
            self.handles.move_to_end(handle_id)
        return found

    def _drop(self, handle_id):
        handle = self.handles.pop(handle_id)
        for table, key in ((self.peers, handle.key), (self.sessions, handle.session)):
            ids = table.get(key)
            if ids is not None:
                ids.discard(handle_id)
                if not ids:
                    del table[key]

    def forget_peer(self, key):
        for handle_id in list(self.peers.get(key, ())):
            self._drop(handle_id)

    def live_handles(self, key):
        return [handle_id for handle_id in self.peers.get(key, ()) if not self.handles[handle_id].detached]

    def session_handles(self, session):
        return [self.handles[handle_id] for handle_id in self.sessions.get(session, ())]

    def trim(self, now):
        handles, idle_after = self.handles, now - self.idle_s
        while handles:
            handle_id, handle = next(iter(handles.items()))
            if handle.heard >= idle_after and len(handles) <= self.max_handles:
                break
            self._drop(handle_id)
        for table in (self.ended_sessions, self.detached_peers):
            while len(table) > MAX_ENDED_SESSIONS:
                table.popitem(last=False)

    def peer_of(self, opaque_id, handle_id):
        """(call, SFU peer) of a handle, or None when its opaque_id names no call."""
        found = self._opaque.get(opaque_id, False)
        if found is False:
            call, slash, peer = opaque_id.partition("/")
            valid = IDENTIFIER_RE.fullmatch(call) and (not slash or (peer and IDENTIFIER_RE.fullmatch(peer + SFU_SUFFIX)))
            found = ((call, peer + SFU_SUFFIX if slash else None) if valid else None)
            if len(self._opaque) >= MAX_HANDLES:
                self._opaque.clear()
            self._opaque[opaque_id] = found
        if found is None:
            return None
        call, peer = found
        return call, peer or f"janus-{handle_id}{SFU_SUFFIX}"


def parse(body, now_ns, limits, peers):
    """A Janus post into an `Outcome`; IngestError (nothing applied) when any event
    of it is malformed. `peers`: the process's JanusPeers, brought up to date."""
    types, skipped = {}, {}
    actions = _read_decoded(body, limits, types, skipped)
    if actions is None:
        types, skipped = {}, {}
        actions = [_read(event, index, types, skipped) for index, event in enumerate(_document(body, limits))]
    collector = _Collector(now_ns, limits, peers.prefixes, prefixes_limit=MAX_SERIES)
    outcome = Outcome(collector.result, Counter({EVENT_TYPES.get(kind, "other"): count for kind, count in types.items()}),
                      Counter(skipped))
    _Apply(collector, peers, outcome).run(actions)
    collector.dimensions.update(outcome.dimensions)  # the SFU peers' own, stored as every peer's are
    collector.finish()
    return outcome


def _document(body, limits):
    """The post's events as orjson reads them."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise IngestError(f"invalid JSON: {exc}", code="invalid_json") from None
    if document.__class__ is dict:
        document = [document]
    elif document.__class__ is not list:
        raise IngestError("body must be a Janus event (an object) or an array of them")
    _check_count(document, limits)
    return document


def _check_count(document, limits):
    if len(document) > limits.max_samples:
        raise IngestError(f"more than {limits.max_samples} events in one request", 413, "too_many_samples")


# --- reading: every event checked before anything is applied ---------------------

# `where` below: the event's index in the post, told as "index N" in an error.

_TYPE_NAMES = {int: "an integer", str: "a string"}


def _typed(body, name, kind, where, prefix=""):
    """body[name] when absent, null or of class `kind`; an IngestError otherwise."""
    value = body.get(name)
    if value is not None and value.__class__ is not kind:
        raise IngestError(f"index {where}: {prefix}{name} must be {_TYPE_NAMES[kind]}, got {_show(value)}")
    return value


def _integer(event, name, where):
    return _typed(event, name, int, where)


def _text(body, name, where):
    return _typed(body, name, str, where, "event.")


def _object(event, where):
    body = event.get("event")
    if body.__class__ is not dict:
        raise IngestError(f"index {where}: event must be an object")
    return body


def _read(event, index, types, skipped):
    """One event as the action it asks for, (what, its details, handle id, session id,
    opaque_id, time ns, emitter), or None for one only counted (in `types`, by type)."""
    if event.__class__ is not dict:
        raise IngestError(f"index {index}: each event must be a JSON object")
    kind = event.get("type")
    if kind.__class__ is not int:
        raise IngestError(f"index {index}: type must be a Janus event type (an integer), got {_show(kind)}")
    types[kind] = types.get(kind, 0) + 1
    if kind not in _USED_TYPES:
        return None
    handle_id, session, stamp, subtype = map(event.get, ("handle_id", "session_id", "timestamp", "subtype"))
    if not (handle_id.__class__ is session.__class__ is stamp.__class__ is int and subtype.__class__ in _SUBTYPES):
        for name in ("handle_id", "session_id", "timestamp", "subtype"):
            _integer(event, name, index)
    ts_ns = None if stamp is None else stamp * 1000  # Janus's time of the event, µs
    if kind == SESSION:
        name = _text(_object(event, index), "name", index)
        return (_SESSION_OVER, name, None, session, None, ts_ns, None) if name in ("timeout", "destroyed") else None
    opaque_id = event.get("opaque_id")
    if kind == MEDIA:
        what, details = (_STATS, _read_stats(event.get("event"), index)) if subtype == _MEDIA_STATS else (None, None)
    elif kind == WEBRTC:
        what, details = _read_webrtc(_object(event, index), subtype, index)
    else:  # HANDLE
        body = _object(event, index)
        name = _text(body, "name", index)
        if opaque_id is None:
            opaque_id = body.get("opaque_id")  # where Janus before 0.10 put it
        what, details = _HANDLE_ACTIONS.get(name), None
    if opaque_id is not None and opaque_id.__class__ is not str:
        raise IngestError(f"index {index}: opaque_id must be a string, got {_show(opaque_id)}")
    if what is None:
        return None
    if handle_id is None:
        raise IngestError(f"index {index}: a {EVENT_TYPES[kind]} event needs its handle_id")
    if not opaque_id:
        skipped["no_opaque_id"] = skipped.get("no_opaque_id", 0) + 1
        return None
    return what, details, handle_id, session, opaque_id, ts_ns, event.get("emitter")


_NOTHING = (None, None)


def _read_webrtc(body, subtype, where):
    if subtype == _WEBRTC_ICE:
        state = _text(body, "ice", where)
        return _NOTHING if state is None else (_STATE, ("iceState", ICE_STATE_CODES.get(state)))
    if subtype == _WEBRTC_DTLS:
        state = _text(body, "dtls", where)
        return _NOTHING if state is None else (_STATE, ("dtlsState", DTLS_STATE_CODES.get(state)))
    if subtype == _WEBRTC_STATE and _text(body, "connection", where) == "hangup":
        reason = _text(body, "reason", where)
        return _STATE, ("hangupReason", HANGUP_REASON_CODES.get(reason, OTHER_HANGUP_REASON))
    if subtype == _WEBRTC_PAIR:
        candidates = body.get("candidates")
        remote = candidates.get("remote") if candidates.__class__ is dict else None
        if remote.__class__ is not dict:
            return _NOTHING
        # The peer's side of the pair as Janus sees it; its address and port are not kept.
        transport = _text(remote, "transport", where)
        return _PAIR, (("candidate_type", CANDIDATE_TYPES.get(_text(remote, "type", where))),
                       ("transport", transport if transport in TRANSPORTS else None))
    return _NOTHING


def _read_stats(body, where):
    """[_Stream] of a media statistics event: one medium, or with combine_media_stats an array
    of them. Data channels are left out."""
    if body.__class__ is dict:
        stream = _read_stream(body, where)
        return () if stream is None else (stream,)
    if body.__class__ is not list:
        raise IngestError(f"index {where}: event must be an object (or an array of them, with combine_media_stats)")
    streams = []
    for info in body:
        if info.__class__ is not dict:
            raise IngestError(f"index {where}: event must be an object (or an array of them, with combine_media_stats)")
        stream = _read_stream(info, where)
        if stream is not None:
            streams.append(stream)
    return streams


def _read_stream(info, where):
    """One medium of a statistics event as a `_Stream`, checked; None for a data channel's."""
    media = info.get("media")
    if media.__class__ is not str or media not in _MEDIA_KINDS:  # audio, video, video-sim1, video-sim2
        _text(info, "media", where)
        return None
    try:
        stats = _stats_of(info)
    except KeyError:
        stats = _absent_or_refused(info, where)
    else:  # Janus sends them all, as numbers
        stats = tuple(map(_number, stats)) if _NUMBERS.issuperset(map(type, stats)) else _absent_or_refused(info, where)
    codec = info.get("codec")
    if codec.__class__ is not str:
        codec = _text(info, "codec", where)
    return _Stream(media, info.get("mid"), codec, *stats)


def _absent_or_refused(info, where):
    """The numbers of an event where one is absent (a counter then 0), or an IngestError for one
    that is not a number."""
    stats = tuple(map(info.get, _STAT_NAMES))
    for name, value in zip(_STAT_NAMES, stats):
        if value is not None and value.__class__ not in _NUMBERS:
            raise IngestError(f"index {where}: event.{name} must be a number, got {_show(value)}")
    return tuple(0 if value is None else _number(value) for value in stats[:_COUNTERS]) + tuple(
        None if value is None else _number(value) for value in stats[_COUNTERS:])


def _number(value):
    """A statistics event's number as msgspec decodes it into a `_Stream` (`_Number`)."""
    return value if value.__class__ is float or -_EXACT <= value <= _EXACT else float(value)


# --- decoding: the usual post straight into what is read of it --------------------
#
# Nearly every event a busy Janus posts is a media statistics event (a Janus with 1,000
# handles and stats_period = 1 posts 2,000 a second). msgspec decodes a post straight
# into the fields read below, types checked as it goes and the rest of each event
# skipped, not built: a post it cannot take so (a type or a shape Janus does not send, a
# value of the wrong type) is read whole by orjson and `_read`, which alone tell what is
# wrong with it. Both ways give the same actions (tests/ingest/test_janus_parse.py).
# One difference is left: a number beyond a double's range in a field that is not
# read, valid JSON that orjson refuses, is skipped here.

_Int = Annotated[int, msgspec.Meta(ge=-2**63, le=2**63 - 1)]  # larger ones orjson reads as floats, or not at all


class _Event(msgspec.Struct, tag_field="type", gc=False):  # decoded data: never in a cycle
    subtype: _Int | None = None
    handle_id: _Int | None = None
    session_id: _Int | None = None
    timestamp: _Int | None = None
    opaque_id: str | None = None
    emitter: Any = None
    event: msgspec.Raw = msgspec.Raw()  # read only for the types `_read` reads


class _MediaEvent(_Event, tag=MEDIA):
    event: _Stream | list[_Stream] | None = None


_TYPE_OF = {_MediaEvent: MEDIA, **{msgspec.defstruct(f"_Event{kind}", [], bases=(_Event,), tag=kind): kind
                                   for kind in EVENT_TYPES if kind != MEDIA}}
_ANY_EVENT = functools.reduce(operator.or_, _TYPE_OF)
_DECODER = msgspec.json.Decoder(_ANY_EVENT | list[_ANY_EVENT])


def _read_decoded(body, limits, types, skipped):
    """The post's actions as `_read` gives them, from what msgspec decoded; None when it
    is to be read whole, by orjson and `_read`."""
    if not body.isascii():
        try:
            body.decode()  # msgspec does not check the text it skips
        except UnicodeDecodeError:
            return None
    try:
        document = _DECODER.decode(body)
    except msgspec.DecodeError:
        return None
    document = document if document.__class__ is list else (document,)
    _check_count(document, limits)
    actions = []
    for index, event in enumerate(document):
        kind = _TYPE_OF[event.__class__]
        body = event.event
        if kind == MEDIA and event.subtype == _MEDIA_STATS and body is not None and event.opaque_id \
                and event.handle_id is not None:
            types[MEDIA] = types.get(MEDIA, 0) + 1
            if body.__class__ is list:
                streams = [info for info in body if info.media in _MEDIA_KINDS]
            else:
                streams = (body,) if body.media in _MEDIA_KINDS else ()
            stamp = event.timestamp
            actions.append((_STATS, streams, event.handle_id, event.session_id, event.opaque_id,
                            None if stamp is None else stamp * 1000, event.emitter))
        elif kind in _USED_TYPES:
            try:
                actions.append(_read(_as_read(event, kind, body), index, types, skipped))
            except orjson.JSONDecodeError:
                return None
        else:
            types[kind] = types.get(kind, 0) + 1
    return actions


def _as_read(event, kind, body):
    """A decoded event as orjson reads it (absent and null alike), for `_read`."""
    if body.__class__ is msgspec.Raw:
        body = orjson.loads(memoryview(body)) if body else None
    elif body is not None:
        body = msgspec.to_builtins(body)
    return {"type": kind, "subtype": event.subtype, "handle_id": event.handle_id, "session_id": event.session_id,
            "timestamp": event.timestamp, "opaque_id": event.opaque_id, "emitter": event.emitter, "event": body}


# --- applying: the handle table, then samples, presence and ends ------------------

class _Apply:
    def __init__(self, collector, peers, outcome):
        self.collector = collector
        self.peers = peers
        self.outcome = outcome
        self.now = peers.clock()
        self.dirty = {}  # ((call, peer), kind) -> newest statistics time (ns) in this post
        self.ended = []  # peers that ended here: forgotten once their last samples are out

    def run(self, actions):
        peers, outcome, collector, dirty, now = self.peers, self.outcome, self.collector, self.dirty, self.now
        handles, all_dimensions = peers.handles, outcome.dimensions
        for action in actions:
            if action is None:
                continue
            what, details, handle_id, session, opaque_id, ts_ns, emitter = action
            if what == _SESSION_OVER:
                self.session_over(session, details, ts_ns)
                continue
            handle = handles.get(handle_id)
            if handle is not None and handle.opaque_id == opaque_id:  # most events: a handle heard before
                key = handle.key
                handle.heard = now
                handles.move_to_end(handle_id)
            else:
                key = peers.peer_of(opaque_id, handle_id)
                if key is None:
                    outcome.skipped["invalid_opaque_id"] += 1
                    continue
                if what == _DETACHED and handle is None and session in peers.ended_sessions:
                    continue  # its session's end ended its peer
                handle = peers.handle(handle_id, key, opaque_id, session, now)
            dimensions = all_dimensions.get(key)
            if dimensions is None:
                dimensions = all_dimensions[key] = {}
                if emitter.__class__ is str and emitter:
                    dimensions[EMITTER_DIMENSION] = _dimension_value(emitter)
            ts_ns = collector.timestamp(ts_ns)
            if what == _STATS:
                streams = handle.streams
                for info in details:
                    media = info.media
                    kind = _MEDIA_KINDS[media]
                    streams[kind][info.mid, media] = info
                    series = (key, kind)
                    if dirty.get(series, 0) < ts_ns:
                        dirty[series] = ts_ns
                    if info.codec and info.packets_received:  # what Janus receives: the codec the peer sends
                        dimensions[_CODEC_DIMENSIONS[kind]] = _codec_name(info.codec)
            elif what == _STATE:
                name, code = details
                if code is not None:
                    values = {name: code}
                    collector.add_sample(*key, "connection", ts_ns, encode_extracted(values), values)
            elif what == _PAIR:
                dimensions.update((name, value) for name, value in details if value)
            elif what == _ATTACHED:
                collector.add_presence(*key, ts_ns)
            elif not handle.detached:  # detached (and not already, by its session's end)
                handle.detached = True
                if not peers.live_handles(key):
                    self.end(key, ts_ns, peers.ended_sessions.get(session, "explicit"))
                    peers.detached_peers.setdefault(session, set()).add(key)
        peer_handles = peers.peers
        for (key, kind), ts_ns in dirty.items():
            values = self.union(peer_handles.get(key, ()), kind)
            if values:
                collector.add_sample(*key, kind, ts_ns, encode_extracted(values), values)
        for key in self.ended:
            peers.forget_peer(key)
        peers.trim(now)

    def session_over(self, session, name, ts_ns):
        """A session that timed out or was destroyed takes its handles with it. Janus
        detaches them from their own threads, before or after this event: detaches that
        come after end nothing more, peers that ended by a detach before a timeout end
        again as timed out (the latest end is a peer's)."""
        if session is None:
            return
        reason = "timeout" if name == "timeout" else "explicit"
        peers = self.peers
        peers.ended_sessions[session] = reason
        keys = set(peers.detached_peers.pop(session, ())) if reason == "timeout" else set()
        for handle in peers.session_handles(session):
            handle.detached = True
            keys.add(handle.key)
        ts_ns = self.collector.timestamp(ts_ns)
        for key in keys:
            if not peers.live_handles(key):
                self.end(key, ts_ns, reason)

    def end(self, key, ts_ns, reason):
        self.collector.add_end(*key, ts_ns, reason=reason)
        self.ended.append(key)

    def union(self, handle_ids, kind):
        """The peer's sample of `kind` from its handles' latest statistics: counters summed
        over every stream (a detached handle's last ones included until it is forgotten,
        so sums never step back at a detach); delays and link qualities, the worst of
        the streams of live handles that carry the direction they describe: what Janus
        receives (its own figures of the peer's uplink), what it sends (the peer's
        receiver reports of its downlink). A round trip or a link quality of 0 is
        Janus's "no report yet" (rtcp.c), not a value. One loop, no call per stream:
        this runs for every sample."""
        handles = self.peers.handles
        counted = None  # the one stream counted, or a list of them
        rtt = up_jitter = down_jitter = up_quality = up_media = down_quality = down_media = None
        for handle_id in handle_ids:
            handle = handles[handle_id]
            for info in handle.streams[kind].values():
                if counted is None:
                    counted = info
                elif counted.__class__ is list:
                    counted.append(info)
                else:
                    counted = [counted, info]
                if handle.detached:
                    continue
                if info.packets_received:
                    jitter_local, in_quality, in_media = info.jitter_local, info.in_link_quality, info.in_media_link_quality
                    if jitter_local is not None and (up_jitter is None or jitter_local > up_jitter):
                        up_jitter = jitter_local
                    if in_quality and (up_quality is None or in_quality < up_quality):
                        up_quality = in_quality
                    if in_media and (up_media is None or in_media < up_media):
                        up_media = in_media
                if info.packets_sent:
                    stream_rtt, jitter_remote, out_quality, out_media = (
                        info.rtt, info.jitter_remote, info.out_link_quality, info.out_media_link_quality)
                    if stream_rtt and (rtt is None or stream_rtt > rtt):
                        rtt = stream_rtt
                    if jitter_remote is not None and (down_jitter is None or jitter_remote > down_jitter):
                        down_jitter = jitter_remote
                    if out_quality and (down_quality is None or out_quality < down_quality):
                        down_quality = out_quality
                    if out_media and (down_media is None or out_media < down_media):
                        down_media = out_media
        if counted is None:
            return None
        received, sent, bytes_received, bytes_sent, lost, lost_remote, nacks_received, nacks_sent = (
            map(sum, zip(*map(_counters_of, counted))) if counted.__class__ is list else _counters_of(counted))
        values = {"packetsReceived": received, "packetsSent": sent, "bytesReceived": bytes_received,
                  "bytesSent": bytes_sent, "packetsLost": lost + lost_remote, "nackCount": nacks_received + nacks_sent,
                  "uplinkPacketsLost": lost, "downlinkPacketsLost": lost_remote}
        jitter = up_jitter if down_jitter is None or (up_jitter is not None and up_jitter > down_jitter) else down_jitter
        for name, value in zip(_FIGURES, (rtt, jitter, up_jitter, down_jitter, up_quality, up_media, down_quality,
                                          down_media)):
            if value is not None:
                values[name] = value
        return values


@functools.lru_cache(maxsize=1024)
def _dimension_value(text):
    """A dimension value in identifier characters, at most dimensions.MAX_VALUE of them."""
    return NOT_IDENTIFIER_RE.sub("-", text)[:MAX_VALUE]


@functools.lru_cache(maxsize=256)
def _codec_name(codec):
    """Janus's codec name as browsers name it (the mimeType's subtype): opus, VP8, H264, AV1, PCMU..."""
    return _dimension_value(codec if codec in _LOWERCASE_CODECS else codec.upper())
