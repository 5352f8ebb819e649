"""Tether's wire formats written again from docs/formats.md, independently of
the Rust code: licenses, delegation certificates, key fingerprints, tokens.

Used both to check what Tether issues (decode, verify every signature) and to
build chains and tokens in Python that Tether must accept or refuse.
"""

import base64
import hashlib
import json
import struct
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

LICENSE_TAG = b"tether/license/v1\x00"
DELEGATION_TAG = b"tether/delegation/v1\x00"
PRESENCE_TAG = b"tether/presence/v1\x00"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def raw_public(key) -> bytes:
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(public: bytes) -> bytes:
    return hashlib.sha256(public).digest()


def kid(public: bytes) -> str:
    """The JWT `kid`: base64url of the first 12 bytes of the SHA-256 fingerprint."""
    return b64url(fingerprint(public)[:12])


def read_public_key(path) -> Ed25519PublicKey:
    """A Tether public key file: `Tether-*:` lines, then a SubjectPublicKeyInfo PEM block."""
    text = open(path).read()
    pem = text[text.index("-----BEGIN PUBLIC KEY-----"):]
    key = serialization.load_pem_public_key(pem.encode())
    assert isinstance(key, Ed25519PublicKey)
    return key


def public_key_pem(key) -> bytes:
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def license_pem_body(path) -> bytes:
    """The canonical license bytes of a `TETHER LICENSE` PEM file."""
    lines = open(path).read().splitlines()
    start = lines.index("-----BEGIN TETHER LICENSE-----")
    end = lines.index("-----END TETHER LICENSE-----")
    return base64.b64decode("".join(lines[start + 1:end]))


class Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("truncated")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self):
        return self.take(1)[0]

    def u32(self):
        return struct.unpack(">I", self.take(4))[0]

    def u64(self):
        return struct.unpack(">Q", self.take(8))[0]

    def str8(self):
        return self.take(self.u8()).decode()

    def list8(self):
        return [self.str8() for _ in range(self.u8())]


def str8(s: str) -> bytes:
    b = s.encode()
    assert len(b) < 256
    return bytes([len(b)]) + b


def list8(items) -> bytes:
    return bytes([len(items)]) + b"".join(str8(s) for s in items)


@dataclass
class License:
    """The license, format version 2 (docs/formats.md, "License"); version 1
    files decode too (no sequence, seats, grace or nonce period)."""
    id: bytes
    vendor: bytes
    customer: str
    serial: str
    dongle_key: bytes
    issued_at: int
    not_before: int
    not_after: int
    max_ttl: int
    features: list
    services: list
    signature: bytes = b""
    version: int = 2
    sequence: int = 1
    grace: int = 0
    nonce_period: int = 0
    seats: dict = field(default_factory=dict)

    def body(self) -> bytes:
        if self.version == 1:
            return (bytes([1]) + self.id + self.vendor + str8(self.customer)
                    + str8(self.serial) + self.dongle_key
                    + struct.pack(">QQQI", self.issued_at, self.not_before, self.not_after,
                                  self.max_ttl)
                    + list8(sorted(self.features)) + list8(sorted(self.services)))
        services = sorted(self.services)
        return (bytes([2]) + self.id + self.vendor + struct.pack(">Q", self.sequence)
                + str8(self.customer) + bytes([1]) + str8(self.serial) + self.dongle_key
                + struct.pack(">QQQIII", self.issued_at, self.not_before, self.not_after,
                              self.grace, self.max_ttl, self.nonce_period)
                + list8(sorted(self.features))
                + bytes([len(services)])
                + b"".join(str8(s) + struct.pack(">I", self.seats.get(s, 0))
                           for s in services))

    def encode(self) -> bytes:
        return self.body() + self.signature

    def signed(self, vendor: Ed25519PrivateKey) -> "License":
        self.vendor = fingerprint(raw_public(vendor))
        self.signature = vendor.sign(LICENSE_TAG + self.body())
        return self

    @staticmethod
    def decode(data: bytes) -> "License":
        r = Reader(data)
        version = r.u8()
        if version == 1:
            lic = License(id=r.take(16), vendor=r.take(32), customer=r.str8(),
                          serial=r.str8(), dongle_key=r.take(32), issued_at=r.u64(),
                          not_before=r.u64(), not_after=r.u64(), max_ttl=r.u32(),
                          features=r.list8(), services=r.list8(), version=1, sequence=0)
        elif version == 2:
            id_, vendor, sequence, customer = r.take(16), r.take(32), r.u64(), r.str8()
            if r.u8() != 1:
                raise ValueError("dongle kind")
            serial, key = r.str8(), r.take(32)
            issued, nb, na, grace, ttl, period = (r.u64(), r.u64(), r.u64(), r.u32(),
                                                  r.u32(), r.u32())
            features = r.list8()
            services, seats = [], {}
            for _ in range(r.u8()):
                name, n = r.str8(), r.u32()
                services.append(name)
                if n:
                    seats[name] = n
            lic = License(id=id_, vendor=vendor, customer=customer, serial=serial,
                          dongle_key=key, issued_at=issued, not_before=nb, not_after=na,
                          max_ttl=ttl, features=features, services=services, version=2,
                          sequence=sequence, grace=grace, nonce_period=period, seats=seats)
        else:
            raise ValueError(f"license version {version}")
        lic.signature = r.take(64)
        if r.pos != len(data):
            raise ValueError("trailing bytes")
        if lic.encode() != data:
            raise ValueError("not canonical")
        return lic


@dataclass
class Certificate:
    """The delegation certificate, format version 2 (docs/formats.md); version 1
    files decode too (no commitment, no ledger head)."""
    serial: str
    nonce: bytes
    session_key: bytes
    not_before: int
    not_after: int
    counter: int
    signature: bytes = b""
    version: int = 2
    kind: int = 1
    root: bytes = hashlib.sha256(b"").digest()
    counts: dict = field(default_factory=dict)
    ledger_seq: int = 0
    ledger_hash: bytes = bytes(32)

    def body(self) -> bytes:
        head = (str8(self.serial) + self.nonce + self.session_key
                + struct.pack(">QQI", self.not_before, self.not_after, self.counter))
        if self.version == 1:
            return bytes([1]) + head
        names = sorted(self.counts)
        return (bytes([2, self.kind]) + head + self.root + bytes([len(names)])
                + b"".join(str8(n) + struct.pack(">I", self.counts[n]) for n in names)
                + struct.pack(">Q", self.ledger_seq) + self.ledger_hash)

    def encode(self) -> bytes:
        return self.body() + self.signature

    def signed(self, dongle: Ed25519PrivateKey) -> "Certificate":
        self.signature = dongle.sign(DELEGATION_TAG + self.body())
        return self

    @staticmethod
    def decode(data: bytes) -> "Certificate":
        r = Reader(data)
        version = r.u8()
        if version == 1:
            cert = Certificate(serial=r.str8(), nonce=r.take(32), session_key=r.take(32),
                               not_before=r.u64(), not_after=r.u64(), counter=r.u32(),
                               version=1)
        elif version == 2:
            kind = r.u8()
            if kind != 1:
                raise ValueError(f"certificate kind {kind}")
            cert = Certificate(serial=r.str8(), nonce=r.take(32), session_key=r.take(32),
                               not_before=r.u64(), not_after=r.u64(), counter=r.u32(),
                               version=2, kind=kind)
            cert.root = r.take(32)
            cert.counts = {}
            for _ in range(r.u8()):
                name = r.str8()
                cert.counts[name] = r.u32()
            cert.ledger_seq, cert.ledger_hash = r.u64(), r.take(32)
        else:
            raise ValueError(f"certificate version {version}")
        cert.signature = r.take(64)
        if r.pos != len(data):
            raise ValueError("trailing bytes")
        if cert.encode() != data:
            raise ValueError("not canonical")
        return cert


def token_parts(token: str):
    """Header and claims as dicts, and the signature bytes, without verifying."""
    h, c, s = token.split(".")
    return json.loads(unb64url(h)), json.loads(unb64url(c)), unb64url(s)


def sign_compact(header: dict | bytes, claims: dict | bytes, key: Ed25519PrivateKey) -> str:
    """A compact JWS signed by hand (for inputs PyJWT will not produce, e.g.
    duplicate claims): header and claims as given, raw JSON bytes allowed."""
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    c = claims if isinstance(claims, bytes) else json.dumps(claims).encode()
    signing_input = f"{b64url(h)}.{b64url(c)}"
    return f"{signing_input}.{b64url(key.sign(signing_input.encode()))}"
