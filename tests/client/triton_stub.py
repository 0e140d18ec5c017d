"""A tiny stand-in for Triton's HTTP/REST (KServe v2) endpoint, for client tests without a server.

It serves one model whose config carries the vggx parameters and whose "inference" is nearest-neighbour
×scale, and can be told to be not ready, to fail the next requests with an HTTP status, or to run out of
memory on large inputs; it records the headers it gets, and serves HTTPS with ``tls=(cert, key)``. With
``shared_memory=True`` it maps the system shared-memory regions a client registers, as a local server does.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from httpfiles import InBackground


class StubTriton(InBackground):
    """Start with ``with StubTriton(...) as stub``; ``stub.url`` is ``127.0.0.1:PORT``."""

    def __init__(self, *, window: int = 4, scale: int = 4, max_size: str = "64x64", ready: bool = True,
                 model: str = "vggx", host: str = "127.0.0.1", port: int = 0,
                 tls: tuple[str, str] | None = None, shared_memory: bool = False) -> None:
        self.window, self.scale, self.max_size, self.ready, self.model = window, scale, max_size, ready, model
        self.fail_next: list = []  # HTTP statuses (or (status, message)) to answer the next infer requests with
        self.fail_from: int | None = None  # answer 400 to every infer request from this (1-based) one on
        # hang up on the next infer requests: "close" (no answer: a server killed mid-request), "cut" (half an answer)
        self.drop_next: list[str] = []
        self.infer_calls = 0
        # answer larger inputs (h·w LR pixels) the way vggx's served torch model answers when CUDA runs out of memory
        self.oom_above: int | None = None
        self.oom_says_fits = False  # answer it as vggx's CPU-served model does, naming the pixels that fit
        self.shapes: list[list[int]] = []  # every infer request's input shape, in order
        self.headers: list[dict[str, str]] = []  # every request's headers, in order
        self.shared_memory = shared_memory
        self.served_scale: int | None = None  # upscale by this, not by the config's scale (a config that is wrong)
        self.parameters: dict[str, str] = {}  # more config parameters (vggx export's checkpoint_sha256, precision)
        self.regions: dict[str, tuple[str, int]] = {}  # registered name -> (/dev/shm key, byte size)
        self.hang_unregister = False  # take unregister requests and never answer them (a hung server)
        self.unregister_calls = 0
        self._stopping = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {"Content-Type": "application/json"}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                stub.headers.append(dict(self.headers))
                base = f"/v2/models/{stub.model}"
                if self.path.startswith(f"{base}/versions/"):  # a version called: the stub serves any
                    self.path = base + "/" + self.path.split("/", 6)[-1]
                if self.path == "/v2/health/live":
                    self._send(200)
                elif self.path == f"{base}/ready":
                    self._send(200 if stub.ready else 400)
                elif self.path == f"{base}/config":
                    self._send(200, json.dumps(stub.config()).encode())
                else:
                    self._send(404, json.dumps({"error": f"unknown path {self.path}"}).encode())

            def do_POST(self) -> None:
                stub.headers.append(dict(self.headers))
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.startswith("/v2/systemsharedmemory/region/") and stub.shared_memory:
                    self._region(self.path.split("/")[-2], self.path.split("/")[-1], body)
                    return
                if self.path != f"/v2/models/{stub.model}/infer":  # e.g. shared-memory registration
                    self._send(400, json.dumps({"error": "not supported by the stub"}).encode())
                    return
                stub.infer_calls += 1
                if stub.fail_from is not None and stub.infer_calls >= stub.fail_from:
                    self._send(400, json.dumps({"error": "stub breaks from here on"}).encode())
                    return
                if stub.drop_next:
                    how = stub.drop_next.pop(0)
                    self.close_connection = True
                    if how == "cut":
                        self.send_response(200)
                        self.send_header("Content-Length", "1000")
                        self.end_headers()
                        self.wfile.write(b'{"model_name": "vg')
                    return
                if stub.fail_next:  # a status, or (status, Triton's error message)
                    status = stub.fail_next.pop(0)
                    status, message = status if isinstance(status, tuple) else (status, "stub says no")
                    self._send(status, json.dumps({"error": message}).encode())
                    return
                n = int(self.headers.get("Inference-Header-Content-Length", len(body)))
                header = json.loads(body[:n])
                (inp,) = header["inputs"]
                if "shared_memory_region" in inp.get("parameters", {}):
                    lr = self._mapped(inp["parameters"]["shared_memory_region"], np.prod(inp["shape"]))
                    lr = lr.reshape(inp["shape"]).copy()
                else:
                    lr = np.frombuffer(body[n:], np.uint8).reshape(inp["shape"])
                stub.shapes.append(list(lr.shape))
                if stub.oom_above is not None and lr.shape[2] * lr.shape[3] > stub.oom_above:
                    said = ("inference failed: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.10 GiB total "
                            "capacity)")
                    if stub.oom_says_fits:
                        said = (f"out of memory: a {lr.shape[2]}x{lr.shape[3]} window needs about 3 MiB of host "
                                f"memory, above this model instance's budget of 1 MiB (config parameter "
                                f"host_memory_budget): windows of up to {stub.oom_above} LR pixels (about 19x19) "
                                f"fit; send smaller tiles")
                    self._send(500, json.dumps({"error": said}).encode())
                    return
                scale = stub.served_scale or stub.scale
                sr = np.ascontiguousarray(lr.repeat(scale, axis=2).repeat(scale, axis=3))
                (wanted,) = header["outputs"]
                if "shared_memory_region" in wanted.get("parameters", {}):
                    self._mapped(wanted["parameters"]["shared_memory_region"], sr.nbytes)[:] = sr.reshape(-1)
                    out = json.dumps({"model_name": stub.model, "outputs": [{
                        "name": "sr", "datatype": "UINT8", "shape": list(sr.shape),
                        "parameters": wanted["parameters"]}]}).encode()
                    self._send(200, out)
                    return
                out = json.dumps({"model_name": stub.model, "outputs": [{
                    "name": "sr", "datatype": "UINT8", "shape": list(sr.shape),
                    "parameters": {"binary_data_size": sr.nbytes}}]}).encode()
                self._send(200, out + sr.tobytes(), {"Content-Type": "application/octet-stream",
                                                     "Inference-Header-Content-Length": str(len(out))})

            def _region(self, name: str, action: str, body: bytes) -> None:
                if action == "register":
                    request = json.loads(body)
                    stub.regions[name] = (request["key"].lstrip("/"), request["byte_size"])
                elif action == "unregister":
                    stub.unregister_calls += 1
                    if stub.hang_unregister:
                        stub._stopping.wait()
                        return
                    stub.regions.pop(name, None)
                self._send(200)

            def _mapped(self, name: str, size: int) -> np.ndarray:
                key, byte_size = stub.regions[name]
                assert size <= byte_size, (name, size, byte_size)
                return np.memmap(f"/dev/shm/{key}", np.uint8, "r+", shape=(int(size),))

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        if tls is not None:  # HTTPS, as an ingress in front of Triton serves it: (certificate file, key file)
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]
        self.url = f"{host}:{self.port}"

    def __exit__(self, *exc) -> None:
        self._stopping.set()  # answers nothing to the requests it hangs on
        super().__exit__(*exc)

    def config(self) -> dict:
        params = {"window": str(self.window), "scale": str(self.scale), "size_multiple": "8",
                  "min_size": "16x16", "max_size": self.max_size, "name": "stub", "version": "1", **self.parameters}
        return {"name": self.model, "max_batch_size": 4,
                "input": [{"name": "lr", "data_type": "TYPE_UINT8", "dims": [self.window, -1, -1, 3]}],
                "output": [{"name": "sr", "data_type": "TYPE_UINT8", "dims": [self.window, -1, -1, 3]}],
                "parameters": {k: {"string_value": v} for k, v in params.items()}}
