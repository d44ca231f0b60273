"""Where signatures come from: lookaside stores, the registry API, sigstore attachments.

- GPG (simple signing) signatures: the registry's signature API when its
  ``/v2/`` answer says ``X-Registry-Supports-Signatures: 1``, else the
  lookaside store registries.d names for the image (``file://`` or
  ``http(s)://``, ``signature-1``, ``signature-2``, ... until one is missing).
- Sigstore signatures: the ``sha256-<hex>.sig`` attachment in the repository
  the manifest came from, when registries.d enables use-sigstore-attachments.

Fetching is all this module does: nothing it returns is trusted yet.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import urllib.parse
from collections.abc import Callable

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from pycrio.errors import DeadlineExceeded, NotFound, Unavailable
from pycrio.image.reference import Reference
from pycrio.image.registries_d import RegistriesD, lookaside_url
from pycrio.image.registry_client import RegistryClient
from pycrio.image.signature.payload import MAX_PAYLOAD_SIZE, InvalidSignature
from pycrio.image.signature.sigstore import (
    MAX_SIGNATURES,
    SigstoreSignature,
    attachment_layers,
    attachment_tag,
)

log = logging.getLogger("pycrio.image")

LOOKASIDE_TIMEOUT = urllib3.Timeout(connect=10.0, read=30.0)
# A static web server or a CDN may redirect (to https, to storage): follow a few.
_http = urllib3.PoolManager(
    timeout=LOOKASIDE_TIMEOUT,
    retries=urllib3.Retry(total=4, connect=1, read=0, status=0, redirect=3),
    maxsize=4,
)


def parse_extension_signatures(body: bytes) -> list[bytes]:
    """Signatures from the registry API's ``{"signatures": [...]}`` answer.

    Only entries with ``schemaVersion`` 2 and ``type`` "atomic" are simple
    signing signatures; others are skipped, as containers/image does.
    """
    try:
        obj = json.loads(body)
    except (UnicodeDecodeError, ValueError) as e:
        raise InvalidSignature(f"the registry's signature list is not JSON: {e}") from e
    entries = obj.get("signatures") if isinstance(obj, dict) else None
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise InvalidSignature("the registry's signature list has no signatures array")
    result = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        if entry.get("schemaVersion") != 2 or entry.get("type") != "atomic":
            continue
        content = entry.get("content")
        if not isinstance(content, str):
            raise InvalidSignature("a signature in the registry's list has no content")
        try:
            result.append(base64.b64decode(content, validate=True))
        except (binascii.Error, ValueError) as e:
            raise InvalidSignature(f"a signature in the registry's list is not base64: {e}") from e
    return result[:MAX_SIGNATURES]


class SignatureSource:
    """The signatures of one manifest, fetched on first use and kept for the pull."""

    def __init__(
        self,
        ref: Reference,
        client: RegistryClient,
        repo: str,
        manifest_digest: str,
        registries_d: RegistriesD,
    ) -> None:
        self.ref = ref  # the image as the user named it (lookaside and registries.d key)
        self.client = client  # the registry or mirror the manifest came from
        self.repo = repo
        self.digest = manifest_digest
        self.registries_d = registries_d
        self._gpg: list[bytes] | None = None
        self._sigstore: list[SigstoreSignature] | None = None
        self.gpg_where = ""
        self.sigstore_where = ""

    def gpg(self) -> list[bytes]:
        if self._gpg is None:
            self.client.ping()
            if self.client.supports_signatures:
                self.gpg_where = f"the signature API of registry {self.client.registry}"
                body = self.client.get_extension_signatures(self.repo, self.digest)
                self._gpg = parse_extension_signatures(body)
            else:
                base = self.registries_d.lookaside(self.ref)
                self.gpg_where = f"lookaside {lookaside_url(base, self.ref, self.digest, 1)}"
                self._gpg = read_lookaside(base, self.ref, self.digest)
        return self._gpg

    def sigstore(self) -> list[SigstoreSignature]:
        if self._sigstore is None:
            tag = attachment_tag(self.digest)
            self.sigstore_where = f"{self.client.registry}/{self.repo}:{tag}"
            self._sigstore = []
            if self.registries_d.use_sigstore_attachments(self.ref):
                self._sigstore = self._attachments(tag)
        return self._sigstore

    def _attachments(self, tag: str) -> list[SigstoreSignature]:
        try:
            body, _, _ = self.client.get_manifest(self.repo, tag)
        except NotFound:
            return []
        result = []
        for layer in attachment_layers(body):
            if layer.size > MAX_PAYLOAD_SIZE:
                raise InvalidSignature(f"signature payload {layer.digest} is too large")
            try:
                payload = self.client.get_blob_bytes(
                    self.repo, layer.digest, max_size=MAX_PAYLOAD_SIZE
                )
            except NotFound as e:
                raise InvalidSignature(
                    f"the payload {layer.digest} of a signature in {self.sigstore_where} is "
                    "missing from the registry"
                ) from e
            result.append(
                SigstoreSignature(
                    payload, layer.signature, layer.certificate, layer.chain, layer.bundle
                )
            )
        return result


def read_lookaside(base: str, ref: Reference, digest: str) -> list[bytes]:
    """signature-1, signature-2, ... from a file:// or http(s):// store, until one is missing."""
    scheme = urllib.parse.urlsplit(base).scheme
    read: Callable[[str], bytes | None] = _read_file if scheme == "file" else _read_http
    result = []
    for index in range(1, MAX_SIGNATURES + 1):
        data = read(lookaside_url(base, ref, digest, index))
        if data is None:
            break
        result.append(data)
    return result


def _read_file(url: str) -> bytes | None:
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PAYLOAD_SIZE + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise Unavailable(f"cannot read signature {path}: {e.strerror or e}") from e
    if len(data) > MAX_PAYLOAD_SIZE:
        raise InvalidSignature(f"signature {path} is larger than {MAX_PAYLOAD_SIZE} bytes")
    return data


def _read_http(url: str) -> bytes | None:
    try:
        resp = _http.request("GET", url, preload_content=False)
    except Urllib3Error as e:
        if isinstance(getattr(e, "reason", None), urllib3.exceptions.ReadTimeoutError):
            raise DeadlineExceeded(f"lookaside {url} did not answer in time") from e
        raise Unavailable(f"cannot reach signature lookaside {url}: {e}") from e
    try:
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise Unavailable(f"signature lookaside {url} answered {resp.status} {resp.reason}")
        data = resp.read(MAX_PAYLOAD_SIZE + 1)
    except Urllib3Error as e:
        raise Unavailable(f"reading signature {url} failed: {e}") from e
    finally:
        resp.release_conn()
    if len(data) > MAX_PAYLOAD_SIZE:
        raise InvalidSignature(f"signature {url} is larger than {MAX_PAYLOAD_SIZE} bytes")
    return data
