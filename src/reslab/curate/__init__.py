"""Looking after a dataset: finding the images whose label is likely wrong."""
