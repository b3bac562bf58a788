"""make bench rewrites only its own sections of BENCHMARKS.md."""

from tests.benchfile import merge_report

OLD = """# Benchmarks

Machine: old.

## One request, 256x256

old latency

## Fair share (make bench-fairness)

fairness figures

## Faults (make chaos)

chaos figures
"""

NEW = """# Benchmarks

Machine: new.

## One request, 256x256

new latency

## Throughput

new throughput
"""


def test_a_report_replaces_its_sections_and_keeps_the_others(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(OLD)
    merge_report(path, NEW, replace_head=True)
    text = path.read_text()
    assert "Machine: new." in text and "Machine: old." not in text
    assert "new latency" in text and "old latency" not in text
    assert "fairness figures" in text and "chaos figures" in text and "new throughput" in text
    assert text.index("new latency") < text.index("fairness figures") < text.index("throughput")
    # Merging the same report again changes nothing.
    merge_report(path, NEW, replace_head=True)
    assert path.read_text() == text


def test_a_report_without_a_head_keeps_the_files_head(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(OLD)
    merge_report(path, "## Faults (make chaos)\n\nnew chaos\n")
    text = path.read_text()
    assert text.startswith("# Benchmarks\n\nMachine: old.") and "new chaos" in text
    assert "chaos figures" not in text


def test_a_new_file(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    merge_report(path, NEW, replace_head=True)
    assert path.read_text().startswith("# Benchmarks\n\nMachine: new.")
