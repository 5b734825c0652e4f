"""The plain server the tutorials show, for ``reslab bench serve`` to compare against.

FastAPI, a synchronous endpoint per request (run in FastAPI's thread pool), PIL decoding and
torchvision transforms, one ONNX Runtime call per request: no batching, no cache.
Run: ``python -m reslab.bench.baseline_server MODEL.onnx --port 8001``.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, File, UploadFile
from PIL import Image
from torchvision import transforms

from ..formats import read_info


def create_baseline_app(model_path: str) -> FastAPI:
    info = read_info(Path(model_path))
    pre = info.preprocess
    transform = transforms.Compose([
        transforms.Resize(pre.resize_size), transforms.CenterCrop(pre.image_size), transforms.ToTensor(),
        transforms.Normalize(pre.mean, pre.std),
    ])
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    app = FastAPI()

    @app.post("/predict")
    def predict(file: UploadFile = File(...)) -> dict:
        image = Image.open(io.BytesIO(file.file.read())).convert("RGB")
        x = transform(image).unsqueeze(0).numpy()
        logits = session.run(None, {"input": x})[0][0]
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        top = np.argsort(-probs)[:5]
        return {"predictions": [{"label": info.classes[i], "probability": float(probs[i])} for i in top]}

    @app.get("/readyz")
    def ready() -> dict:
        return {"ready": True}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    uvicorn.run(create_baseline_app(args.model), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
