"""The signal history: ``repsys history`` writes the signal streams to Parquet files."""
