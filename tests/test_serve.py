"""`reslab serve` against a real server on 127.0.0.1: every endpoint, every error, batching, cache, v2."""

import io
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

from reslab.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from reslab.infer.predictor import Predictor
from reslab.modelfile import ModelInfo, save_model_file
from reslab.models import ModelSpec, create_model

from .images import gradient, write_broken_images, write_odd_images
from .servers import RunningServer, stopped_cleanly

FLAGS = ["--backend", "onnxruntime", "--max-upload-mb", "1", "--max-pixels", "1000000", "--max-batch", "16",
         "--max-wait-ms", "100", "--cache-size", "64"]


@pytest.fixture(scope="module")
def server(trained_model):
    running = RunningServer(trained_model, *FLAGS)
    yield running
    assert stopped_cleanly(running.stop())


@pytest.fixture(scope="module")
def offline(trained_model):
    return Predictor.from_file(trained_model, backend="onnxruntime")


MODEL = 'model="resnet20"'  # inference metrics are labelled by the model


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name) + (re.escape("{" + labels + "}") if labels else r"(?:\{\})?") + r" ([0-9.e+-]+)"
    found = re.search(pattern, text)
    return float(found[1]) if found else 0.0


def test_predict_multipart_and_raw_body_match_offline(server, offline, photos):
    answer = httpx.post(f"{server.url}/predict", params={"topk": 3},
                        files={"file": ("chelsea.png", photos["chelsea"].read_bytes())}).json()
    assert answer["model"] == "resnet20" and len(answer["version"]) == 12 and answer["file"] == "chelsea.png"
    expected = offline.predict([photos["chelsea"]], topk=3)[0]
    assert [p["index"] for p in answer["predictions"]] == [p.index for p in expected]
    assert np.allclose([p["probability"] for p in answer["predictions"]], [p.probability for p in expected],
                       atol=1e-5)
    assert all(p["label"] == offline.classes[p["index"]] for p in answer["predictions"])
    raw = httpx.post(f"{server.url}/predict", content=photos["grace_hopper"].read_bytes(),
                     headers={"content-type": "image/jpeg"}).json()
    assert len(raw["predictions"]) == 5
    assert raw["predictions"][0]["index"] == offline.predict([photos["grace_hopper"]])[0][0].index


def test_odd_images_are_classified_like_offline(server, offline, tmp_path):
    for name, path in write_odd_images(tmp_path).items():
        r = httpx.post(f"{server.url}/predict", files={"file": (path.name, path.read_bytes())})
        assert r.status_code == 200, (name, r.text)
        expected = offline.predict([path], topk=5)[0]
        assert np.allclose([p["probability"] for p in r.json()["predictions"]],
                           [p.probability for p in expected], atol=1e-5), name


def test_every_bad_upload_gets_a_clear_error_and_the_server_goes_on(server, tmp_path, photos):
    broken = write_broken_images(tmp_path)
    url = f"{server.url}/predict"
    cases = {
        400: httpx.post(url, content=b""),
        415: httpx.post(url, files={"file": ("notes.jpg", broken["text"].read_bytes())}),
        422: httpx.post(url, files={"file": ("truncated.jpg", broken["truncated"].read_bytes())}),
    }
    big = io.BytesIO()
    Image.new("RGB", (1200, 1000), (90, 120, 200)).save(big, "PNG")  # 1.2 MP in a few KB: a tiny "bomb"
    cases[413] = httpx.post(url, files={"file": ("bomb.png", big.getvalue())})
    for status, response in cases.items():
        assert response.status_code == status, (status, response.text)
        assert response.json()["error"]
    assert "not an image" in cases[415].json()["error"] and "notes.jpg" in cases[415].json()["error"]
    assert "1,200,000 pixels" in cases[413].json()["error"]
    too_long = httpx.post(url, content=b"\xff" * (1024 * 1024 + 10))
    assert too_long.status_code == 413 and "max-upload-mb" in too_long.json()["error"]

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(40):
            yield b"\x00" * 65536

    chunked = httpx.post(url, content=chunks())
    assert chunked.status_code == 413
    assert httpx.post(url, params={"topk": 0}, content=b"x").status_code == 422
    ok = httpx.post(url, files={"file": ("chelsea.png", photos["chelsea"].read_bytes())})
    assert ok.status_code == 200


def test_batch_endpoint_answers_each_file(server, photos, tmp_path):
    broken = write_broken_images(tmp_path)
    files = [("files", ("chelsea.png", photos["chelsea"].read_bytes())),
             ("files", ("notes.jpg", broken["text"].read_bytes())),
             ("files", ("camera.png", photos["camera"].read_bytes()))]
    answer = httpx.post(f"{server.url}/predict/batch", files=files, params={"topk": 2}).json()
    names = [r["file"] for r in answer["results"]]
    assert names == ["chelsea.png", "notes.jpg", "camera.png"]
    assert len(answer["results"][0]["predictions"]) == 2 and answer["results"][1]["status"] == 415


def test_concurrent_requests_form_batches(server):
    before = httpx.get(f"{server.url}/metrics").text
    images = []
    for i in range(24):  # distinct images: no cache hits
        buf = io.BytesIO()
        gradient(40 + i, 30).save(buf, "PNG")
        images.append(buf.getvalue())
    with ThreadPoolExecutor(24) as pool:
        codes = list(pool.map(lambda b: httpx.post(f"{server.url}/predict", content=b, timeout=60).status_code,
                              images))
    assert codes == [200] * 24
    after = httpx.get(f"{server.url}/metrics").text
    calls = metric(after, "reslab_batch_size_count", MODEL) - metric(before, "reslab_batch_size_count", MODEL)
    images_run = metric(after, "reslab_batch_size_sum", MODEL) - metric(before, "reslab_batch_size_sum", MODEL)
    assert images_run == 24
    assert calls < 24  # several images shared an inference call
    single = metric(after, "reslab_batch_size_bucket", MODEL + ',le="1.0"')  # batches of one image
    assert single < metric(after, "reslab_batch_size_count", MODEL)


def test_the_same_bytes_twice_are_answered_from_the_cache(server, photos):
    data = photos["camera"].read_bytes()
    first = httpx.post(f"{server.url}/predict", content=data).json()
    before = httpx.get(f"{server.url}/metrics").text
    second = httpx.post(f"{server.url}/predict", content=data).json()
    after = httpx.get(f"{server.url}/metrics").text
    assert first["predictions"] == second["predictions"]
    assert metric(after, "reslab_cache_hits_total") == metric(before, "reslab_cache_hits_total") + 1
    assert metric(after, "reslab_batch_size_count", MODEL) == metric(before, "reslab_batch_size_count", MODEL)


def test_health_info_metrics_and_docs(server, trained_model):
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/readyz").json() == {"ready": True}
    info = httpx.get(f"{server.url}/info").json()
    assert info["num_classes"] == 10 and info["input"]["shape"] == [3, 32, 32] and info["backend"] == "onnxruntime"
    assert info["precision"] == "fp32" and info["device"] == "cpu"  # ONNX Runtime has no bf16: auto keeps fp32
    assert info["precision_choice"].startswith("auto: onnxruntime fp32")
    text = httpx.get(f"{server.url}/metrics").text
    assert 'reslab_model_info{' in text and 'precision="fp32"' in text and 'backend="onnxruntime"' in text
    for family in ("reslab_requests_total", "reslab_request_seconds_bucket", "reslab_batch_size_bucket",
                   "reslab_queue_depth", "reslab_cache_hits_total"):
        assert family in text, family
    assert metric(text, "reslab_requests_total", 'endpoint="/predict",status="415"') >= 1
    spec = httpx.get(f"{server.url}/openapi.json").json()
    for path in ("/predict", "/predict/batch", "/healthz", "/readyz", "/metrics", "/info", "/v2/health/live",
                 "/v2/health/ready", "/v2/models/{name}", "/v2/models/{name}/infer"):
        assert path in spec["paths"], path
    assert {"400", "413", "415", "422", "503"} <= set(spec["paths"]["/predict"]["post"]["responses"])
    assert "multipart/form-data" in spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    # /models leads to the v2 routes: each link names an operation of the schema, and following it works
    operations = {op["operationId"]: (path, method) for path, item in spec["paths"].items()
                  for method, op in item.items()}
    links = spec["paths"]["/models"]["get"]["responses"]["200"]["links"]
    assert {"/v2/models/{name}", "/v2/models/{name}/ready", "/v2/models/{name}/infer"} <= {
        operations[link["operationId"]][0] for link in links.values()}
    listed = httpx.get(f"{server.url}/models").json()
    served = [m["name"] for m in listed["models"]]
    for path in ("/v2/models/{name}", "/v2/models/{name}/infer"):  # the names the server answers for, once loaded
        name = next(p for item in spec["paths"][path].values() for p in item["parameters"] if p["name"] == "name")
        assert name["schema"]["enum"] == served
    for link in links.values():
        path, method = operations[link["operationId"]]
        assert link["parameters"] == {"name": "$response.body#/default"}
        if method == "get":
            assert httpx.get(server.url + path.format(name=listed["default"])).status_code == 200
    assert httpx.get(f"{server.url}/docs").status_code == 200
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200 and "drop" in page.text.lower()


def test_v2_protocol_with_tritonclient(server, offline, photos):
    import tritonclient.http as triton

    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("resnet20")
    meta = client.get_model_metadata("resnet20")
    assert meta["inputs"][0]["shape"] == [-1, 3, 32, 32] and meta["outputs"][0]["shape"] == [-1, 10]
    batch = offline.preprocess([photos["chelsea"], photos["camera"], photos["grace_hopper"]])
    expected = offline.backend.run(batch)
    for binary in (False, True):
        tensor = triton.InferInput("input", list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch, binary_data=binary)
        result = client.infer("resnet20", [tensor], outputs=[triton.InferRequestedOutput("logits", binary_data=binary)])
        assert np.allclose(result.as_numpy("logits"), expected, atol=1e-4)
    with pytest.raises(triton.InferenceServerException):
        client.get_model_metadata("resnet50")


def test_v2_errors(server):
    url = f"{server.url}/v2/models"
    assert httpx.get(f"{url}/nope").status_code == 404
    bad_shape = {"inputs": [{"name": "input", "shape": [1, 3, 8, 8], "datatype": "FP32", "data": [0.0] * 192}]}
    r = httpx.post(f"{url}/resnet20/infer", json=bad_shape)
    assert r.status_code == 400 and "expected [N, 3, 32, 32]" in r.json()["error"]
    short = {"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": [0.0] * 5}]}
    assert "needs 3072" in httpx.post(f"{url}/resnet20/infer", json=short).json()["error"]
    assert httpx.post(f"{url}/resnet20/infer", content=b"{not json").status_code == 400
    assert httpx.post(f"{url}/nope/infer", json=bad_shape).status_code == 404
    ok = {"inputs": [{"name": "input", "shape": [2, 3, 32, 32], "datatype": "FP32", "data": [0.1] * 6144}],
          "id": "r1"}
    answer = httpx.post(f"{url}/resnet20/infer", json=ok).json()
    assert answer["id"] == "r1" and answer["outputs"][0]["shape"] == [2, 10]


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory):
    """ResNet-18 at 448 px (random weights): about a tenth of a second per image on two cores."""
    model = create_model("resnet18", 10).eval()
    info = ModelInfo(ModelSpec("resnet18", 10), [f"c{i}" for i in range(10)],
                     Preprocess(448, 512, IMAGENET_MEAN, IMAGENET_STD))
    return save_model_file(tmp_path_factory.mktemp("slow") / "slow.safetensors", model, info)


@pytest.mark.slow
def test_full_queue_and_timeouts_are_refused_cleanly(slow_model, photos):
    slow = RunningServer(slow_model, "--backend", "torch", "--max-queue", "2", "--timeout-s", "0.05",
                         "--cache-size", "0")
    try:
        data = photos["chelsea"].read_bytes()
        with ThreadPoolExecutor(6) as pool:
            responses = list(pool.map(lambda _: httpx.post(f"{slow.url}/predict", content=data, timeout=30),
                                      range(6)))
        codes = sorted(r.status_code for r in responses)
        assert 503 in codes and 504 in codes and set(codes) <= {503, 504}, codes
        refused = next(r for r in responses if r.status_code == 503)
        assert refused.headers["retry-after"] == "1" and "max-queue" in refused.json()["error"]
        late = next(r for r in responses if r.status_code == 504)
        assert "timeout-s" in late.json()["error"]
        assert httpx.get(f"{slow.url}/healthz").status_code == 200
    finally:
        assert stopped_cleanly(slow.stop())


def test_sigterm_finishes_requests_in_flight(slow_model, photos):
    running = RunningServer(slow_model, "--backend", "torch", "--cache-size", "0", "--max-batch", "1")
    result = {}
    data = photos["chelsea"].read_bytes()
    uploads = [("files", (f"{i}.png", data)) for i in range(12)]  # a tenth of a second or more each, one at a time

    def request():
        result["response"] = httpx.post(f"{running.url}/predict/batch", files=uploads, timeout=60)

    thread = threading.Thread(target=request)
    thread.start()
    deadline = time.time() + 30
    while classified(running.url) < 1 and time.time() < deadline:  # the request is being answered, not yet done
        time.sleep(0.01)
    assert stopped_cleanly(running.stop())
    thread.join()
    answers = json.loads(result["response"].text)["results"]
    assert result["response"].status_code == 200 and len(answers) == 12
    assert all(answer["predictions"] for answer in answers)


def classified(url: str) -> float:
    """The server's count of images classified (Prometheus' reslab_images_total)."""
    lines = httpx.get(f"{url}/metrics").text.splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith("reslab_images_total"))


def test_several_worker_processes_serve_the_same_model(trained_model, photos):
    running = RunningServer(trained_model, "--backend", "onnxruntime", "--workers", "2")

    def predict(name: str) -> dict:
        """A worker still loading answers 503 + Retry-After: a client retries, as it should."""
        for _ in range(120):
            r = httpx.post(f"{running.url}/predict", content=photos[name].read_bytes())
            if r.status_code != 503:
                return r.json()
            time.sleep(float(r.headers["retry-after"]) / 4)
        raise AssertionError("a worker never became ready")

    try:
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(predict, ["chelsea", "camera", "grace_hopper", "chelsea"]))
        assert all(len(a["predictions"]) == 5 for a in answers)
        assert answers[0]["predictions"] == answers[3]["predictions"]
    finally:
        assert stopped_cleanly(running.stop())
