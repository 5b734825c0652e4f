"""A server fit for a team network: API keys on what reveals or runs the model, HTTPS with a real
certificate, and an OpenAPI schema that says what the server requires."""

import subprocess

import httpx
import pytest

from reslab.serve.auth import ApiKeys, collect_api_keys, exposure_warning

from .servers import RunningServer, stopped_cleanly

FILE_KEY, ENV_KEY = "team-key-0123456789", "ci-key-abcdefghij"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(folder / "key.pem"),
                    "-out", str(folder / "cert.pem")], check=True, capture_output=True)
    return folder / "cert.pem", folder / "key.pem"


@pytest.fixture(scope="module")
def secure_server(trained_model, certificate, tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys") / "keys.txt"
    keys.write_text(f"# the team's keys\n{FILE_KEY}\n")
    cert, key = certificate
    running = RunningServer(trained_model, "--backend", "onnxruntime", "--api-key-file", str(keys),
                            "--ssl-certfile", str(cert), "--ssl-keyfile", str(key), verify=str(cert),
                            env={"RESLAB_API_KEY": ENV_KEY})
    yield running
    log = running.stop()
    assert stopped_cleanly(log)
    assert FILE_KEY not in log and ENV_KEY not in log  # keys are never logged


PROTECTED = [("GET", "/info"), ("GET", "/models"), ("GET", "/metrics"), ("POST", "/predict"),
             ("POST", "/predict/batch"),
             ("GET", "/v2/models/resnet20"), ("GET", "/v2/models/resnet20/ready"),
             ("POST", "/v2/models/resnet20/infer")]


def test_health_stays_open_and_everything_else_needs_a_key(secure_server, photos):
    client = secure_server.client
    for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/"):
        assert client.get(path).status_code == 200, path
    for method, path in PROTECTED:
        for headers in ({}, {"Authorization": "Bearer wrong-key-000000"}, {"Authorization": f"Basic {FILE_KEY}"}):
            response = client.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, headers)
            assert response.headers["www-authenticate"].startswith("Bearer") and "error" in response.json()
    image = photos["grace_hopper"].read_bytes()
    for key in (FILE_KEY, ENV_KEY):  # the key file and the environment variable both count
        answer = client.post("/predict", content=image, headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 5
    assert client.get("/info", headers={"Authorization": f"Bearer {ENV_KEY}"}).json()["num_classes"] == 10


def test_https_only_with_the_certificate(secure_server, certificate):
    with pytest.raises(httpx.ConnectError):  # an unknown certificate is refused by a verifying client
        httpx.get(f"{secure_server.url}/healthz", verify=True)
    with pytest.raises(httpx.TransportError):  # plain HTTP gets no answer
        httpx.get(f"http://127.0.0.1:{secure_server.port}/healthz", timeout=5)


def test_openapi_says_what_is_required(secure_server):
    spec = secure_server.client.get("/openapi.json").json()
    for path, method in (("/predict", "post"), ("/predict/batch", "post")):
        body = spec["paths"][path][method]["requestBody"]["content"]["multipart/form-data"]["schema"]
        assert body["required"] == (["file"] if path == "/predict" else ["files"])
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "401" in spec["paths"]["/predict"]["post"]["responses"]
    assert "security" in spec["paths"]["/info"]["get"] and "security" not in spec["paths"]["/healthz"]["get"]


def test_keys_are_collected_and_compared_whole(tmp_path, monkeypatch):
    monkeypatch.setenv("RESLAB_API_KEY", "env-key-1234,env-key-5678")
    (tmp_path / "k").write_text("# comment\n\nfile-key-1234\n")
    keys = collect_api_keys(["flag-key-1234"], tmp_path / "k")
    assert keys == ["flag-key-1234", "file-key-1234", "env-key-1234", "env-key-5678"]
    allowed = ApiKeys(keys)
    assert all(allowed.allows(k) for k in keys)
    assert not any(allowed.allows(k) for k in ("flag-key-123", "flag-key-12345", "", None))
    with pytest.raises(ValueError, match="shorter than 8"):
        collect_api_keys(["short"])
    with pytest.raises(ValueError, match="--api-key-file .*missing: no such file"):
        collect_api_keys([], tmp_path / "missing")
    monkeypatch.delenv("RESLAB_API_KEY")
    assert "anyone who can reach this machine" in exposure_warning("0.0.0.0", [])
    assert exposure_warning("0.0.0.0", ["k" * 8]) is None and exposure_warning("127.0.0.1", []) is None
