"""The A/B driver reads the benchmarks' markdown tables: text cells name a row, trailing numbers are its values."""

from __future__ import annotations

from benchmarks.ab import table_rows


def test_table_rows_key_text_cells_and_read_trailing_numbers() -> None:
    output = "\n".join(
        [
            "machine: 2 cores",
            "| index | query | p50 ms | p99 ms |",
            "|---|---|---|---|",
            "| flat (100000 segments) | vector, k=20 | 8.20 | 9.30 |",
            "| HNSW32 | **hybrid (default), k=20** | **2.67** | 1,203.5 |",
            "| numpy | no numbers here | - |",
        ]
    )
    assert table_rows(output) == {
        ("flat (100000 segments)", "vector, k=20"): [8.2, 9.3],
        ("HNSW32", "hybrid (default), k=20"): [2.67, 1203.5],
    }
