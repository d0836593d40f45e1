"""A self-signed TLS certificate made on a workspace's first start, and pinning it by fingerprint.

``tls = "self-signed"`` (``--tls self-signed``): the server serves https with ``DIR/tls/server.crt``
and ``DIR/tls/server.key`` (0600), generated with the ``openssl`` command on first start and kept
after; the banner prints the certificate's SHA-256 fingerprint, which agents pin with
``tls_fingerprint`` (their ``ca_file`` cannot serve: the certificate names no host they reach it by).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import socket
import ssl
import subprocess
from pathlib import Path

TLS_DIR = "tls"
CERT_FILE, KEY_FILE = "server.crt", "server.key"
DAYS = 3650


class TlsError(Exception):
    pass


def fingerprint_of_der(der: bytes) -> str:
    """``AB:CD:…``: the SHA-256 of a DER certificate, as ``openssl x509 -fingerprint -sha256`` shows it."""
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def fingerprint(cert_path: str | os.PathLike) -> str:
    return fingerprint_of_der(ssl.PEM_cert_to_DER_cert(Path(cert_path).read_text()))


def normalize(fp: str) -> str:
    """A fingerprint as ``AB:CD:…`` whether given with colons or not, any case; ValueError if not SHA-256."""
    hexa = fp.replace(":", "").strip().upper()
    if len(hexa) != 64 or any(c not in "0123456789ABCDEF" for c in hexa):
        raise ValueError(f"a SHA-256 fingerprint is 64 hex digits (colons allowed), got {fp!r}")
    return ":".join(hexa[i:i + 2] for i in range(0, 64, 2))


def self_signed(data_dir: str | os.PathLike) -> tuple[Path, Path, bool]:
    """DIR's self-signed certificate and key, generated the first time; (cert, key, created now)."""
    folder = Path(data_dir) / TLS_DIR
    cert, key = folder / CERT_FILE, folder / KEY_FILE
    if cert.is_file() and key.is_file():
        return cert, key, False
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    names = sorted({"localhost", socket.gethostname()})
    san = ",".join([f"DNS:{n}" for n in names] + ["IP:127.0.0.1", "IP:::1"])
    tmp_key, tmp_cert = folder / f".{KEY_FILE}.tmp", folder / f".{CERT_FILE}.tmp"
    old = os.umask(0o077)
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", str(tmp_key), "-out", str(tmp_cert), "-days", str(DAYS),
                        "-subj", f"/CN=netatlas {names[-1]}", "-addext", f"subjectAltName={san}"],
                       check=True, capture_output=True, timeout=60)
    except FileNotFoundError:
        raise TlsError("tls self-signed needs the openssl command to make the certificate") from None
    except subprocess.CalledProcessError as e:
        raise TlsError(f"openssl could not make a self-signed certificate: {e.stderr.decode(errors='replace')}") from None
    finally:
        os.umask(old)
    os.chmod(tmp_key, 0o600)
    os.chmod(tmp_cert, 0o600)
    os.replace(tmp_key, key)
    os.replace(tmp_cert, cert)
    return cert, key, True


def pinned_context(fp: str) -> ssl.SSLContext:
    """A client TLS context that accepts exactly the server certificate whose SHA-256 is ``fp``
    (no CA, no host name: the pin is the trust), checked at the end of every handshake."""
    want = normalize(fp)

    class Pinned(ssl.SSLSocket):
        def do_handshake(self, *args, **kwargs):
            super().do_handshake(*args, **kwargs)
            got = fingerprint_of_der(self.getpeercert(binary_form=True) or b"")
            if not hmac.compare_digest(got, want):
                self.close()
                raise ssl.SSLCertVerificationError(f"the server's certificate has SHA-256 fingerprint {got}, "
                                                   f"not the pinned {want} (tls_fingerprint)")

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.sslsocket_class = Pinned
    return ctx
