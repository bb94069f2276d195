"""Parquet: typed columns (timestamps as UTC timestamps), zstd inside each column chunk."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dataflow_assets.formats.base import PartWriter, WrittenPart, file_digest


class ParquetPartWriter(PartWriter):
    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.writer = pq.ParquetWriter(str(path), schema, compression="zstd")

    def write(self, batch: pa.RecordBatch) -> None:
        self.writer.write_batch(batch, row_group_size=256_000)

    def close(self) -> WrittenPart:
        self.writer.close()
        return file_digest(self.path)
