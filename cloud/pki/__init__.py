"""The installation's device certificate authority (issue 17).

Each station and vehicle has its own X.509 certificate, CN = its device id, signed by the
installation's CA. The broker (Mosquitto, ``require_certificate`` +
``use_identity_as_username``) takes the device's identity from that certificate, so a
device can only publish under ``ks/v1/d/<its CN>/#`` and read ``ks/v1/c/<its CN>/#``.

Keys never leave where they were made: the device runs :func:`device_key` and
:func:`device_csr`, only the CSR travels, :meth:`CertificateAuthority.sign_csr` answers with
the certificate. All keys are ECDSA P-256: cheap to make (a test session makes dozens) and
supported by every TLS stack the agents and Mosquitto use.

    ca = CertificateAuthority.create("Kickstand device CA")
    ca.save(Path("/etc/kickstand/pki"))                       # ca.pem, ca.key (0600)
    key = device_key()                                        # on the device
    cert = ca.sign_csr(device_csr(key, "st-0001"), "st-0001", valid_days=365)

:func:`init_directory` writes everything a deployment's broker needs (CA, the broker's
server certificate, an empty CRL); ``python -m kickstand.cloud pki init`` runs it, and the
test harness uses the same function.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kickstand.cloud.errors import CloudError
from kickstand.protocol.errors import TopicError
from kickstand.protocol.topics import validate_device_id

#: File names inside a PKI directory (``pki init`` and the test harness write these).
CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
CRL_FILE = "crl.pem"
SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server.key"

#: An MQTT client id longer than this is refused by the CA (MQTT 3.1.1 only promises 23
#: bytes; Mosquitto takes up to 65535, the project's device ids are at most 19).
MAX_CLIENT_ID = 64
#: A certificate's notBefore is set this far in the past: a device whose clock is a little
#: behind the CA's must not see its brand-new certificate as "not yet valid".
BACKDATE = timedelta(minutes=5)

_CURVE = ec.SECP256R1()
_ACCEPTED_CURVES = ("secp256r1", "secp384r1")


class PkiError(CloudError):
    """Root of the device CA's errors."""


class CsrRefusedError(PkiError):
    """A certificate signing request the CA will not sign; ``reason`` is machine-readable."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class InvalidDeviceIdError(CsrRefusedError):
    """The device id cannot be a certificate's identity (not an MQTT client id the broker
    and the topic tree accept: empty, too long, ``/``, ``+``, ``#``, or not ``<kind>-<id>``)."""

    def __init__(self, device_id: str, why: str) -> None:
        super().__init__(f"device id {device_id!r} refused: {why}", reason="bad-device-id")
        self.device_id = device_id


class PkiMaterialError(PkiError):
    """A PKI file is missing, unreadable or not what it should be."""

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


def validate_client_id(device_id: str) -> str:
    """``device_id`` if it can be a device's MQTT client id and certificate CN, else raise.

    The broker's ACL substitutes the certificate's CN for ``%u`` in topic patterns: a CN with
    ``/`` would widen ``ks/v1/d/%u/#`` to another device's tree, ``+``/``#`` are wildcards.
    The protocol's own rule (``<kind>-<4..16 alphanumerics>``) excludes all of them; both
    are checked so the reason given is the precise one.
    """
    if not device_id:
        raise InvalidDeviceIdError(device_id, "empty")
    if len(device_id) > MAX_CLIENT_ID:
        raise InvalidDeviceIdError(device_id, f"longer than {MAX_CLIENT_ID} characters")
    for bad in ("/", "+", "#"):
        if bad in device_id:
            raise InvalidDeviceIdError(device_id, f"contains {bad!r}")
    try:
        validate_device_id(device_id)
    except TopicError as exc:
        raise InvalidDeviceIdError(device_id, exc.reason) from None
    return device_id


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _cn(name: x509.Name) -> str | None:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(values) != 1:
        return None
    value = values[0].value
    return value if isinstance(value, str) else value.decode()


def _serial() -> int:
    # 159 random bits: positive, < 2**159, as RFC 5280 asks (at most 20 octets).
    return secrets.randbits(159) | 1


#: A CRL's nextUpdate: OpenSSL refuses EVERY client certificate once the CRL it holds has
#: passed it (measured on Mosquitto 2.0.11: "certificate verify failed"): the API's keeper
#: (kickstand.cloud.devices.identity.crl_keeper) rewrites it well before.
CRL_VALID_DAYS = 30


@dataclass(frozen=True)
class CertificateAuthority:
    """The installation's device CA: a self-signed P-256 certificate and its key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(
        cls, name: str, valid_days: int = 3650, *, now: datetime | None = None
    ) -> CertificateAuthority:
        if valid_days <= 0:
            raise PkiError(f"valid_days must be positive, not {valid_days}")
        now = now or _utcnow()
        key = ec.generate_private_key(_CURVE)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Kickstand"),
                x509.NameAttribute(NameOID.COMMON_NAME, name),
            ]
        )
        public = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(public)
            .serial_number(_serial())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + timedelta(days=valid_days))
            # path_length 0: the CA signs leaf certificates only, never another CA.
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, directory: Path) -> CertificateAuthority:
        """The CA saved in ``directory`` (``ca.pem`` + ``ca.key``); checks they belong together."""
        cert = load_certificate(directory / CA_CERT_FILE)
        key = load_private_key(directory / CA_KEY_FILE)
        if cert.public_key() != key.public_key():
            raise PkiMaterialError(
                f"{directory / CA_KEY_FILE} is not the key of {directory / CA_CERT_FILE}",
                path=directory / CA_KEY_FILE,
            )
        return cls(cert, key)

    def save(self, directory: Path) -> None:
        """Write ``ca.pem`` (0644) and ``ca.key`` (0600) into ``directory`` (created 0700)."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_pem(directory / CA_CERT_FILE, self.certificate)
        write_pem(directory / CA_KEY_FILE, self.key)

    @property
    def name(self) -> str:
        return _cn(self.certificate.subject) or self.certificate.subject.rfc4514_string()

    # ------------------------------------------------------------------ issuing

    def sign_csr(
        self,
        csr: x509.CertificateSigningRequest,
        device_id: str,
        valid_days: int,
        now: datetime | None = None,
    ) -> x509.Certificate:
        """The device's certificate: CN = ``device_id``, client authentication only.

        Refuses (:class:`CsrRefusedError`) a CSR whose self-signature does not hold (it was
        not made with the key it carries), whose CN is not ``device_id``, or whose key is not
        ECDSA P-256/P-384; and a ``device_id`` that cannot be a client id. The certificate
        never outlives the CA: its notAfter is capped at the CA's.
        """
        validate_client_id(device_id)
        if valid_days <= 0:
            raise CsrRefusedError(
                f"valid_days must be positive, not {valid_days}", reason="bad-validity"
            )
        if not csr.is_signature_valid:
            raise CsrRefusedError(
                "the CSR's signature does not match its public key", reason="bad-signature"
            )
        cn = _cn(csr.subject)
        if cn != device_id:
            raise CsrRefusedError(
                f"the CSR names {cn!r}, not the device {device_id!r}", reason="cn-mismatch"
            )
        public = csr.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey) or (
            public.curve.name not in _ACCEPTED_CURVES
        ):
            raise CsrRefusedError(
                "the device key must be ECDSA P-256 or P-384", reason="bad-key-type"
            )
        now = now or _utcnow()
        return self._issue(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]),
            public,
            now=now,
            valid_days=valid_days,
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        )

    def issue_server(
        self, hostnames: list[str], valid_days: int, *, now: datetime | None = None
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """The broker's server certificate and key (made here: the broker has no enrolment).

        ``hostnames`` go into the subjectAltName (IP literals as IP addresses): the agents
        verify the broker's name against them, so list every name devices connect to.
        """
        if not hostnames:
            raise PkiError("a server certificate needs at least one host name")
        key = ec.generate_private_key(_CURVE)
        names: list[x509.GeneralName] = []
        for host in hostnames:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        cert = self._issue(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]),
            key.public_key(),
            now=now or _utcnow(),
            valid_days=valid_days,
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            san=x509.SubjectAlternativeName(names),
        )
        return cert, key

    def issue_service(
        self, name: str, valid_days: int, *, now: datetime | None = None
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A client certificate for a cloud service (CN = ``name``), key made here."""
        if not name or any(c in name for c in "/+#"):
            raise PkiError(f"service name {name!r} cannot be an MQTT identity")
        key = ec.generate_private_key(_CURVE)
        cert = self._issue(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]),
            key.public_key(),
            now=now or _utcnow(),
            valid_days=valid_days,
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        )
        return cert, key

    def _issue(
        self,
        subject: x509.Name,
        public: ec.EllipticCurvePublicKey,
        *,
        now: datetime,
        valid_days: int,
        usage: x509.ObjectIdentifier,
        san: x509.SubjectAlternativeName | None = None,
    ) -> x509.Certificate:
        if valid_days <= 0:
            raise PkiError(f"valid_days must be positive, not {valid_days}")
        not_after = min(now + timedelta(days=valid_days), self.certificate.not_valid_after_utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public)
            .serial_number(_serial())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=usage == ExtendedKeyUsageOID.SERVER_AUTH,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(self._authority_key_id(), critical=False)
        )
        if san is not None:
            builder = builder.add_extension(san, critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def _authority_key_id(self) -> x509.AuthorityKeyIdentifier:
        ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)

    def crl(
        self,
        revoked: Iterable[tuple[int, datetime]],
        next_update_days: int = CRL_VALID_DAYS,
        *,
        now: datetime | None = None,
        number: int | None = None,
    ) -> x509.CertificateRevocationList:
        """The CRL of ``revoked`` (certificate serial, revocation time).

        Mosquitto checks client certificates against it at each TLS handshake (``crlfile``;
        reread when the broker reloads). ``number`` (the CRL number extension) defaults to the
        issue time in seconds, so a later CRL always has a larger number.
        """
        now = now or _utcnow()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(now - BACKDATE)
            .next_update(now + timedelta(days=next_update_days))
            .add_extension(
                x509.CRLNumber(number if number is not None else int(now.timestamp())),
                critical=False,
            )
            .add_extension(self._authority_key_id(), critical=False)
        )
        for serial, when in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(when if when.tzinfo else when.replace(tzinfo=UTC))
                .build()
            )
        return builder.sign(self.key, hashes.SHA256())

    def verify(self, certificate: x509.Certificate) -> bool:
        """Whether ``certificate`` was signed by this CA (signature only; not dates or CRL)."""
        if certificate.issuer != self.certificate.subject:
            return False
        try:
            certificate.verify_directly_issued_by(self.certificate)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True


# ---------------------------------------------------------------------- device side


def device_key() -> ec.EllipticCurvePrivateKey:
    """A new device key (P-256). Made on the device; only its CSR leaves it."""
    return ec.generate_private_key(_CURVE)


def device_csr(key: ec.EllipticCurvePrivateKey, device_id: str) -> x509.CertificateSigningRequest:
    """The CSR a device sends to be certified as ``device_id`` (signed with its own key)."""
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
        .sign(key, hashes.SHA256())
    )


def certificate_cn(certificate: x509.Certificate) -> str | None:
    """The certificate's single CN (the device id of a device certificate), or None."""
    return _cn(certificate.subject)


# ---------------------------------------------------------------------- PEM files

PemObject = (
    x509.Certificate
    | x509.CertificateSigningRequest
    | x509.CertificateRevocationList
    | ec.EllipticCurvePrivateKey
)


def pem(obj: PemObject) -> bytes:
    """PEM bytes of a certificate, CSR, CRL or (unencrypted PKCS#8) private key."""
    if isinstance(obj, ec.EllipticCurvePrivateKey):
        return obj.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    return obj.public_bytes(serialization.Encoding.PEM)


def write_pem(path: Path, obj: PemObject) -> Path:
    """Write ``obj`` as PEM, atomically; a private key gets mode 0600 from its first byte."""
    mode = 0o600 if isinstance(obj, ec.EllipticCurvePrivateKey) else 0o644
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, pem(obj))
        os.fsync(fd)
    finally:
        os.close(fd)
    # rename: the broker rereading crl.pem on reload never sees half a file.
    os.replace(tmp, path)
    return path


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise PkiMaterialError(f"cannot read {path}: {exc.strerror}", path=path) from None


def load_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(_read(path))
    except ValueError as exc:
        raise PkiMaterialError(f"{path} is not a PEM certificate: {exc}", path=path) from None


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(_read(path), password=None)
    except (ValueError, TypeError) as exc:
        raise PkiMaterialError(f"{path} is not an unencrypted PEM key: {exc}", path=path) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiMaterialError(f"{path} is not an ECDSA key", path=path)
    return key


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    """A CSR from PEM (or DER) bytes; :class:`CsrRefusedError` if it is neither."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except ValueError as exc:
        raise CsrRefusedError(f"not a CSR: {exc}", reason="malformed") from None


def load_crl(path: Path) -> x509.CertificateRevocationList:
    try:
        return x509.load_pem_x509_crl(_read(path))
    except ValueError as exc:
        raise PkiMaterialError(f"{path} is not a PEM CRL: {exc}", path=path) from None


# ---------------------------------------------------------------------- a broker's set


@dataclass(frozen=True)
class BrokerMaterial:
    """The files a broker's TLS device listener needs (Mosquitto's option in brackets)."""

    directory: Path
    ca_file: Path  # cafile: the device CA, also what agents verify the broker against
    cert_file: Path  # certfile: the broker's server certificate
    key_file: Path  # keyfile
    crl_file: Path  # crlfile: revoked device certificates

    @classmethod
    def at(cls, directory: Path) -> BrokerMaterial:
        return cls(
            directory,
            directory / CA_CERT_FILE,
            directory / SERVER_CERT_FILE,
            directory / SERVER_KEY_FILE,
            directory / CRL_FILE,
        )


def init_directory(
    directory: Path,
    broker_hosts: list[str],
    *,
    ca: CertificateAuthority | None = None,
    ca_name: str = "Kickstand device CA",
    ca_valid_days: int = 3650,
    server_valid_days: int = 825,
    force: bool = False,
) -> BrokerMaterial:
    """CA (new unless ``ca`` is given), the broker's server certificate and an empty CRL.

    Refuses to overwrite an existing CA unless ``force``: a new CA would orphan every device
    certificate in the field.
    """
    material = BrokerMaterial.at(directory)
    if not force and (material.ca_file.exists() or (directory / CA_KEY_FILE).exists()):
        raise PkiMaterialError(
            f"{directory} already holds a CA; replacing it would orphan every device "
            "certificate (pass force to do it anyway)",
            path=material.ca_file,
        )
    ca = ca or CertificateAuthority.create(ca_name, ca_valid_days)
    ca.save(directory)
    server_cert, server_key = ca.issue_server(broker_hosts, server_valid_days)
    write_pem(material.cert_file, server_cert)
    write_pem(material.key_file, server_key)
    write_pem(material.crl_file, ca.crl([]))
    return material


__all__ = [
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "CRL_FILE",
    "CRL_VALID_DAYS",
    "MAX_CLIENT_ID",
    "SERVER_CERT_FILE",
    "SERVER_KEY_FILE",
    "BrokerMaterial",
    "CertificateAuthority",
    "CsrRefusedError",
    "InvalidDeviceIdError",
    "PkiError",
    "PkiMaterialError",
    "certificate_cn",
    "device_csr",
    "device_key",
    "init_directory",
    "load_certificate",
    "load_crl",
    "load_csr",
    "load_private_key",
    "pem",
    "validate_client_id",
    "write_pem",
]
