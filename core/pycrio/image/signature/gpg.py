"""GPG "simple signing" verification with Debian's gpg.

Every verification runs gpg in a fresh private homedir (mode 0700, removed
afterwards) that holds only the policy's keys: the host's keyrings and trust
database never take part, and nothing persists between pulls. gpg is run
with argument lists and a timeout; what it concluded is read from its
machine-readable status lines (``--status-fd``), never from its prose.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from pycrio.image.signature.payload import MAX_PAYLOAD_SIZE, InvalidSignature

GPG = "gpg"
TIMEOUT = 30.0
_BASE = ["--batch", "--no-tty", "--no-auto-key-locate", "--no-options", "--status-fd", "1"]


class GPGUnavailable(RuntimeError):
    """gpg is missing or failed for a reason that is not the signature's fault."""


@dataclass(frozen=True)
class Verified:
    payload: bytes
    fingerprint: str  # of the primary key that made the signature


def verify(keyrings: list[bytes], signature: bytes, *, timeout: float = TIMEOUT) -> Verified:
    """Verify an inline-signed OpenPGP message against ``keyrings`` only.

    Raises InvalidSignature (bad, unknown-key, expired or revoked signature)
    or GPGUnavailable (gpg itself cannot run or the keys cannot be read).
    """
    gpg = shutil.which(GPG)
    if gpg is None:
        raise GPGUnavailable("gpg is not installed (Debian package gnupg)")
    home = tempfile.mkdtemp(prefix="pycrio-gpg-")
    try:
        os.chmod(home, 0o700)
        trusted = _import(gpg, home, keyrings, timeout)
        sig_path = os.path.join(home, "signature")
        out_path = os.path.join(home, "payload")
        with open(sig_path, "wb") as f:
            f.write(signature)
        status = _run(
            [gpg, "--homedir", home, *_BASE, "--output", out_path, "--decrypt", sig_path],
            timeout,
        )
        fingerprint = _conclusion(status.stdout.decode("utf-8", "replace"), trusted)
        if status.returncode != 0:
            raise InvalidSignature("gpg did not accept the signature")
        with open(out_path, "rb") as f:
            payload = f.read(MAX_PAYLOAD_SIZE + 1)
        if len(payload) > MAX_PAYLOAD_SIZE:
            raise InvalidSignature(f"the signed payload is larger than {MAX_PAYLOAD_SIZE} bytes")
        return Verified(payload, fingerprint)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            argv, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as e:
        raise GPGUnavailable(f"gpg did not finish within {timeout:g}s") from e
    except OSError as e:
        raise GPGUnavailable(f"cannot run gpg: {e}") from e


def _import(gpg: str, home: str, keyrings: list[bytes], timeout: float) -> set[str]:
    """Import the policy's keys; return the fingerprints of their primary keys."""
    fingerprints: set[str] = set()
    for i, keyring in enumerate(keyrings):
        path = os.path.join(home, f"key-{i}")
        with open(path, "wb") as f:
            f.write(keyring)
        done = _run([gpg, "--homedir", home, *_BASE, "--import", path], timeout)
        found = {
            fields[3]
            for line in done.stdout.decode("utf-8", "replace").splitlines()
            if (fields := line.split())[:2] == ["[GNUPG:]", "IMPORT_OK"] and len(fields) >= 4
        }
        if not found:
            err = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise GPGUnavailable(
                f"no public key could be imported from keyring {i + 1}"
                + (f": {err[-1]}" if err else "")
            )
        fingerprints |= found
    return fingerprints


def _conclusion(status: str, trusted: set[str]) -> str:
    """The signer's primary fingerprint from gpg's status lines; raise InvalidSignature.

    gpg reports an unknown key as ERRSIG followed by NO_PUBKEY: the most
    specific line decides the message, whatever their order.
    """
    seen: dict[str, list[str]] = {}
    valid: list[list[str]] = []
    for line in status.splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[0] != "[GNUPG:]":
            continue
        seen.setdefault(fields[1], fields)
        if fields[1] == "VALIDSIG":
            valid.append(fields)

    def arg(keyword: str) -> str:
        fields = seen[keyword]
        return fields[2] if len(fields) > 2 else "?"

    if "NO_PUBKEY" in seen:
        raise InvalidSignature(
            f"signed by key {arg('NO_PUBKEY')}, which is not one of the policy's keys"
        )
    if "BADSIG" in seen:
        raise InvalidSignature("the signature does not match the signed data (BADSIG)")
    if "EXPKEYSIG" in seen:
        raise InvalidSignature(f"the signing key {arg('EXPKEYSIG')} has expired")
    if "REVKEYSIG" in seen:
        raise InvalidSignature(f"the signing key {arg('REVKEYSIG')} has been revoked")
    if "EXPSIG" in seen:
        raise InvalidSignature("the signature has expired")
    if "ERRSIG" in seen:
        raise InvalidSignature("gpg could not check the signature (ERRSIG)")
    if len(valid) != 1:
        raise InvalidSignature(
            "not a signed message" if not valid else "more than one signature in one message"
        )
    fields = valid[0]
    signing, primary = fields[2], fields[-1] if len(fields) >= 12 else fields[2]
    if primary not in trusted and signing not in trusted:
        raise InvalidSignature(f"signed by key {primary}, which is not one of the policy's keys")
    return primary
