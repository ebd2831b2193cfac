"""An `openai` teacher's API key comes from its environment variable and is never printed, even
when the server quotes it back in an error. (test_generation.py scans storage after generation;
test_remote_storage.py scans a whole run's storage, output and Ray logs.)"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import small_spec, write_spec

from study.run.cli import main

KEY = "sk-echoed-4e1d2c9b7a"


class EchoingServer:
    """An OpenAI-compatible endpoint that rejects every request and quotes the key it was sent,
    as some gateways do ("Incorrect API key provided: sk-...")."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                key = self.headers.get("Authorization", "").removeprefix("Bearer ")
                body = json.dumps({"error": {"message": f"Incorrect API key provided: {key}"}}).encode()
                self.send_response(401)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"


@pytest.mark.ray
def test_a_key_quoted_back_by_the_server_is_not_printed(tmp_path, ray_local, capfd, monkeypatch):
    monkeypatch.setenv("COTSTUDY_ECHO_KEY", KEY)
    server = EchoingServer()
    teacher = {"kind": "openai", "name": "gpt", "base_url": server.base_url, "model": "m",
               "api_key_env": "COTSTUDY_ECHO_KEY"}
    spec = write_spec(tmp_path / "spec.yaml", small_spec(tmp_path / "out", teachers=[teacher], formats=["cot"]))
    try:
        assert main(["run", str(spec)]) == 1
    finally:
        server.server.shutdown()
    out, err = capfd.readouterr()
    assert "GET /models answered HTTP 401: " in err and "Incorrect API key provided: <$COTSTUDY_ECHO_KEY>" in err
    assert KEY not in out + err
    for path in (tmp_path / "out").rglob("*"):
        assert not path.is_file() or KEY.encode() not in path.read_bytes(), path
