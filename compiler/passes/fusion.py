"""``compiler.passes.fusion``: the import path docs/architecture.md promises for fusion
groups; the pass itself lives in ``fuse.py``."""

from compiler.passes.fuse import FuseOps, PartitionError, check_partition, groups

__all__ = ["FuseOps", "PartitionError", "check_partition", "groups"]
