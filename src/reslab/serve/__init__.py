"""``reslab serve``: a REST API, the open inference protocol (v2) and a web page for a trained model."""
