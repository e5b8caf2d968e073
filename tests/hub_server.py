"""A loopback server that speaks the part of the Hugging Face Hub HTTP protocol the real clients use.

It lets the tests run huggingface_hub, transformers and peft unmodified against `HF_ENDPOINT=http://127.0.0.1:PORT`:
repo creation, preupload, commits (regular base64 files), model info by revision, `resolve` with the headers the
client reads (`X-Repo-Commit`, `ETag`/`X-Linked-Etag`, sizes, and for safetensors files a redirect with `Location`
to a second port playing the CDN, as the Hub does for LFS blobs), tree listing and paths-info. Errors carry the Hub's `X-Error-Code`. Standard library
only, so conftest can create it before huggingface_hub is imported (which reads `HF_ENDPOINT` at import time).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


@dataclass
class Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        """The commit a branch name or full commit sha points at."""
        return self.branches.get(revision) or (revision if revision in self.commits else None)


class HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, hub: "FakeHub"):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hub = hub

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class FakeHub:
    """The Hub and CDN servers (bound at creation, serving once started) and the repositories they share;
    `requests` logs `(method, path)` of every request, `authorizations` the `(path, Authorization header)` pairs."""

    def __init__(self):
        self.servers = (_Server(self), _Server(self))
        self.repos: dict[str, Repo] = {}
        self.blobs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.authorizations: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()
        self._commit_counter = 0

    @property
    def endpoint(self) -> str:
        return self.servers[0].url

    @property
    def cdn(self) -> str:
        return self.servers[1].url

    def start(self) -> None:
        for server in self.servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def shutdown(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()

    def reset(self) -> None:
        with self.lock:
            self.repos.clear()
            self.blobs.clear()
            self.requests.clear()
            self.authorizations.clear()

    # ------------------------------------------------------------------------------------------ repository state

    def repo(self, repo_id: str) -> Repo:
        if repo_id not in self.repos:
            raise HubError(404, "RepoNotFound", f"Repository {repo_id} not found")
        return self.repos[repo_id]

    def files(self, repo_id: str, revision: str) -> tuple[str, dict[str, bytes]]:
        repo = self.repo(repo_id)
        sha = repo.resolve(unquote(revision))
        if sha is None:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return sha, repo.commits[sha]

    def create_repo(self, repo_id: str) -> None:
        with self.lock:
            if repo_id in self.repos:
                raise HubError(409, None, "You already created this model repo")
            self.repos[repo_id] = Repo()
            self._commit(repo_id, "main", {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"})

    def commit(self, repo_id: str, branch: str, lines: list[dict]) -> str:
        with self.lock:
            repo = self.repo(repo_id)
            files = dict(repo.commits[repo.branches[branch]]) if branch in repo.branches else {}
            for line in lines:
                value = line["value"]
                if line["key"] == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif line["key"] == "deletedFile":
                    files.pop(value["path"], None)
                elif line["key"] != "header":
                    raise HubError(400, None, f"the fake Hub does not support commit operation {line['key']!r}")
            return self._commit(repo_id, branch, files)

    def corrupt(self, repo_id: str, path: str, data: bytes) -> str:
        """Replace a file in a new commit on main, bypassing the client (a damaged upload)."""
        with self.lock:
            files = dict(self.repos[repo_id].commits[self.repos[repo_id].branches["main"]])
            files[path] = data
            return self._commit(repo_id, "main", files)

    def _commit(self, repo_id: str, branch: str, files: dict[str, bytes]) -> str:
        self._commit_counter += 1
        sha = hashlib.sha1(f"{repo_id}:{self._commit_counter}".encode()).hexdigest()
        self.repos[repo_id].commits[sha] = files
        self.repos[repo_id].branches[branch] = sha
        for data in files.values():
            self.blobs[hashlib.sha256(data).hexdigest()] = data
        return sha


def _entry(path: str, data: bytes) -> dict:
    return {"type": "file", "path": path, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    @property
    def hub(self) -> FakeHub:
        return self.server.hub

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        path = urlparse(self.path).path
        self.hub.requests.append((method, path))
        self.hub.authorizations.append((path, self.headers.get("Authorization")))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else b""
        try:
            self._route(method, path.strip("/").split("/"), body)
        except HubError as error:
            headers = {"X-Error-Message": error.message, **({"X-Error-Code": error.code} if error.code else {})}
            self._send(error.status, json.dumps({"error": error.message}).encode(), headers, method=method)

    def _route(self, method: str, parts: list[str], body: bytes) -> None:
        if parts[:3] == ["api", "repos", "create"]:
            payload = json.loads(body)
            repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
            url = {"url": f"{self.hub.endpoint}/{repo_id}"}
            if repo_id in self.hub.repos:  # the Hub answers 409 with the url, which `exist_ok=True` relies on
                return self._send(409, json.dumps({"error": "You already created this model repo", **url}).encode(), {})
            self.hub.create_repo(repo_id)
            return self._json(url)
        if parts[:2] == ["api", "validate-yaml"]:
            return self._json({"errors": [], "warnings": []})
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            return self._api(method, "/".join(parts[2:4]), parts[4:], body)
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(method, "/".join(parts[:2]), parts[3], "/".join(parts[4:]))
        if parts[0] == "blobs" and len(parts) == 2 and parts[1] in self.hub.blobs:
            data = self.hub.blobs[parts[1]]
            return self._send(200, data, {"ETag": f'"{parts[1]}"'}, method=method)
        raise HubError(404, None, f"the fake Hub does not serve {method} /{'/'.join(parts)}")

    def _api(self, method: str, repo_id: str, rest: list[str], body: bytes) -> None:
        action, revision = (rest[0], rest[1]) if len(rest) >= 2 else ("revision", "main")
        if action == "commit" and method == "POST":
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            sha = self.hub.commit(repo_id, unquote(revision), lines)
            return self._json({"commitUrl": f"{self.hub.endpoint}/{repo_id}/commit/{sha}", "commitOid": sha,
                               "pullRequestUrl": None})
        if action == "preupload" and method == "POST":
            self.hub.repo(repo_id)
            files = [{"path": entry["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                     for entry in json.loads(body)["files"]]
            return self._json({"files": files})
        sha, files = self.hub.files(repo_id, revision)
        if action == "revision":
            return self._json({"id": repo_id, "modelId": repo_id, "sha": sha, "private": False,
                               "siblings": [{"rfilename": path} for path in sorted(files)]})
        if action == "tree":
            prefix = "/".join(rest[2:])
            return self._json([_entry(path, data) for path, data in sorted(files.items())
                               if not prefix or path.startswith(prefix + "/")])
        if action == "paths-info" and method == "POST":
            wanted = json.loads(body)["paths"] if body.startswith(b"{") else []
            return self._json([_entry(path, files[path]) for path in wanted if path in files])
        raise HubError(404, None, f"the fake Hub does not serve {method} api/models/{repo_id}/{'/'.join(rest)}")

    def _resolve(self, method: str, repo_id: str, revision: str, path: str) -> None:
        sha, files = self.hub.files(repo_id, revision)
        if path not in files:
            raise HubError(404, "EntryNotFound", f"{path} does not exist at revision {sha}")
        data = files[path]
        digest = hashlib.sha256(data).hexdigest()
        headers = {"X-Repo-Commit": sha}
        if path.endswith(".safetensors"):  # the Hub redirects LFS files to their blob storage
            headers |= {"Location": f"{self.hub.cdn}/blobs/{digest}", "X-Linked-Etag": f'"{digest}"',
                        "X-Linked-Size": str(len(data))}
            return self._send(302, b"", headers, method=method)
        return self._send(200, data, headers | {"ETag": f'"{hashlib.sha1(data).hexdigest()}"'}, method=method)

    def _json(self, payload) -> None:
        self._send(200, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def _send(self, status: int, data: bytes, headers: dict[str, str], method: str = "GET") -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)
