"""Keyless (Fulcio) signatures: a short-lived certificate instead of a known key.

The policy names the Fulcio CA, the OIDC issuer and the signer's e-mail. The
certificate must chain to that CA at the time Rekor logged the signature
(the certificate lives minutes, the image years), be meant for code signing,
and carry the issuer (Fulcio's extension 1.3.6.1.4.1.57264.1.8, or the older
.1.1) and the e-mail (a SAN). Path building and signature checks are the
``cryptography`` library's X.509 verifier.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError

from pycrio.image.signature.payload import InvalidSignature
from pycrio.image.signature.sigstore import PublicKey

OID_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
OID_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")


def load_certificates(data: bytes, source: str) -> list[x509.Certificate]:
    """Every PEM certificate in ``data``; ValueError naming ``source`` when there is none."""
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise ValueError(f"{source}: not readable PEM certificates: {e}") from e
    return certs


def verify_certificate(
    certificate_pem: bytes,
    chain_pem: bytes | None,
    roots: list[x509.Certificate],
    at: int,
    oidc_issuer: str,
    subject_email: str,
) -> PublicKey:
    """Verify a Fulcio leaf at Unix time ``at``; return its public key. Raise InvalidSignature."""
    try:
        leaves = x509.load_pem_x509_certificates(certificate_pem)
    except ValueError as e:
        raise InvalidSignature(f"the signing certificate is not readable: {e}") from e
    if len(leaves) != 1:
        raise InvalidSignature(f"expected one signing certificate, found {len(leaves)}")
    leaf = leaves[0]
    intermediates: list[x509.Certificate] = []
    if chain_pem:
        try:
            intermediates = x509.load_pem_x509_certificates(chain_pem)
        except ValueError as e:
            raise InvalidSignature(f"the certificate chain is not readable: {e}") from e
    when = datetime.datetime.fromtimestamp(at, tz=datetime.UTC)
    verifier = (
        PolicyBuilder()
        .store(Store(roots))
        .time(when)
        # Fulcio leaves have no subject, a critical e-mail SAN and the code
        # signing EKU: the web PKI end-entity profile refuses all three, so the
        # leaf's extensions are checked below instead.
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all()
        )
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, intermediates)
    except VerificationError as e:
        expired = leaf.not_valid_after_utc < when or leaf.not_valid_before_utc > when
        why = (
            f"the signing certificate had expired or was not yet valid when Rekor logged "
            f"the signature ({when:%Y-%m-%dT%H:%M:%SZ}; "
            f"valid {leaf.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ} to "
            f"{leaf.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ})"
            if expired
            else f"the signing certificate does not chain to the configured Fulcio CA: {e}"
        )
        raise InvalidSignature(why) from e
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as e:
        raise InvalidSignature("the signing certificate has no extended key usage") from e
    if ExtendedKeyUsageOID.CODE_SIGNING not in usages:
        raise InvalidSignature("the signing certificate is not for code signing")
    issuer = certificate_issuer(leaf)
    if issuer != oidc_issuer:
        raise InvalidSignature(
            f"the certificate's OIDC issuer is {issuer!r}, the policy wants {oidc_issuer!r}"
        )
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        emails = san.get_values_for_type(x509.RFC822Name)
    except x509.ExtensionNotFound:
        emails = []
    if subject_email not in emails:
        raise InvalidSignature(
            f"the certificate is for {emails or 'no e-mail'}, the policy wants {subject_email!r}"
        )
    key = leaf.public_key()
    return key  # type: ignore[return-value]


def certificate_issuer(cert: x509.Certificate) -> str:
    """The OIDC issuer Fulcio recorded; raise InvalidSignature when it is absent."""
    for ext in cert.extensions:
        if ext.oid == OID_ISSUER_V2:
            return _der_utf8(ext.value.value)
    for ext in cert.extensions:
        if ext.oid == OID_ISSUER_V1:
            return ext.value.value.decode("utf-8", errors="replace")
    raise InvalidSignature("the signing certificate carries no Fulcio OIDC issuer extension")


def _der_utf8(der: bytes) -> str:
    """A DER UTF8String (tag 12), as in Fulcio's v2 extensions."""
    if len(der) < 2 or der[0] != 0x0C:
        raise InvalidSignature("the Fulcio issuer extension is not a UTF8String")
    length, offset = der[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or len(der) < 2 + count:
            raise InvalidSignature("the Fulcio issuer extension is malformed")
        length = int.from_bytes(der[2 : 2 + count], "big")
        offset = 2 + count
    if len(der) != offset + length:
        raise InvalidSignature("the Fulcio issuer extension is malformed")
    return der[offset:].decode("utf-8", errors="replace")
