"""Making a trained model smaller and faster: INT8 quantisation and pruning, each measured."""
