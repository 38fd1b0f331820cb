"""Application tags: the allow-list, the value rule and the client errors (SPEC §15)."""
import pytest

from rtcscope.dimensions.tags import DEFAULT_PEER_TAGS, check_tags, parse_peer_tags, query_tags
from rtcscope.ingest.formats import IngestError


def test_allowed_tags_are_kept():
    tags = {"region": "eu-west", "app_version": "5.2.1", "media_server": "jvb-3@dc1:{a}"}
    assert check_tags(tags, DEFAULT_PEER_TAGS, "index 0") == tags


def test_other_names_are_dropped_whatever_their_values():
    tags = {"region": "eu-west", "customer": "acme", "user": {"email": "x@example.com"}, "note": "y" * 10_000}
    assert check_tags(tags, DEFAULT_PEER_TAGS, "index 0") == {"region": "eu-west"}


@pytest.mark.parametrize("tags", [None, {}])
def test_no_tags(tags):
    assert check_tags(tags, DEFAULT_PEER_TAGS, "body") == {}


@pytest.mark.parametrize("tags", ["region=eu", ["eu-west"], 5, True])
def test_tags_not_an_object_is_a_client_error(tags):
    with pytest.raises(IngestError) as raised:
        check_tags(tags, DEFAULT_PEER_TAGS, "index 3")
    assert raised.value.status == 400
    assert raised.value.code == "bad_tags"
    assert raised.value.message.startswith("index 3: tags must be an object")


@pytest.mark.parametrize("value, shown", [
    ("x" * 65, "a string of 65 characters"),
    ("y" * 10_240, "a string of 10240 characters"),
    ("", "''"),
    ("eu west", "'eu west'"),
    ("région", "'région'"),
    ("a,b", "'a,b'"),
    (5.2, "a number"),
    (True, "a boolean"),
    ({"v": 1}, "an object"),
    (["a"], "an array"),
])
def test_a_bad_value_of_an_allowed_tag_is_a_client_error(value, shown):
    with pytest.raises(IngestError) as raised:
        check_tags({"region": "ok", "app_version": value}, DEFAULT_PEER_TAGS, "index 1")
    assert raised.value.status == 400
    assert raised.value.message == (f"index 1: tag app_version must be 1-64 characters of [A-Za-z0-9_.:@{{}}-], "
                                    f"got {shown}")


def test_null_is_no_tag():
    assert check_tags({"region": None, "app_version": "5"}, DEFAULT_PEER_TAGS, "body") == {"app_version": "5"}


def test_sixty_four_characters_is_the_longest():
    assert check_tags({"region": "r" * 64}, DEFAULT_PEER_TAGS, "body") == {"region": "r" * 64}


def test_query_tags():
    arguments = {"tag.region": [b"eu-west"], "tag.app_version": [b"5.2"], "tag.customer": [b"acme"],
                 "region": [b"not-a-tag"], "key": [b"k"]}
    assert query_tags(arguments, DEFAULT_PEER_TAGS) == {"region": "eu-west", "app_version": "5.2"}
    assert query_tags({"tag.region": ["us-east"]}, ("region",)) == {"region": "us-east"}


@pytest.mark.parametrize("arguments, message", [
    ({"tag.region": [b"a", b"b"]}, "query: tag.region is given more than once"),
    ({"tag.region": [b"a b"]}, "query: tag region must be"),
    ({"tag.region": ["\udcff".encode("utf-8", "surrogatepass")]}, "query: tag region must be"),
])
def test_bad_query_tags(arguments, message):
    with pytest.raises(IngestError) as raised:
        query_tags(arguments, DEFAULT_PEER_TAGS)
    assert raised.value.status == 400
    assert raised.value.message.startswith(message)


def test_peer_tags_option():
    assert parse_peer_tags("region,app_version,media_server") == DEFAULT_PEER_TAGS
    assert parse_peer_tags(" region , tenant,region,") == ("region", "tenant")
    assert parse_peer_tags("") == ()


@pytest.mark.parametrize("text, message", [
    ("region,bad-name", "'bad-name' is not a tag name"),
    ("9lives", "'9lives' is not a tag name"),
    ("browser", "'browser' is taken"),
    ("country", "'country' is taken"),
    ("sort", "'sort' is taken"),
    ("state", "'state' is taken"),
])
def test_bad_peer_tags_option(text, message):
    with pytest.raises(ValueError, match=message):
        parse_peer_tags(text)
