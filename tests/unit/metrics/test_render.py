"""The registry and the Prometheus text rendering, checked with an independent strict parser."""

from __future__ import annotations

import math
import threading

import pytest

from kms.metrics import (
    HSM_BUCKETS,
    SIGN_BUCKETS,
    Metrics,
    Registry,
    metrics_table_markdown,
)
from tests.conftest import REPO_ROOT
from tests.unit.metrics.promparse import ParseError, parse

EXPECTED_FAMILIES = {
    "kms_signatures_total": ("counter", {"chain", "type", "outcome"}),
    "kms_refusals_total": ("counter", {"chain", "reason"}),
    "kms_sign_latency_seconds": ("histogram", {"chain", "type"}),
    "kms_hsm_request_seconds": ("histogram", {"replica"}),
    "kms_hsm_healthy": ("gauge", {"replica"}),
    "kms_failovers_total": ("counter", {"chain", "from", "to"}),
    "kms_hedges_total": ("counter", {"chain", "from", "to"}),
    "kms_link_up": ("gauge", {"chain", "link"}),
    "kms_link_reconnects_total": ("counter", {"chain", "link"}),
    "kms_last_signed_height": ("gauge", {"chain"}),
}


def _exercised() -> Metrics:
    m = Metrics(clock=lambda: 1_700_000_000.0)
    m.signature("cosmoshub-4", "prevote", "signed", 0.0004, "hsm-a")
    m.signature("cosmoshub-4", "prevote", "signed", 0.003, "hsm-b")
    m.signature("cosmoshub-4", "precommit", "reused", 0.0001, None)
    m.signature("cosmoshub-4", "proposal", "refused", 0.0002, None)
    m.refusal("cosmoshub-4", "double_sign")
    m.last_signed_height("cosmoshub-4", 25_000_123)
    m.link_state("cosmoshub-4", "tcp://10.0.1.10:26658", True)
    m.link_reconnect("cosmoshub-4", "tcp://10.0.1.10:26658")
    m.hsm_request("hsm-a", 0.112, True)
    m.hsm_request("hsm-a", 2.0, False)
    m.hsm_health("hsm-a", False)
    m.failover("cosmoshub-4", "hsm-a", "hsm-b")
    m.hedge("cosmoshub-4", "hsm-a", "hsm-c")
    return m


def test_every_documented_family_is_rendered_with_help_type_and_labels() -> None:
    fams = parse(_exercised().render())
    for name, (kind, labels) in EXPECTED_FAMILIES.items():
        assert fams[name].type == kind, name
        assert fams[name].help, name
        sample_labels = {k for _, lab, _ in fams[name].samples for k in lab} - {"le"}
        assert sample_labels == labels, name


def test_signature_counts_by_chain_type_and_outcome() -> None:
    fams = parse(_exercised().render())
    sig = fams["kms_signatures_total"]
    assert sig.value(chain="cosmoshub-4", type="prevote", outcome="signed") == 2
    assert sig.value(chain="cosmoshub-4", type="precommit", outcome="reused") == 1
    assert sig.value(chain="cosmoshub-4", type="proposal", outcome="refused") == 1
    by = fams["kms_replica_signatures_total"]
    assert by.value(chain="cosmoshub-4", replica="hsm-a") == 1
    assert by.value(chain="cosmoshub-4", replica="hsm-b") == 1


def test_sign_latency_observes_signed_and_reused_but_not_refusals() -> None:
    fams = parse(_exercised().render())
    h = fams["kms_sign_latency_seconds"]
    assert h.value("kms_sign_latency_seconds_count", chain="cosmoshub-4", type="prevote") == 2
    assert h.value("kms_sign_latency_seconds_sum", chain="cosmoshub-4", type="prevote") == (
        pytest.approx(0.0034)
    )
    assert h.value("kms_sign_latency_seconds_count", chain="cosmoshub-4", type="precommit") == 1
    with pytest.raises(KeyError):
        h.value("kms_sign_latency_seconds_count", chain="cosmoshub-4", type="proposal")


def test_histogram_buckets_are_cumulative_with_le_labels_and_inf() -> None:
    fams = parse(_exercised().render())
    h = fams["kms_sign_latency_seconds"]
    buckets = {
        float(lab["le"]): v
        for n, lab, v in h.samples
        if n.endswith("_bucket") and lab["type"] == "prevote"
    }
    assert set(buckets) == {*SIGN_BUCKETS, math.inf}
    assert buckets[0.0005] == 1  # 0.0004
    assert buckets[0.002] == 1
    assert buckets[0.005] == 2  # 0.003
    assert buckets[math.inf] == 2


def test_hsm_histogram_uses_hsm_buckets_and_counts_results() -> None:
    fams = parse(_exercised().render())
    h = fams["kms_hsm_request_seconds"]
    les = {float(lab["le"]) for n, lab, _ in h.samples if n.endswith("_bucket")}
    assert les == {*HSM_BUCKETS, math.inf}
    assert h.value("kms_hsm_request_seconds_bucket", replica="hsm-a", le="0.125") == 1
    assert h.value("kms_hsm_request_seconds_bucket", replica="hsm-a", le="+Inf") == 2
    req = fams["kms_hsm_requests_total"]
    assert req.value(replica="hsm-a", result="ok") == 1
    assert req.value(replica="hsm-a", result="error") == 1
    assert fams["kms_hsm_healthy"].value(replica="hsm-a") == 0


def test_a_value_exactly_on_a_bound_falls_in_that_bucket() -> None:
    m = Metrics()
    m.hsm_request("r", 0.1, True)
    fams = parse(m.render())
    h = fams["kms_hsm_request_seconds"]
    assert h.value("kms_hsm_request_seconds_bucket", replica="r", le="0.05") == 0
    assert h.value("kms_hsm_request_seconds_bucket", replica="r", le="0.1") == 1


def test_gauges_link_state_height_failover_refusal() -> None:
    m = _exercised()
    m.link_state("cosmoshub-4", "tcp://10.0.1.10:26658", False)
    m.last_signed_height("cosmoshub-4", 25_000_124)
    fams = parse(m.render())
    assert fams["kms_link_up"].value(chain="cosmoshub-4", link="tcp://10.0.1.10:26658") == 0
    assert fams["kms_last_signed_height"].value(chain="cosmoshub-4") == 25_000_124
    assert (
        fams["kms_link_reconnects_total"].value(chain="cosmoshub-4", link="tcp://10.0.1.10:26658")
        == 1
    )
    fo = fams["kms_failovers_total"]
    assert fo.value(chain="cosmoshub-4", **{"from": "hsm-a", "to": "hsm-b"}) == 1
    he = fams["kms_hedges_total"]
    assert he.value(chain="cosmoshub-4", **{"from": "hsm-a", "to": "hsm-c"}) == 1
    assert fams["kms_refusals_total"].value(chain="cosmoshub-4", reason="double_sign") == 1


def test_link_state_creates_reconnect_series_at_zero() -> None:
    m = Metrics()
    m.link_state("c", "unix:///run/v.sock", True)
    fams = parse(m.render())
    assert fams["kms_link_reconnects_total"].value(chain="c", link="unix:///run/v.sock") == 0


def test_large_heights_render_exactly() -> None:
    m = Metrics()
    m.last_signed_height("c", 2**53 + 1)
    line = next(x for x in m.render().splitlines() if x.startswith("kms_last_signed_height{"))
    assert line.endswith(f" {2**53 + 1}")


@pytest.mark.parametrize(
    "chain",
    ['quote"chain', "back\\slash", "new\nline", 'all\\"\n', "ünïcode-é", "", "}{,=", "a b"],
)
def test_label_values_are_escaped_and_round_trip(chain: str) -> None:
    m = Metrics()
    m.signature(chain, "prevote", "signed", 0.001, None)
    m.refusal(chain, "regression")
    fams = parse(m.render())
    assert fams["kms_signatures_total"].value(chain=chain, type="prevote", outcome="signed") == 1
    assert fams["kms_refusals_total"].value(chain=chain, reason="regression") == 1
    assert (
        fams["kms_sign_latency_seconds"].value(
            "kms_sign_latency_seconds_count", chain=chain, type="prevote"
        )
        == 1
    )


def test_help_text_is_escaped() -> None:
    r = Registry()
    r.counter("x_total", "line one\nback\\slash", ())
    fams = parse(r.render())
    assert fams["x_total"].help == "line one\nback\\slash"


def test_parser_rejects_unescaped_output() -> None:
    # guards the test itself: the parser must catch what a naive renderer would emit
    with pytest.raises(ParseError):
        parse('# HELP a_total h\n# TYPE a_total counter\na_total{c="x"y"} 1\n')
    with pytest.raises(ParseError):
        parse('# HELP a_total h\n# TYPE a_total counter\na_total{c="x\ny"} 1\n')
    with pytest.raises(ParseError):
        parse("a_total 1\n")
    with pytest.raises(ParseError):
        parse(
            "# HELP h x\n# TYPE h histogram\n"
            'h_bucket{le="1.0"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n'
        )


@pytest.mark.parametrize("name", ["1bad", "has-dash", "sp ace", ""])
def test_invalid_metric_names_are_rejected(name: str) -> None:
    with pytest.raises(ValueError):
        Registry().gauge(name, "h")


@pytest.mark.parametrize("label", ["le", "__x", "1a", "a-b"])
def test_invalid_or_reserved_label_names_are_rejected(label: str) -> None:
    with pytest.raises(ValueError):
        Registry().gauge("g", "h", (label,))


def test_counter_names_must_end_in_total_and_never_go_down() -> None:
    r = Registry()
    with pytest.raises(ValueError):
        r.counter("kms_things", "h")
    c = r.counter("kms_things_total", "h", ("a",))
    c.inc(("x",), 2)
    c.inc(("x",), -5)
    assert c.value(("x",)) == 2


def test_duplicate_registration_is_rejected() -> None:
    r = Registry()
    r.gauge("g", "h")
    with pytest.raises(ValueError):
        r.gauge("g", "h")


def test_histogram_buckets_must_increase() -> None:
    with pytest.raises(ValueError):
        Registry().histogram("h", "h", (), (0.1, 0.1))


def test_special_float_values_render_in_prometheus_spelling() -> None:
    r = Registry()
    g = r.gauge("g", "h", ("k",))
    g.set(("inf",), math.inf)
    g.set(("ninf",), -math.inf)
    g.set(("nan",), math.nan)
    g.set(("frac",), 0.25)
    text = r.render()
    assert 'g{k="inf"} +Inf\n' in text
    assert 'g{k="ninf"} -Inf\n' in text
    assert 'g{k="nan"} NaN\n' in text
    assert 'g{k="frac"} 0.25\n' in text
    parse(text)


def test_build_info_and_start_time() -> None:
    fams = parse(Metrics(clock=lambda: 1234.5).render())
    assert fams["kms_start_time_seconds"].value() == 1234.5
    (sample,) = fams["kms_build_info"].samples
    assert sample[2] == 1 and sample[1]["version"]


def test_recording_from_many_threads_loses_no_increment() -> None:
    m = Metrics()
    n_threads, per_thread = 8, 5000

    def work() -> None:
        for _ in range(per_thread):
            m.hsm_request("r", 0.11, True)
            m.signature("c", "prevote", "signed", 0.001, "r")

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fams = parse(m.render())
    total = n_threads * per_thread
    assert fams["kms_hsm_requests_total"].value(replica="r", result="ok") == total
    assert (
        fams["kms_hsm_request_seconds"].value("kms_hsm_request_seconds_count", replica="r") == total
    )
    assert fams["kms_signatures_total"].value(chain="c", type="prevote", outcome="signed") == total


def test_docs_table_matches_the_code() -> None:
    doc = (REPO_ROOT / "docs" / "metrics.md").read_text()
    assert metrics_table_markdown() in doc
    for name in EXPECTED_FAMILIES:
        assert f"`{name}`" in doc


def test_render_is_deterministic_and_sorted() -> None:
    a, b = _exercised(), _exercised()
    assert a.render() == b.render()
    # series sorted by label values, independent of insertion order
    m = Metrics()
    m.refusal("zeta", "regression")
    m.refusal("alpha", "regression")
    lines = [x for x in m.render().splitlines() if x.startswith("kms_refusals_total{")]
    assert lines == sorted(lines)
    assert 'chain="alpha"' in lines[0]


def test_caller_mistakes_do_not_raise_or_break_rendering() -> None:
    m = Metrics()
    # deliberately ill-typed calls (ignores below): a caller's bug must not break rendering
    m.signature(None, "prevote", "signed", None, None)  # type: ignore[arg-type]
    m.signature("c", "prevote", "signed", float("nan"), None)
    m.refusal(7, "regression")  # type: ignore[arg-type]
    m.refusal("c", "regression")
    fams = parse(m.render())
    assert fams["kms_signatures_total"].value(chain="None", type="prevote", outcome="signed") == 1
    assert fams["kms_refusals_total"].value(chain="7", reason="regression") == 1
    assert fams["kms_refusals_total"].value(chain="c", reason="regression") == 1
    with pytest.raises(KeyError):  # neither None nor NaN was observed as a latency
        fams["kms_sign_latency_seconds"].value(
            "kms_sign_latency_seconds_count", chain="c", type="prevote"
        )
