"""The metrics reader: real servers' pages, and hostile or truncated input."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fleetwatch.llm._prometheus import MAX_METRICS_BYTES, MAX_SAMPLES, parse_metrics
from tests._support.llm_servers import fixture_text


def test_reads_a_real_llamacpp_page() -> None:
    """Every series of a page captured from the real llama-server is read, with its value."""
    page = parse_metrics(fixture_text("llamacpp", "metrics.txt"))
    assert page.bad_lines == 0
    assert page.total("llamacpp:requests_processing") == 0
    # Captured after one 4-token chat completion (fixtures/llamacpp/SOURCE.md).
    assert page.total("llamacpp:tokens_predicted_total") == 4
    assert "llamacpp:n_busy_slots_per_decode" in page.samples


def test_reads_labelled_series_of_real_vllm_and_sglang_pages() -> None:
    """Pages recorded from vLLM and SGLang parse without a bad line, labels kept."""
    for kind, name in (("vllm-v0", "metrics.txt"), ("sglang", "metrics.txt")):
        page = parse_metrics(fixture_text(kind, name))
        assert page.bad_lines == 0, kind
        assert any(s.labels for series in page.samples.values() for s in series), kind


def test_a_truncated_page_loses_only_its_cut_line() -> None:
    """A reply cut mid-line (a timeout) still yields every complete sample before the cut."""
    text = fixture_text("llamacpp", "metrics.txt")
    cut = text[: text.rindex("llamacpp:requests_deferred") + len("llamacpp:requests_def")]
    page = parse_metrics(cut)
    assert page.total("llamacpp:requests_processing") == 0
    assert page.total("llamacpp:requests_deferred") is None
    assert page.bad_lines == 1


def test_garbage_is_counted_not_raised() -> None:
    """Binary junk and HTML give an empty page with the bad lines counted."""
    page = parse_metrics("<html>\x00\xff{{{\nnot a metric line at all\n</html>")
    assert not page.samples
    assert page.bad_lines == 3


def test_oversized_pages_are_cut() -> None:
    """A page larger than the cap is read only up to the cap and marked truncated."""
    line = "x_total 1\n"
    page = parse_metrics(line * (MAX_METRICS_BYTES // len(line) + 10))
    assert page.truncated
    assert page.total("x_total") == MAX_SAMPLES  # read up to the sample cap, then stopped


def test_non_finite_values_are_ignored_in_totals() -> None:
    """NaN and +Inf samples never reach a load figure."""
    page = parse_metrics('a{x="1"} NaN\na{x="2"} 2\nb +Inf\n')
    assert page.total("a") == 2
    assert page.total("b") is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=2000))
def test_any_text_parses_and_keeps_the_good_lines(text: str) -> None:
    """Whatever a server sends, parsing never raises, counts at most one bad line per line
    it read, and a valid sample after the junk still comes through."""
    assume("probe_marker" not in text)
    page = parse_metrics(f"{text}\nprobe_marker_total 7\n")
    read = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert page.bad_lines <= len(read)
    assert page.total("probe_marker_total") == 7
    assert not page.truncated
