"""Pure-numpy logic: geometry, documents, undo history, metrics, jobs. Never imports Qt or torch."""
