"""A real HTTP file server on 127.0.0.1 for URL inputs: ``http.server`` with byte ranges (FFmpeg seeks with them),
and a count of the requests per path."""

from __future__ import annotations

import collections
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class InBackground:
    """A test HTTP server (``self._httpd``) that serves from a daemon thread inside ``with``."""

    _httpd: ThreadingHTTPServer

    def __enter__(self):
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class FileServer(InBackground):
    """``with FileServer(folder) as srv``: ``srv.url(name)`` is ``http://127.0.0.1:PORT/name``."""

    def __init__(self, folder: Path) -> None:
        self.requests: collections.Counter[str] = collections.Counter()
        self.drop_after: int | None = None  # cut the next response after this many bytes (a network failure), once
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args, **kw) -> None:
                super().__init__(*args, directory=str(folder), **kw)

            def log_message(self, *args) -> None:
                pass

            def send_head(self):
                server.requests[self.path.split("?")[0]] += 1
                spec = self.headers.get("Range", "")
                path = Path(self.translate_path(self.path))
                if not spec.startswith("bytes=") or not path.is_file():
                    return super().send_head()
                size = path.stat().st_size
                first, _, last = spec[len("bytes="):].partition("-")
                start = int(first or 0)
                end = min(int(last), size - 1) if last else size - 1
                if start >= size:
                    self.send_error(416)
                    return None
                f = open(path, "rb")  # noqa: SIM115 - closed by copyfile's caller (SimpleHTTPRequestHandler)
                f.seek(start)
                self.send_response(206)
                self.send_header("Content-Type", self.guess_type(str(path)))
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.send_header("Content-Length", str(end - start + 1))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                cut, server.drop_after = server.drop_after, None
                return _Limited(f, end - start + 1 if cut is None else min(cut, end - start + 1), dropped=cut)

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:  # the dropped connections are on purpose
        pass


class _Limited:
    """A file object that reads at most ``n`` bytes (the range asked for); with ``dropped``, the connection is then
    reset (``copyfile`` raises, the handler closes the socket mid-response)."""

    def __init__(self, f, n: int, dropped: int | None = None) -> None:
        self._f, self._left, self._dropped = f, n, dropped

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            if self._dropped is not None:
                raise ConnectionResetError("test server drops the connection")
            return b""
        size = self._left if size < 0 else min(size, self._left)
        data = self._f.read(size)
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._f.close()


__all__ = ["FileServer"]
