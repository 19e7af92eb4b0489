"""A stand-in for the Hugging Face hub on 127.0.0.1, answering the requests the installed huggingface_hub makes
(read from its `file_download.py` and `hf_api.py`, 0.20 to 2.5), and a runner for scripts in fresh processes.

    HEAD and GET /{repo_id}/resolve/{revision}/{filename}: 200 with `X-Repo-Commit`, `ETag` and `X-Linked-Etag`
        (the LFS sha256, quoted, as the hub sends them), `X-Linked-Size` and `Content-Length`; GET sends the bytes.
        An unknown repository, revision or file is a 404 with the hub's `X-Error-Code` (`RepoNotFound`,
        `RevisionNotFound`, `EntryNotFound`).
    POST /api/models/{repo_id}/paths-info/{revision}: the JSON list `HfApi.get_paths_info` reads (`type`, `path`,
        `size`, `oid`, `lfs` with `oid` = sha256, `size`, `pointerSize`).
Every request is logged ("HEAD /timm/x/resolve/main/model.safetensors"). A file can be made to misbehave: `serve`
other bytes than the hub reports for it, or `cut` the transfer short after some bytes while `Content-Length`
promises all of them. Only the standard library is imported, so a script that starts the server first has still
imported nothing of huggingface_hub, Keras or the package.
"""

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def sha256(data):
    return hashlib.sha256(data).hexdigest()


class FakeHub:
    """Repositories {repo_id: {"commit": str, "files": {filename: {"data", "serve", "cut"}}}} behind a server."""

    def __init__(self):
        self.repos, self.requests = {}, []
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def publish(self, repo_id, filename, data, commit=COMMIT):
        """Puts `data` at `filename` of `repo_id` (at `commit`, which `main` then resolves to)."""
        repo = self.repos.setdefault(repo_id, {"files": {}})
        repo["commit"] = commit
        repo["files"][filename] = {"data": data, "serve": data, "cut": None, "cuts": 0}

    def tamper(self, repo_id, filename, serve=None, cut=None, cuts=1):
        """Makes the file misbehave: GET (and the sizes HEAD states) give `serve` instead of the data the API
        reports; the first `cuts` GETs stop after `cut` bytes although `Content-Length` promised all (a GET with
        `Range: bytes=N-` then gets the rest, 206, as the hub's storage answers a resumed download)."""
        entry = self.repos[repo_id]["files"][filename]
        entry.update(serve=entry["data"] if serve is None else serve, cut=cut, cuts=cuts if cut is not None else 0)

    def stop(self):
        self._httpd.shutdown()
        self._httpd.server_close()

    def _lookup(self, repo_id, revision, filename):
        """(status, headers, entry) for a file request, as the hub answers it."""
        repo = self.repos.get(repo_id)
        if repo is None:
            return 404, {"X-Error-Code": "RepoNotFound"}, None
        if revision not in ("main", repo["commit"]):
            return 404, {"X-Error-Code": "RevisionNotFound"}, None
        entry = repo["files"].get(filename)
        if entry is None:
            return 404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": repo["commit"]}, None
        return 200, {"X-Repo-Commit": repo["commit"]}, entry

    def _handler(self):
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _reply(self, status, headers, body=b"", length=None):
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _resolve(self):
                parts = urllib.parse.unquote(urllib.parse.urlparse(self.path).path).strip("/").split("/")
                if len(parts) < 5 or parts[2] != "resolve":
                    return self._reply(404, {"X-Error-Code": "RepoNotFound"})
                status, headers, entry = hub._lookup("/".join(parts[:2]), parts[3], "/".join(parts[4:]))
                if entry is None:
                    return self._reply(status, headers)
                served = entry["serve"]
                headers.update({"ETag": f'"{sha256(served)}"', "X-Linked-Etag": f'"{sha256(entry["data"])}"',
                                "X-Linked-Size": str(len(served)), "Accept-Ranges": "bytes"})  # fmt: skip
                start = int(self.headers.get("Range", "bytes=0-")[6:].split("-")[0] or 0)
                if self.command == "GET" and start:
                    headers["Content-Range"] = f"bytes {start}-{len(served) - 1}/{len(served)}"
                    return self._reply(206, headers, served[start:])
                if self.command == "GET" and entry["cuts"]:
                    entry["cuts"] -= 1
                    self.close_connection = True
                    return self._reply(200, headers, served[: entry["cut"]], length=len(served))
                self._reply(200, headers, served)

            def do_HEAD(self):
                hub.requests.append(f"HEAD {self.path}")
                self._resolve()

            def do_GET(self):
                hub.requests.append(f"GET {self.path}")
                self._resolve()

            def do_POST(self):
                hub.requests.append(f"POST {self.path}")
                form = urllib.parse.parse_qs(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode())
                parts = urllib.parse.unquote(urllib.parse.urlparse(self.path).path).strip("/").split("/")
                if len(parts) != 6 or parts[:2] != ["api", "models"] or parts[4] != "paths-info":
                    return self._reply(404, {"X-Error-Code": "RepoNotFound"})
                infos = []
                for path in form.get("paths", []):
                    status, headers, entry = hub._lookup(f"{parts[2]}/{parts[3]}", parts[5], path)
                    if status == 404 and "X-Repo-Commit" not in headers:
                        return self._reply(status, headers)
                    if entry is not None:
                        data = entry["data"]
                        infos.append({"type": "file", "path": path, "size": len(data), "oid": hashlib.sha1(data).hexdigest(),
                                      "lfs": {"oid": sha256(data), "size": len(data), "pointerSize": 134}})  # fmt: skip
                self._reply(200, {"Content-Type": "application/json"}, json.dumps(infos).encode())

        return Handler


def hub_environment(tmp_path, **extra):
    """The environment of a fresh process: this one's, with the hub's and the package's caches under `tmp_path`,
    no token, no telemetry, no proxy for 127.0.0.1, and the repository on the path."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_CACHE=str(tmp_path / "hub"), HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_IMPLICIT_TOKEN="1", KERAS_VITRES_CACHE=str(tmp_path / "keras_vitres"),
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)])))  # fmt: skip
    env.update({key: str(value) for key, value in extra.items()})
    return env


def run_fresh(script, env, timeout=240):
    """Runs `script` (Python source) in a fresh interpreter; returns the JSON object its last stdout line prints.
    A failure shows the end of the script's output."""
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=env["KERAS_VITRES_CACHE"].rsplit(os.sep, 1)[0],
                            capture_output=True, text=True, timeout=timeout)  # fmt: skip
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0 and lines, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return json.loads(lines[-1]) | {"stderr": result.stderr}
