"""Interoperability with an independent JWT implementation (PyJWT), both ways.

1. Tokens Tether issues verify in PyJWT with the session key taken from the
   token's own delegation certificate, with audience, issuer and required
   claims checked; and the chain behind them (license under the vendor key,
   certificate under the licensed dongle key) verifies in Python too.
2. Tokens forged in Python are refused by `tether verify`, each for its own
   reason; and a chain built entirely in Python, from docs/formats.md, is
   accepted when it should be, so the refusals are about the forgery and not
   about Python's encodings.
"""

import base64
import hmac
import hashlib
import json
import struct
import time

import jwt
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from conftest import SERIAL, SERVICE
from tether_formats import (DELEGATION_TAG, LICENSE_TAG, PRESENCE_TAG, Certificate, License,
                            b64url, fingerprint, kid, license_pem_body, public_key_pem,
                            raw_public, read_public_key, sign_compact, token_parts, unb64url)

ISSUER = f"tether:{SERIAL}"
REQUIRED = ["iss", "sub", "aud", "iat", "nbf", "exp", "jti"]


def session_key_of(token: str) -> Ed25519PublicKey:
    """The session public key certified by the token's `dcert` claim (unverified)."""
    claims = jwt.decode(token, options={"verify_signature": False})
    cert = Certificate.decode(unb64url(claims["dcert"]))
    return Ed25519PublicKey.from_public_bytes(cert.session_key)


def refused(site, token, reason, **kw):
    """`tether verify` refuses `token` and says `reason`."""
    proc = site.verify(token, **kw)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"tether verify accepted a forged token:\n{out}"
    assert "token refused" in out and reason in out, f"expected {reason!r}, got:\n{out}"
    return out


def accepted(site, token, **kw):
    proc = site.verify(token, **kw)
    assert proc.returncode == 0, f"tether verify refused:\n{proc.stdout}{proc.stderr}"
    assert proc.stdout.startswith("valid token")
    return proc.stdout


# --- 1. Tether -> PyJWT -----------------------------------------------------------------------


def test_tether_token_verifies_in_pyjwt(site):
    token = site.token()
    key = session_key_of(token)
    claims = jwt.decode(token, key, algorithms=["EdDSA"], audience=SERVICE, issuer=ISSUER,
                        options={"require": REQUIRED, "strict_aud": True})
    assert claims["sub"] == claims["aud"] == SERVICE
    assert claims["iat"] <= time.time() + 5 <= claims["exp"] + 10
    assert 0 < claims["exp"] - claims["iat"] <= 300
    header = jwt.get_unverified_header(token)
    assert header == {"typ": "JWT", "alg": "EdDSA", "kid": kid(raw_public(key))}
    # And Tether agrees.
    accepted(site, token)


def test_pyjwt_checks_audience_issuer_and_key(site):
    token = site.token()
    key = session_key_of(token)
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(token, key, algorithms=["EdDSA"], audience="muxer", issuer=ISSUER)
    with pytest.raises(jwt.InvalidIssuerError):
        jwt.decode(token, key, algorithms=["EdDSA"], audience=SERVICE, issuer="tether:TD-OTHER")
    vendor = read_public_key(site.vendor_pub)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, vendor, algorithms=["EdDSA"], audience=SERVICE, issuer=ISSUER)
    with pytest.raises(jwt.InvalidAlgorithmError):
        jwt.decode(token, key, algorithms=["ES256"], audience=SERVICE)


def test_tether_chain_verifies_in_python(site):
    """License and certificate claims decode per docs/formats.md and every
    signature in them verifies: vendor -> license -> dongle -> certificate -> session."""
    token = site.token()
    claims = jwt.decode(token, options={"verify_signature": False})
    lic_bytes = unb64url(claims["lic"])
    assert lic_bytes == license_pem_body(site.license), "lic is not the license file's bytes"
    lic = License.decode(lic_bytes)
    vendor = read_public_key(site.vendor_pub)
    assert lic.vendor == fingerprint(raw_public(vendor))
    vendor.verify(lic.signature, LICENSE_TAG + lic.body())
    assert (lic.serial, lic.services, lic.features, lic.max_ttl) == \
        (SERIAL, ["backend", "muxer"], ["mux"], 300)
    assert lic.dongle_key == raw_public(read_public_key(site.dongle_pub))

    cert = Certificate.decode(unb64url(claims["dcert"]))
    dongle = Ed25519PublicKey.from_public_bytes(lic.dongle_key)
    dongle.verify(cert.signature, DELEGATION_TAG + cert.body())
    with pytest.raises(InvalidSignature):  # domain separation: not a presence proof
        dongle.verify(cert.signature, PRESENCE_TAG + cert.body())
    assert cert.serial == SERIAL and cert.counter >= 1
    assert cert.not_before - 5 <= claims["iat"] and claims["exp"] <= cert.not_after + 5


def test_nonce_is_echoed(site):
    token = site.token(nonce="py-nonce-1")
    claims = jwt.decode(token, session_key_of(token), algorithms=["EdDSA"], audience=SERVICE)
    assert claims["nonce"] == "py-nonce-1"
    accepted(site, token, nonce="py-nonce-1")
    refused(site, token, "does not echo our nonce", nonce="py-nonce-2")


# --- 2. Python -> Tether: forgeries over the real chain ----------------------------------------


@pytest.fixture
def real(site):
    """A fresh real token: (token, header, claims)."""
    token = site.token()
    header, claims, _ = token_parts(token)
    return token, header, claims


def test_uncertified_key_with_real_claims_is_refused(site, real):
    _, header, claims = real
    rogue = Ed25519PrivateKey.generate()
    # Claiming the certified session key's kid: the signature gives it away.
    forged = jwt.encode(claims, rogue, algorithm="EdDSA", headers={"kid": header["kid"]})
    refused(site, forged, "bad token signature")
    # Naming its own key: not the certified one.
    forged = jwt.encode(claims, rogue, algorithm="EdDSA", headers={"kid": kid(raw_public(rogue))})
    refused(site, forged, "kid does not name the certified session key")
    # Without a kid.
    refused(site, jwt.encode(claims, rogue, algorithm="EdDSA"),
            "kid does not name the certified session key")


def test_alg_none_is_refused(site, real):
    _, _, claims = real
    forged = jwt.encode(claims, None, algorithm="none")
    assert jwt.get_unverified_header(forged)["alg"] == "none"
    refused(site, forged, 'unsupported algorithm "none"')
    # Some verifiers take a missing signature part as "none".
    refused(site, forged.rstrip("."), "not a compact JWS")


def test_hs256_with_the_vendor_public_key_is_refused(site, real):
    _, header, claims = real
    vendor_raw = raw_public(read_public_key(site.vendor_pub))
    forged = jwt.encode(claims, vendor_raw, algorithm="HS256", headers={"kid": header["kid"]})
    refused(site, forged, 'unsupported algorithm "HS256"')
    # The PEM text of vendor.pub as the HMAC secret (PyJWT refuses to do this itself).
    pem = site.vendor_pub.read_bytes()
    h = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": header["kid"]}).encode())
    c = b64url(json.dumps(claims).encode())
    mac = hmac.new(pem, f"{h}.{c}".encode(), hashlib.sha256).digest()
    refused(site, f"{h}.{c}.{b64url(mac)}", 'unsupported algorithm "HS256"')
    # And the EdDSA header over an HMAC signature: wrong length for Ed25519.
    h = b64url(json.dumps(header).encode())
    mac = hmac.new(vendor_raw, f"{h}.{c}".encode(), hashlib.sha256).digest()
    refused(site, f"{h}.{c}.{b64url(mac)}", "signature is not 64 bytes")


def test_payload_modified_after_signing_is_refused(site, real):
    token, _, claims = real
    h, _, s = token.split(".")
    for change in ({"exp": claims["exp"] + 3600}, {"aud": "muxer", "sub": "muxer"},
                   {"jti": "replayed"}, {"nonce": "added"}):
        tampered = b64url(json.dumps({**claims, **change}, separators=(",", ":")).encode())
        refused(site, f"{h}.{tampered}.{s}", "bad token signature",
                service=change.get("aud", SERVICE))
    # The header too: another kid.
    header = {"typ": "JWT", "alg": "EdDSA", "kid": "AAAAAAAAAAAAAAAA"}
    refused(site, f"{b64url(json.dumps(header).encode())}.{token.split('.')[1]}.{s}",
            "kid does not name the certified session key")


def test_signature_bytes_tampered_or_reencoded_are_refused(site, real):
    token, _, _ = real
    h, c, s = token.split(".")
    sig = bytearray(unb64url(s))
    sig[5] ^= 0x01
    refused(site, f"{h}.{c}.{b64url(bytes(sig))}", "bad token signature")
    # Padded (non-canonical) base64 of the right signature.
    padded = base64.urlsafe_b64encode(unb64url(s)).decode()
    assert padded.endswith("=")
    refused(site, f"{h}.{c}.{padded}", "signature is not base64url")
    # Standard (not URL-safe) alphabet for the claims.
    std = base64.b64encode(unb64url(c)).decode().rstrip("=")
    if std != c:
        refused(site, f"{h}.{std}.{s}", "claims are not base64url")


def test_real_token_for_another_service_is_refused(site, real):
    token, _, _ = real
    refused(site, token, 'token is for "backend", not "muxer"', service="muxer")


def test_huge_token_is_refused(site, real):
    _, header, claims = real
    forged = jwt.encode({**claims, "pad": "x" * 9000}, Ed25519PrivateKey.generate(),
                        algorithm="EdDSA", headers={"kid": header["kid"]})
    refused(site, forged, "token too large")


def test_certificate_from_another_dongle_key_is_refused(site, real):
    """A certificate for a Python session key under the real serial, signed by
    a dongle key that is not the licensed one."""
    _, _, claims = real
    session, fake_dongle = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    now = int(time.time())
    cert = Certificate(SERIAL, b"\x00" * 32, raw_public(session), now - 60, now + 300, 1)
    cert.signed(fake_dongle)
    forged = jwt.encode({**claims, "dcert": b64url(cert.encode())}, session, algorithm="EdDSA",
                        headers={"kid": kid(raw_public(session))})
    refused(site, forged, "certificate is not signed by the licensed dongle")


# --- 2b. Python -> Tether: a whole chain made in Python ----------------------------------------


class PyChain:
    """Vendor, dongle and session keys made in Python; license and certificate
    encoded from docs/formats.md; tokens signed by PyJWT."""

    def __init__(self, root, serial=SERIAL, cert_window=(-60, 300), max_ttl=300):
        now = int(time.time())
        self.vendor, self.dongle, self.session = (Ed25519PrivateKey.generate() for _ in range(3))
        self.vendor_pub = root / "py-vendor.pub"
        self.vendor_pub.write_bytes(public_key_pem(self.vendor))
        self.license = License(id=bytes(range(16)), vendor=b"", customer="Python Corp",
                               serial=serial, dongle_key=raw_public(self.dongle),
                               issued_at=now - 3600, not_before=now - 3600,
                               not_after=now + 86400, max_ttl=max_ttl, features=["mux"],
                               services=["backend", "muxer"]).signed(self.vendor)
        self.cert = Certificate(serial, b"\x42" * 32, raw_public(self.session),
                                now + cert_window[0], now + cert_window[1], 1).signed(self.dongle)
        self.now = now

    def claims(self, **change):
        c = {"iss": f"tether:{self.license.serial}", "sub": SERVICE, "aud": SERVICE,
             "iat": self.now - 10, "nbf": self.now - 10, "exp": self.now + 120,
             "jti": "py-" + b64url(self.now.to_bytes(8, "big")),
             "lic": b64url(self.license.encode()), "dcert": b64url(self.cert.encode())}
        c.update(change)
        return {k: v for k, v in c.items() if v is not None}

    def token(self, **change):
        return jwt.encode(self.claims(**change), self.session, algorithm="EdDSA",
                          headers={"kid": kid(raw_public(self.session))})


@pytest.fixture
def py(tmp_path):
    return PyChain(tmp_path)


def test_python_chain_is_accepted(site, py):
    """Control: Python's encodings are right, so the refusals below are about the forgeries."""
    out = accepted(site, py.token(), vendor_pub=py.vendor_pub)
    assert f"from tether:{SERIAL}" in out
    accepted(site, py.token(aud="muxer", sub="muxer"), vendor_pub=py.vendor_pub, service="muxer")
    accepted(site, py.token(nonce="n-1"), vendor_pub=py.vendor_pub, nonce="n-1")


def test_python_chain_under_the_real_vendor_key_is_refused(site, py):
    refused(site, py.token(), "license is not signed by the trusted vendor key")


def test_right_session_key_with_bad_claims_is_refused(site, py):
    """Signed by the certified session key, so only the claims are wrong."""
    now = py.now
    cases = [
        (py.token(aud="muxer", sub="muxer"), 'token is for "muxer", not "backend"', SERVICE),
        (py.token(sub="muxer"), 'token is for "backend", not "backend"', SERVICE),
        (py.token(aud="reports", sub="reports"), 'license does not allow service "reports"',
         "reports"),
        (py.token(iss="tether:TD-OTHER"), 'issuer "tether:TD-OTHER" does not match', SERVICE),
        (py.token(iat=now - 50, nbf=now - 50, exp=now - 20), "token expired", SERVICE),
        (py.token(nbf=now + 100, exp=now + 200), "token not valid yet", SERVICE),
        (py.token(exp=now + 1000), "token lifetime exceeds", SERVICE),
        (py.token(iat=now - 100), "token lifetime exceeds", SERVICE),  # before the certificate
        (py.token(iat=now + 20, nbf=now + 20, exp=now + 310), "token lifetime exceeds",
         SERVICE),  # ends after the certificate
        (py.token(exp=now - 20), "token lifetime exceeds", SERVICE),  # exp before iat
        (py.token(jti=None), "claims missing, repeated or of the wrong type", SERVICE),
        (py.token(exp=str(now + 100)), "claims missing, repeated or of the wrong type", SERVICE),
        (py.token(lic=None), "claims missing, repeated or of the wrong type", SERVICE),
    ]
    for token, reason, service in cases:
        refused(site, token, reason, vendor_pub=py.vendor_pub, service=service)


def test_duplicate_claims_are_refused(site, py):
    claims = json.dumps(py.claims())
    duplicated = claims[:-1] + ', "aud": "muxer"}'
    header = {"typ": "JWT", "alg": "EdDSA", "kid": kid(raw_public(py.session))}
    forged = sign_compact(header, duplicated.encode(), py.session)
    refused(site, forged, "claims missing, repeated or of the wrong type",
            vendor_pub=py.vendor_pub)
    # Two alg members in the header.
    header = b'{"alg":"EdDSA","alg":"none","kid":"%s"}' % kid(raw_public(py.session)).encode()
    forged = sign_compact(header, claims.encode(), py.session)
    refused(site, forged, "header is not a JSON object with alg", vendor_pub=py.vendor_pub)


def test_certificate_for_another_dongle_serial_is_refused(site, tmp_path):
    py = PyChain(tmp_path)
    cert = Certificate("TD-SOMEONE-ELSE", b"\x42" * 32, raw_public(py.session),
                       py.now - 60, py.now + 300, 1).signed(py.dongle)
    refused(site, py.token(dcert=b64url(cert.encode())), "certificate is from another dongle",
            vendor_pub=py.vendor_pub)


def test_certificate_too_long_or_expired_is_refused(site, tmp_path):
    long = PyChain(tmp_path, cert_window=(-60, 3600))
    refused(site, long.token(), "window of 3660 s is longer than allowed",
            vendor_pub=long.vendor_pub)
    old = PyChain(tmp_path, cert_window=(-900, -300))
    refused(site, old.token(iat=old.now - 600, nbf=old.now - 600, exp=old.now - 400),
            "delegation certificate expired", vendor_pub=old.vendor_pub)


def test_tampered_license_is_refused(site, py):
    lic = bytearray(py.license.encode())
    # The low byte of issued-at, wherever the format puts it (v2 moved it).
    issued_at = lic.index(struct.pack(">Q", py.license.issued_at)) + 7
    for at in (40, issued_at, len(lic) - 1):  # vendor fingerprint, issued-at, signature
        changed = bytearray(lic)
        changed[at] ^= 0x01
        refused(site, py.token(lic=b64url(bytes(changed))),
                "license is not signed by the trusted vendor key", vendor_pub=py.vendor_pub)
    refused(site, py.token(lic=b64url(bytes(lic[:-1]))), "lic is not a license",
            vendor_pub=py.vendor_pub)
