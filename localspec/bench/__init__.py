"""`localspec bench`: prompt sets, the interleaved runner, aggregation and the report."""
