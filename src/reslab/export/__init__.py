"""Export a model file to other runtimes, each result checked against the original model."""
