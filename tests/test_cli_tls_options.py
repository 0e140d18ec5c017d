"""--header, --ca-cert, --client-cert/--client-key: settings that can never work are one line and exit 1 before any
connection (they were a TLS or gRPC failure reported as an unreachable server, exit 75, under gRPC's own log lines)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from vggx.cli import _state, _triton_options, app
from vggx.server import free_port


@pytest.fixture(scope="module")
def pem(tmp_path_factory):
    """A self-signed certificate, its key, the key encrypted, and another key."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    d = tmp_path_factory.mktemp("pem")
    cert, key, enc, other = d / "cert.pem", d / "key.pem", d / "enc.pem", d / "other.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=localhost"], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(key), "-aes256", "-passout", "pass:x", "-out", str(enc)],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-out", str(other)], check=True, capture_output=True)
    text = d / "text.pem"
    text.write_text("not a certificate\n")
    return {"cert": cert, "key": key, "enc": enc, "other": other, "text": text}


def _one_line(args):
    result = CliRunner().invoke(app, ["info", "--url", *args])
    assert result.exit_code == 1, result.output  # not 75: a retry will not help
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and result.stdout == "", result.output
    return lines[0]


@pytest.mark.parametrize("value", ["b\nc", "b\rc", "b\x00c", "b\x1bc"])
def test_a_header_value_with_a_control_character_is_refused(value):
    line = _one_line(["127.0.0.1:1", "--header", f"X-A: secret{value}"])
    assert line == ("error: --header X-A: its value holds a line break or another control character; a header value "
                    "is one line of text")
    assert "secret" not in line  # header values are often secrets


def test_a_header_value_may_hold_a_tab():
    """HTTP allows a TAB in a field value: not refused (the unreachable server is what stops this run)."""
    result = CliRunner().invoke(app, ["info", "--url", f"127.0.0.1:{free_port()}", "--header", "X-A: b\tc"])
    assert "--header" not in result.output and "cannot reach Triton" in result.output, result.output


def test_a_ca_cert_that_is_not_pem_is_refused(pem):
    line = _one_line(["grpcs://127.0.0.1:1", "--ca-cert", str(pem["text"])])
    assert line.startswith(f"error: --ca-cert {pem['text']} is not a PEM certificate (")


@pytest.mark.parametrize(("cert", "key", "message"), [
    ("text", "key", "--client-cert {cert} is not a PEM certificate ("),
    ("cert", "text", "--client-key {key} is not a PEM private key"),
    ("cert", "other", "--client-key {key} is not the key of --client-cert {cert}"),
])
def test_a_client_cert_and_key_that_do_not_load_are_refused(pem, cert, key, message):
    line = _one_line(["grpcs://127.0.0.1:1", "--client-cert", str(pem[cert]), "--client-key", str(pem[key])])
    message = "error: " + message.format(cert=pem[cert], key=pem[key])
    assert line.startswith(message) if message.endswith("(") else line == message, line


@pytest.mark.parametrize("key", ["key", "enc"])
def test_good_tls_files_pass(pem, key):
    # an encrypted key is passed on as given (no passphrase prompt here)
    options = _triton_options("grpcs://127.0.0.1:1", None, False, pem["cert"], None, pem["cert"], pem[key])
    assert options["ssl"] and options["ca_cert"] == pem["cert"]


def test_grpc_logs_stay_off_stderr_unless_debug(monkeypatch):
    monkeypatch.delenv("GRPC_VERBOSITY", raising=False)
    _triton_options(None, None, False, None, None)
    assert "GRPC_VERBOSITY" not in os.environ  # no --url: nothing set
    _triton_options("127.0.0.1:1", None, False, None, None)
    assert os.environ["GRPC_VERBOSITY"] == "NONE"
    monkeypatch.setenv("GRPC_VERBOSITY", "DEBUG")  # a user's own setting stays
    _triton_options("127.0.0.1:1", None, False, None, None)
    assert os.environ["GRPC_VERBOSITY"] == "DEBUG"
    monkeypatch.delenv("GRPC_VERBOSITY")
    monkeypatch.setitem(_state, "debug", True)
    _triton_options("127.0.0.1:1", None, False, None, None)
    assert "GRPC_VERBOSITY" not in os.environ
