"""A small HTTPS Key Vault test server, for driving the real ``SecretClient`` on loopback.

No Key Vault emulator exists, so this speaks just enough of the secrets REST API:
an unauthenticated request gets the 401 challenge ``SecretClient`` expects, then requests
must carry ``Authorization: Bearer <TOKEN>``. ``GET /secrets/{name}/`` returns the latest
version, ``PUT /secrets/{name}`` sets a new one, a missing secret is a 404
``SecretNotFound``. Self-signed certificate (``cryptography``), ``TCP_NODELAY`` on (the SDK
is slow without it), keep-alive HTTP/1.1.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import ssl
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from azure.core.credentials import AccessToken

__all__ = ["TOKEN", "FakeCredential", "KeyVaultTestServer"]

TOKEN = "kv-test-token"
CHALLENGE = (
    'Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-'
    '000000000000", resource="https://vault.azure.net"'
)


class FakeCredential:
    """A credential that hands out :data:`TOKEN` and records the scopes asked for."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(TOKEN, int(time.time()) + 3600)

    def close(self) -> None:
        pass


def _self_signed(directory: Path) -> tuple[Path, Path]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "kv-cert.pem", directory / "kv-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, body: dict | None, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        length = int(self.headers.get("Content-Length") or 0)
        self._body = self.rfile.read(length) if length else b""
        self.server.requests.append((self.command, self.path))
        if self.headers.get("Authorization") == f"Bearer {TOKEN}":
            return True
        self._send(
            401,
            {"error": {"code": "Unauthorized", "message": "no bearer token"}},
            {"WWW-Authenticate": CHALLENGE},
        )
        return False

    def _bundle(self, name: str, version: str, value: str, created: int) -> dict:
        return {
            "value": value,
            "id": f"{self.server.url}/secrets/{name}/{version}",
            "attributes": {
                "enabled": True,
                "created": created,
                "updated": created,
                "recoveryLevel": "Recoverable+Purgeable",
            },
        }

    def _name(self) -> tuple[str | None, str | None]:
        match = re.fullmatch(r"/secrets/([A-Za-z0-9-]+)(?:/([A-Za-z0-9]*))?/?(?:\?.*)?", self.path)
        return (match.group(1), match.group(2) or None) if match else (None, None)

    def do_GET(self) -> None:
        if not self._authorised():
            return
        name, version = self._name()
        versions = self.server.secrets.get(name or "", [])
        found = [v for v in versions if version in (None, v[0])]
        if not found:
            self._send(
                404,
                {
                    "error": {
                        "code": "SecretNotFound",
                        "message": (
                            f"A secret with (name/id) {name} was not found in this key vault."
                        ),
                    }
                },
            )
            return
        self._send(200, self._bundle(name, *found[-1]))

    def do_PUT(self) -> None:
        if not self._authorised():
            return
        name, _ = self._name()
        try:
            value = json.loads(self._body)["value"]
        except (ValueError, KeyError, TypeError):
            self._send(400, {"error": {"code": "BadParameter", "message": "value required"}})
            return
        if name is None or not isinstance(value, str):
            self._send(400, {"error": {"code": "BadParameter", "message": "bad request"}})
            return
        entry = (uuid.uuid4().hex, value, int(time.time()))
        self.server.secrets.setdefault(name, []).append(entry)
        self._send(200, self._bundle(name, *entry))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    secrets: dict[str, list[tuple[str, str, int]]]
    requests: list[tuple[str, str]]
    url: str


class KeyVaultTestServer:
    """``with KeyVaultTestServer() as kv: kv.url`` — an HTTPS vault on 127.0.0.1."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="kv-test-")
        cert, key = _self_signed(Path(self._dir.name))
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        self.httpd.url = self.url
        self.httpd.secrets = {}
        self.httpd.requests = []
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, daemon=True, name="kv-test-server"
        )

    @property
    def secrets(self) -> dict[str, list[tuple[str, str, int]]]:
        """name -> [(version, value, created)] as stored (for assertions)."""
        return self.httpd.secrets

    @property
    def requests(self) -> list[tuple[str, str]]:
        return self.httpd.requests

    def start(self) -> KeyVaultTestServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._dir.cleanup()

    def __enter__(self) -> KeyVaultTestServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
