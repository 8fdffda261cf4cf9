"""A real HTTP server on 127.0.0.1 that answers the Hugging Face Hub's upload API, for tests.

It stands in for the Hub (unreachable from tests) with the few routes ``huggingface_hub`` calls
to create a repository and commit files to it: ``POST /api/repos/create``,
``POST /api/validate-yaml``, ``POST /api/models/{repo}/preupload/{rev}`` (every file "regular",
so contents travel inside the commit) and ``POST /api/models/{repo}/commit/{rev}`` (NDJSON).
What it received is kept for the test to read::

    with FakeHub(token="hf_test") as hub:
        ...  # HF_ENDPOINT=hub.url
        hub.repos["me/model"]["files"]["README.md"]  # bytes
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeHub:
    def __init__(self, *, token: str = "hf_test", writable: tuple[str, ...] | None = None) -> None:
        self.token = token
        self.writable = writable  # namespaces the token may write to (None: all)
        self.repos: dict[str, dict[str, Any]] = {}
        self.paths: list[str] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                fake._handle(self)

            do_GET = do_POST  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(raw)))
        h.end_headers()
        h.wfile.write(raw)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        raw = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        path = h.path.split("?", 1)[0]
        with self.lock:
            self.paths.append(f"{h.command} {path}")
        if h.headers.get("Authorization") != f"Bearer {self.token}":
            self._send(h, 401, {"error": "Invalid credentials in Authorization header"})
            return
        if path == "/api/validate-yaml":
            self._send(h, 200, {"errors": [], "warnings": []})
            return
        if path == "/api/repos/create":
            req = json.loads(raw)
            repo_id = f"{req.get('organization') or 'me'}/{req['name']}"
            if self.writable is not None and repo_id.split("/")[0] not in self.writable:
                namespace = repo_id.split("/")[0]
                message = (
                    f'You don\'t have the rights to create a model under namespace "{namespace}"'
                )
                self._send(h, 403, {"error": message})
                return
            with self.lock:
                existed = repo_id in self.repos
                # huggingface_hub 1.x sends "private", 2.x "visibility"
                private = bool(req.get("private")) or req.get("visibility") == "private"
                self.repos.setdefault(repo_id, {"private": private, "files": {}, "commits": []})
            status = 409 if existed else 200
            body = {"url": f"{self.url}/{repo_id}", "name": repo_id, "id": repo_id}
            if existed:
                body["error"] = "You already created this model repo"
            self._send(h, status, body)
            return
        parts = path.strip("/").split("/")  # api models NS NAME (preupload|commit) REV
        if len(parts) == 6 and parts[:2] == ["api", "models"]:
            repo_id, action = f"{parts[2]}/{parts[3]}", parts[4]
            if repo_id not in self.repos:
                self._send(h, 404, {"error": "Repository not found"})
                return
            if action == "preupload":
                files = json.loads(raw)["files"]
                out = [
                    {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                    for f in files
                ]
                self._send(h, 200, {"files": out})
                return
            if action == "commit":
                lines = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
                with self.lock:
                    repo = self.repos[repo_id]
                    for item in lines:
                        if item["key"] == "header":
                            repo["commits"].append(item["value"]["summary"])
                        elif item["key"] == "file":
                            value = item["value"]
                            repo["files"][value["path"]] = base64.b64decode(value["content"])
                    n = len(repo["commits"])
                oid = f"{n:040x}"
                self._send(
                    h,
                    200,
                    {"commitUrl": f"{self.url}/{repo_id}/commit/{oid}", "commitOid": oid},
                )
                return
        self._send(h, 404, {"error": f"fake hub: no route {h.command} {path}"})
