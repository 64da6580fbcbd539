"""The scale study: the iteration budget, the prior's strength and the replication set
(`bench scale`, reports/scale.md)."""

from bench.scale.study import (
    BUDGET_ITERS,
    PARTS,
    REPLICATION_OFFSET,
    SCALE_FILE,
    SUBSET_IMAGES,
    check_baseline,
    part_settings,
    read_record,
    record_path,
    run_part,
    stored_preset,
    write_record,
)

__all__ = [
    "BUDGET_ITERS",
    "PARTS",
    "REPLICATION_OFFSET",
    "SCALE_FILE",
    "SUBSET_IMAGES",
    "check_baseline",
    "part_settings",
    "read_record",
    "record_path",
    "run_part",
    "stored_preset",
    "write_record",
]
