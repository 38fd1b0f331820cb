"""/metrics read as Prometheus reads it, through prometheus_client's parser: a sample is
found by its name and labels, never by matching the text."""
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def samples(text):
    """{(sample name, frozenset of its label pairs): value} of one exposition."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def exposed(text, name, **labels):
    """The value of sample `name` with exactly `labels`, or None if the exposition has none."""
    return samples(text).get((name, frozenset(labels.items())))


def sample_names(text):
    """The names of every sample in the exposition."""
    return {name for name, _ in samples(text)}


def scrape(url):
    """The /metrics text of the server at `url` (a process's, over plain HTTP)."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        return response.read().decode()


def metric(server, name, **labels):
    """One sample's value in a server process's /metrics now, or None."""
    return exposed(scrape(server.url), name, **labels)
