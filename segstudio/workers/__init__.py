"""Qt adapters: run core/io/ml functions on the thread pool and re-emit their results as signals."""
