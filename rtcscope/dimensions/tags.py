"""Application tags: `"tags": {"region": "eu-west", "app_version": "5.2"}` on a
JSON ingest object, `tag.<name>=<value>` on the websocket ingest URL.

Only the names the operator lists in `--peer-tags` are kept, each as a
dimension of its own beside the built-in ones. The rules, and why:

- `tags` that is not an object is a client error (400): the client meant
  something the server cannot read.
- A listed name whose value is not a string of 1-64 identifier characters is
  a client error (400): it would be stored wrong, or not at all, without a
  word.
- A name that is not listed is dropped without a look at its value: the
  operator chooses what to keep, and narrowing the list must not break the
  clients that send more. The request's size limit bounds what they send.
"""
import re
from collections.abc import Mapping

from ..ingest import formats
from ..storage.schema import FIELD_RE, FIELD_RULE, IDENTIFIER_CHARS
from . import BUILTIN_DIMENSIONS

DEFAULT_PEER_TAGS = ("region", "app_version", "media_server")
MAX_VALUE = 64
VALUE_RE = re.compile(f"[{IDENTIFIER_CHARS}]{{1,{MAX_VALUE}}}")
VALUE_RULE = f"1-{MAX_VALUE} characters of [{IDENTIFIER_CHARS}]"
# A dimension is a query argument where the live list is filtered by it (GET /v1/calls/ and the
# dashboard, which keeps its filters in its URL): a tag cannot take a name these already have.
# Every query argument the server reads (handlers/: the HTTP and websocket APIs and rtcstats' URL)...
API_ARGUMENTS = frozenset({"band", "bucket", "by", "call", "cursor", "dimension", "duration", "end", "isReconnect",
                           "key", "limit", "metric", "peer", "precision", "q", "scope", "since", "sort", "start",
                           "state", "statsSessionId", "token", "type"})
# ...and every one the pages' scripts keep in, or read from, their own URLs (static/).
PAGE_ARGUMENTS = frozenset({"by", "end", "key", "metrics", "order", "q", "range", "since", "start"})
# tests/dimensions/test_reserved_names.py reads the handlers and the scripts for the names they use.
RESERVED_NAMES = API_ARGUMENTS | PAGE_ARGUMENTS
QUERY_PREFIX = "tag."
# Values that passed: every request of a peer repeats its tags. Bounded (cleared when full).
_VALID_VALUES_LIMIT = 10_000
_valid_values = set()
_JSON_TYPES = {dict: "an object", list: "an array", bool: "a boolean", int: "a number", float: "a number"}


def parse_peer_tags(text: str) -> tuple[str, ...]:
    """The --peer-tags option (comma-separated names) as a tuple; ValueError for a
    name that is not a field name, is a built-in dimension or a query argument."""
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    for name in names:
        if not FIELD_RE.fullmatch(name):
            raise ValueError(f"--peer-tags: {name[:80]!r} is not a tag name ({FIELD_RULE})")
        if name in BUILTIN_DIMENSIONS or name in RESERVED_NAMES:
            raise ValueError(f"--peer-tags: {name!r} is taken (a built-in dimension or a query argument)")
    return names


def check_tags(tags, allowed: tuple[str, ...], where: str) -> dict[str, str]:
    """The allowed tags of a JSON object's `tags` member (None: no tags);
    formats.IngestError (400) for a member that is not an object or an allowed
    tag's bad value."""
    if tags is None:
        return {}
    if not isinstance(tags, dict):
        raise formats.IngestError(f"{where}: tags must be an object of name: string", code="bad_tags")
    kept = {}
    for name in allowed:
        value = tags.get(name)
        if value is not None:
            kept[name] = _check_value(name, value, where)
    return kept


def query_tags(arguments: Mapping[str, list], allowed: tuple[str, ...], where: str = "query") -> dict[str, str]:
    """The allowed `tag.<name>=` arguments of a URL's query ({name: [bytes or str]},
    as tornado gives them); formats.IngestError (400) for a repeated or bad one."""
    kept = {}
    for name in allowed:
        values = arguments.get(QUERY_PREFIX + name)
        if not values:
            continue
        if len(values) > 1:
            raise formats.IngestError(f"{where}: {QUERY_PREFIX}{name} is given more than once", code="bad_tags")
        value = values[0]
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        kept[name] = _check_value(name, value, where)
    return kept


def _check_value(name, value, where):
    if value.__class__ is str and value in _valid_values:
        return value
    if value.__class__ is not str or not VALUE_RE.fullmatch(value):
        raise formats.IngestError(f"{where}: tag {name} must be {VALUE_RULE}, got {_described(value)}",
                                  code="bad_tags")
    if len(_valid_values) >= _VALID_VALUES_LIMIT:
        _valid_values.clear()
    _valid_values.add(value)
    return value


def _described(value):
    """What a bad value is, without echoing a long one back."""
    if value.__class__ is not str:
        return _JSON_TYPES.get(value.__class__, "a non-string")
    return repr(value) if len(value) <= 40 else f"a string of {len(value)} characters"
