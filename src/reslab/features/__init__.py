"""What a network has learned, without its classifier: features (embeddings) of images, and how well they
separate classes (a kNN classifier and a linear probe on frozen features)."""
