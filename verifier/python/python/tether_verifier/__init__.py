"""Verify Tether license tokens offline, and keep a service licensed.

Bindings of the Rust ``tether-verifier`` crate (the same code the Rust and C
consumers run, so every binding accepts and refuses the same tokens for the
same reasons: ``tests/conformance/vectors.json``).

Units: every time is UNIX seconds (an ``int``; a ``float`` is truncated),
every leeway and interval is seconds.

Verify one token::

    from tether_verifier import Verifier, TokenExpired, TetherError
    verifier = Verifier(open("vendor.pub").read(), service="backend", features=["mux"])
    try:
        claims = verifier.verify(token)
    except TetherError as e:
        print("refused:", e.code, e)

Stay licensed (a background thread fetches, verifies and renews tokens)::

    with LicenseWatch("http://127.0.0.1:7443", "backend.secret", "backend",
                      vendor_pub="vendor.pub") as watch:
        if watch.is_licensed():
            do_the_work()
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Optional, Tuple, Type, Union

from . import _native

__all__ = [
    "Claims",
    "Verifier",
    "LicenseWatch",
    "LicenseState",
    "TetherError",
    "TokenRefused",
    "MalformedToken",
    "UnsupportedAlgorithm",
    "BadHeader",
    "UntrustedChain",
    "BadSignature",
    "TokenExpired",
    "TokenNotYetValid",
    "WrongAudience",
    "WrongIssuer",
    "ServiceNotLicensed",
    "MissingFeature",
    "WrongInstance",
    "NonceMismatch",
    "CertificateTooLong",
    "LifetimeTooLong",
    "NotIncludedError",
    "OverSeatsError",
    "StaleNonceError",
    "OtherRefusal",
    "BadKey",
    "InvalidArgument",
    "TetherIOError",
    "InternalError",
    "STATUS_CODES",
]

__version__: str = _native.__version__

#: Reason code name -> the C library's status number (``TetherStatus``).
STATUS_CODES: Dict[str, int] = dict(_native.STATUS_CODES)


class TetherError(Exception):
    """Base of every error of this package. ``code`` is the reason code
    (``"expired"``, ``"bad_key"``, ...), the same in C, Python and Rust."""

    code: str = "error"

    def __init__(self, message: str, code: Optional[str] = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class TokenRefused(TetherError):
    """The token was refused: one subclass per reason."""


class MalformedToken(TokenRefused):
    """Not a well-formed token (size over 8 KiB, base64, JSON, claims)."""

    code = "malformed"


class UnsupportedAlgorithm(TokenRefused):
    """The header names an algorithm other than EdDSA / Ed25519."""

    code = "unsupported_algorithm"


class BadHeader(TokenRefused):
    """The JOSE header has a parameter the verifier refuses (crit, b64, typ, ...)."""

    code = "bad_header"


class UntrustedChain(TokenRefused):
    """A link of the chain (license, certificate, kid) does not lead to the vendor key."""

    code = "untrusted_chain"


class BadSignature(TokenRefused):
    """The token's signature does not verify under the certified session key."""

    code = "bad_signature"


class TokenExpired(TokenRefused):
    """The token, its certificate or its license is past its end (beyond the leeway)."""

    code = "expired"


class TokenNotYetValid(TokenRefused):
    """The token, its certificate or its license is not valid yet (beyond the leeway)."""

    code = "not_yet_valid"


class WrongAudience(TokenRefused):
    """The token is for another service."""

    code = "wrong_audience"


class WrongIssuer(TokenRefused):
    """``iss`` does not name the licensed dongle."""

    code = "wrong_issuer"


class ServiceNotLicensed(TokenRefused):
    """The license does not list this service."""

    code = "service_not_licensed"


class MissingFeature(TokenRefused):
    """A required feature is not in the license."""

    code = "missing_feature"


class WrongInstance(TokenRefused):
    """The token was issued to another consumer instance."""

    code = "wrong_instance"


class NonceMismatch(TokenRefused):
    """The token does not echo the nonce given."""

    code = "nonce_mismatch"


class CertificateTooLong(TokenRefused):
    """The delegation certificate's window is longer than allowed (15 min)."""

    code = "certificate_too_long"


class LifetimeTooLong(TokenRefused):
    """The token lives longer than the license or its certificate allow."""

    code = "lifetime_too_long"


class NotIncludedError(TokenRefused):
    """Under a license that demands fresh nonces (or for a token with a
    ``prf`` claim), the token's (aud, ins, nonce) leaf is not proven to be in
    its certificate's commitment."""

    code = "not_included"


class OverSeatsError(TokenRefused):
    """The certificate commits to more instances of a service than the
    license has seats for."""

    code = "over_seats"


class StaleNonceError(TokenRefused):
    """The token echoes a nonce drawn a nonce period ago or longer (a
    watch's reason; a single verification never gives it)."""

    code = "stale_nonce"


class OtherRefusal(TokenRefused):
    """Refused for a reason this version has no class for (a newer verifier's)."""

    code = "other_refusal"


class BadKey(TetherError, ValueError):
    """The vendor public key could not be read or is not a vendor public key."""

    code = "bad_key"


class InvalidArgument(TetherError, ValueError):
    """An argument is out of its domain (URL, instance id, secret, not UTF-8)."""

    code = "invalid_argument"


class TetherIOError(TetherError, OSError):
    """A file could not be read, or the refresher's thread could not start."""

    code = "io"


class InternalError(TetherError):
    """A bug in the library (a Rust panic, caught)."""

    code = "internal_panic"


_BY_CODE: Dict[str, Type[TetherError]] = {
    cls.code: cls
    for cls in (
        MalformedToken, UnsupportedAlgorithm, BadHeader, UntrustedChain, BadSignature,
        TokenExpired, TokenNotYetValid, WrongAudience, WrongIssuer, ServiceNotLicensed,
        MissingFeature, WrongInstance, NonceMismatch, CertificateTooLong, LifetimeTooLong,
        NotIncludedError, OverSeatsError, StaleNonceError, OtherRefusal, BadKey, InvalidArgument, TetherIOError, InternalError,
    )
}
_BY_CODE["null_argument"] = InvalidArgument
_BY_CODE["invalid_utf8"] = InvalidArgument


def _error(code: str, message: str) -> TetherError:
    cls = _BY_CODE.get(code)
    if cls is None:
        # A refusal code newer than this module: still a refusal.
        cls = OtherRefusal if STATUS_CODES.get(code, 64) < 64 else TetherError
    return cls(message, code)


def _native_call(fn, *args):
    try:
        return fn(*args)
    except UnicodeError as e:  # a str that is not UTF-8 (lone surrogates)
        raise InvalidArgument(f"text is not valid UTF-8: {e}", "invalid_utf8") from None
    except ValueError as e:
        if len(e.args) == 2 and isinstance(e.args[0], str):
            raise _error(e.args[0], e.args[1]) from None
        raise


@dataclass(frozen=True)
class Claims:
    """The claims of a verified token. Times are UNIX seconds."""

    iss: str
    """Issuer: ``tether:`` and the dongle serial."""
    sub: str
    """The service the token was issued to."""
    aud: str
    """The service that must accept it (this one)."""
    iat: int
    """Issued at."""
    nbf: int
    """Not before."""
    exp: int
    """Expiry."""
    jti: str
    """Unique token id."""
    nonce: Optional[str]
    """The nonce the token echoes, if any."""
    ins: Optional[str]
    """The consumer instance the token was issued to, if any."""
    cert_not_after: Optional[int]
    """End of the certificate vouching for the token (``None`` from a watch)."""
    seats: Optional[int]
    """The license's seat count for the service (``None``: unlimited)."""
    nonce_period: Optional[int]
    """The license's nonce period in seconds: how often a consumer must draw
    a fresh nonce (0: freshness not required; ``None`` from a watch)."""
    raw: Dict[str, object]
    """Every claim as decoded (``lic`` and ``dcert`` included)."""

    @classmethod
    def _from_json(cls, text: str) -> "Claims":
        d = json.loads(text)
        return cls(
            iss=d["iss"], sub=d["sub"], aud=d["aud"], iat=d["iat"], nbf=d["nbf"],
            exp=d["exp"], jti=d["jti"], nonce=d.get("nonce"), ins=d.get("ins"),
            cert_not_after=d.get("cert_not_after"), seats=d.get("seats"),
            nonce_period=d.get("nonce_period"), raw=d,
        )


PathOrPem = Union[str, bytes, "os.PathLike[str]"]


def _read_pem(vendor_pub: PathOrPem) -> str:
    """PEM text from PEM text, PEM bytes, or a path to a PEM file."""
    if isinstance(vendor_pub, bytes):
        try:
            return vendor_pub.decode("utf-8")
        except UnicodeDecodeError:
            raise BadKey("vendor public key is not UTF-8 PEM") from None
    if isinstance(vendor_pub, str) and "-----BEGIN" in vendor_pub:
        return vendor_pub  # PEM text (a key file may have header lines first)
    try:
        with open(os.fspath(vendor_pub), "rb") as f:
            data = f.read(1 << 20)
    except (OSError, TypeError, ValueError) as e:
        raise BadKey(f"vendor public key {vendor_pub!r}: {e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadKey(f"vendor public key {vendor_pub!r} is not UTF-8 PEM") from None


class Verifier:
    """Verifies tokens offline down the whole chain to the vendor key.

    ``vendor_pub``: the vendor public key as PEM text (``str`` or ``bytes``)
    or a path to its file (``vendor.pub``). ``service``: the service tokens
    must be for. ``features``: features the license must grant. ``leeway``:
    clock leeway in seconds for every time check (default 5). ``instance``:
    this consumer's instance id; tokens issued to another are refused.
    ``refuse_grace``: refuse tokens issued in the license's vendor-signed
    grace period (they carry a ``grace`` claim) and every token once the
    license's ``not_after`` has passed (:class:`TokenExpired`); by default they
    are accepted.

    Raises :class:`BadKey` for a key that cannot be read or is not a vendor
    public key, :class:`InvalidArgument` for a bad instance id. Thread-safe.
    """

    def __init__(
        self,
        vendor_pub: PathOrPem,
        service: str,
        features: Iterable[str] = (),
        leeway: int = 5,
        instance: Optional[str] = None,
        refuse_grace: bool = False,
    ) -> None:
        if leeway < 0:
            raise InvalidArgument("leeway must be at least 0 seconds")
        self._pem = _read_pem(vendor_pub)
        self.service = service
        self.features: Tuple[str, ...] = tuple(features)
        self.leeway = int(leeway)
        self.instance = instance
        self.refuse_grace = bool(refuse_grace)
        self._native = _native_call(
            _native.Verifier,
            self._pem,
            service,
            list(self.features),
            self.leeway,
            instance,
            self.refuse_grace,
        )

    def verify(
        self,
        token: Union[str, bytes],
        nonce: Optional[str] = None,
        now: Optional[float] = None,
    ) -> Claims:
        """Verifies ``token`` at ``now`` (UNIX seconds; default: the system
        clock), requiring it to echo ``nonce`` if given. Returns its
        :class:`Claims`; raises the :class:`TokenRefused` subclass of the
        reason it is refused (or :class:`InvalidArgument` for a token that is
        not UTF-8)."""
        token, when = _token_and_time(token, now)
        code, payload = _native_call(self._native.verify, token, nonce, when)
        if code != "ok":
            raise _error(code, payload)
        return Claims._from_json(payload)

    def verify_fresh(
        self,
        token: Union[str, bytes],
        accepted: Iterable[str],
        now: Optional[float] = None,
    ) -> Claims:
        """Verifies ``token`` as :meth:`verify` does, for a consumer that
        draws its own nonces (a license with a nonce period): the token's
        nonce must be one of ``accepted`` (the nonces drawn and not retired;
        none accepts no token), else :class:`NonceMismatch`. Under such a
        license the token must also prove its (aud, ins, nonce) leaf is in
        the certificate's commitment (:class:`NotIncludedError`), within the
        license's seats (:class:`OverSeatsError`). ``accepted`` must be an
        iterable of ``str``, not one ``str``."""
        if isinstance(accepted, (str, bytes)):
            raise InvalidArgument("accepted must be a list of nonces, not one string")
        nonces = list(accepted)
        if not all(isinstance(n, str) for n in nonces):
            raise InvalidArgument("accepted nonces must be str")
        token, when = _token_and_time(token, now)
        code, payload = _native_call(self._native.verify_fresh, token, nonces, when)
        if code != "ok":
            raise _error(code, payload)
        return Claims._from_json(payload)


def _token_and_time(token: Union[str, bytes], now: Optional[float]) -> Tuple[str, Optional[int]]:
    """The token as text and ``now`` as whole seconds, checked."""
    if isinstance(token, bytes):
        try:
            token = token.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgument("token is not UTF-8", "invalid_utf8") from None
    when = None if now is None else int(now)
    if when is not None and when < 0:
        raise InvalidArgument("now must be UNIX seconds, at least 0")
    return token, when


@dataclass(frozen=True)
class LicenseState:
    """A watch's state: licensed or not, and why not (``"licensed"`` when licensed)."""

    licensed: bool
    reason: str


class LicenseWatch:
    """Keeps ``service`` licensed in the background: fetches tokens from
    tetherd at ``url`` (``http://host:port``) with the service secret in
    ``secret_file``, verifies them, renews them at about half-life, and
    follows the authority's events (an unplugged dongle ends the license at
    once).

    Give either ``verifier`` (a :class:`Verifier` for ``service``) or
    ``vendor_pub`` (and ``features``, ``leeway`` in seconds, ``instance``).
    ``on_change(state)`` is called with a :class:`LicenseState` from a
    background thread whenever licensed/unlicensed flips (checked every
    ``poll_interval`` seconds, default 0.25), and once at start.

    A context manager: leaving it calls :meth:`stop`, which gives the seat
    back to the authority.
    """

    def __init__(
        self,
        url: str,
        secret_file: Union[str, "os.PathLike[str]"],
        service: str,
        *,
        verifier: Optional[Verifier] = None,
        vendor_pub: Optional[PathOrPem] = None,
        features: Iterable[str] = (),
        leeway: int = 5,
        instance: Optional[str] = None,
        on_change: Optional[Callable[[LicenseState], None]] = None,
        poll_interval: float = 0.25,
    ) -> None:
        if verifier is None:
            if vendor_pub is None:
                raise InvalidArgument("give verifier or vendor_pub")
            verifier = Verifier(vendor_pub, service, features, leeway, instance)
        elif verifier.service != service:
            raise InvalidArgument(
                f"the verifier is for {verifier.service!r}, not {service!r}"
            )
        self.service = service
        self._native = _native_call(_native.Watch, url, os.fspath(secret_file), verifier._native)
        self._on_change = on_change
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        if on_change is not None:
            self._poll_interval = max(0.01, float(poll_interval))
            self._thread = threading.Thread(
                target=self._follow, name=f"tether-watch-{service}", daemon=True
            )
            self._thread.start()

    def _follow(self) -> None:
        last: Optional[bool] = None
        while not self._stop.is_set():
            state = self.state()
            if state.licensed != last:
                last = state.licensed
                try:
                    if self._on_change is not None:
                        self._on_change(state)
                except Exception:  # noqa: BLE001 - a callback's bug must not stop the watch
                    import traceback

                    traceback.print_exc()
            self._stop.wait(self._poll_interval)

    @property
    def instance(self) -> str:
        """The instance id tokens are fetched for."""
        return self._native.instance()

    def is_licensed(self) -> bool:
        """Whether a verified token that has not run out is held, now."""
        return self._native.is_licensed()

    def state(self) -> LicenseState:
        """The state now, and why it is unlicensed."""
        licensed, reason = self._native.state()
        return LicenseState(licensed, reason)

    def claims(self) -> Optional[Claims]:
        """The held token's claims, or ``None`` while unlicensed."""
        text = self._native.claims_json()
        return None if text is None else Claims._from_json(text)

    def wait_licensed(self, timeout: float) -> bool:
        """Waits up to ``timeout`` seconds for a license; returns whether licensed."""
        import time

        deadline = time.monotonic() + timeout
        while not self.is_licensed():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self) -> None:
        """Stops refreshing and gives the seat back (waits at most about 2 s).
        Idempotent; the watch is unlicensed afterwards."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._native.stop()

    def __enter__(self) -> "LicenseWatch":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        try:
            self._stop.set()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
