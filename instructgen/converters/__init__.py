"""Task converters: Example -> Record | Rejected, each with a batched form for Dataset.map."""
