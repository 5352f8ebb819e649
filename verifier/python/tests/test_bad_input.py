"""Bad input across the boundary: an exception, never a crash."""

import json
from pathlib import Path

import pytest

import tether_verifier as tv

VECTORS = json.loads(
    (Path(__file__).resolve().parents[3] / "tests/conformance/vectors.json").read_text()
)["vectors"]
PEM = VECTORS[0]["vendor_pub"]
GOOD = VECTORS[0]


def test_pem_as_str_bytes_or_path(tmp_path):
    path = tmp_path / "vendor.pub"
    path.write_text(PEM)
    for key in (PEM, PEM.encode(), path, str(path)):
        v = tv.Verifier(key, service="backend")
        assert v.verify(GOOD["token"], now=GOOD["now"]).aud == "backend"


@pytest.mark.parametrize("key", ["/nonexistent/vendor.pub", b"junk", b"\xff\xfe",
                                 "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"])
def test_bad_keys(key):
    with pytest.raises(tv.BadKey) as info:
        tv.Verifier(key, service="backend")
    assert info.value.code == "bad_key"
    assert isinstance(info.value, ValueError)


def test_wrong_key_file(tmp_path):
    p = tmp_path / "secret"
    p.write_text("tsk_not a key")
    with pytest.raises(tv.BadKey):
        tv.Verifier(p, service="backend")


def test_bad_arguments():
    with pytest.raises(tv.InvalidArgument):
        tv.Verifier(PEM, service="backend", instance="spaces are not allowed")
    with pytest.raises(tv.InvalidArgument):
        tv.Verifier(PEM, service="backend", leeway=-1)
    v = tv.Verifier(PEM, service="backend")
    with pytest.raises(tv.InvalidArgument):
        v.verify(b"\xff\xfe.a.b")
    with pytest.raises(tv.InvalidArgument):
        v.verify("\ud800.a.b")  # a lone surrogate: not encodable as UTF-8
    with pytest.raises(tv.InvalidArgument):
        v.verify(GOOD["token"], now=-5)


@pytest.mark.parametrize("token", ["", "a" * (1 << 20), "\x00", "a.b.c", "...."])
def test_garbage_tokens_are_malformed(token):
    v = tv.Verifier(PEM, service="backend")
    with pytest.raises(tv.MalformedToken) as info:
        v.verify(token)
    assert info.value.code == "malformed"


def test_hierarchy():
    assert issubclass(tv.TokenExpired, tv.TokenRefused)
    assert issubclass(tv.TokenRefused, tv.TetherError)
    assert issubclass(tv.BadKey, tv.TetherError)
    assert tv.STATUS_CODES["ok"] == 0 and tv.STATUS_CODES["expired"] == 6
    for cls, code, number in [(tv.NotIncludedError, "not_included", 16),
                              (tv.OverSeatsError, "over_seats", 17),
                              (tv.StaleNonceError, "stale_nonce", 18)]:
        assert issubclass(cls, tv.TokenRefused) and cls.code == code
        assert tv.STATUS_CODES[code] == number
    assert tv.STATUS_CODES["other_refusal"] == 63


FRESH = next(v for v in VECTORS if v["name"] == "ok_fresh_included")


def test_verify_fresh_bad_input():
    v = tv.Verifier(PEM, service="backend")
    claims = v.verify_fresh(FRESH["token"], ("n-1",), now=FRESH["now"])
    assert (claims.nonce, claims.nonce_period, claims.seats) == ("n-1", 300, 2)
    with pytest.raises(tv.NonceMismatch):
        v.verify_fresh(FRESH["token"], [], now=FRESH["now"])
    with pytest.raises(tv.NonceMismatch):
        v.verify_fresh(FRESH["token"], iter(["n-2"]), now=FRESH["now"])
    for accepted in ["n-1", b"n-1", [None], [b"n-1"], ["n-1", 5]]:
        with pytest.raises(tv.InvalidArgument):
            v.verify_fresh(FRESH["token"], accepted, now=FRESH["now"])
    with pytest.raises(tv.InvalidArgument):
        v.verify_fresh(FRESH["token"], ["\ud800"], now=FRESH["now"])  # not UTF-8
    with pytest.raises(tv.InvalidArgument):
        v.verify_fresh(b"\xff\xfe.a.b", ["n-1"])
    with pytest.raises(tv.InvalidArgument):
        v.verify_fresh(FRESH["token"], ["n-1"], now=-5)
    with pytest.raises(tv.MalformedToken):
        v.verify_fresh("a" * (1 << 20), ["n-1"] * 1000)
    with pytest.raises(TypeError):
        v.verify_fresh(FRESH["token"], None)  # type: ignore[arg-type]


def test_plain_verify_has_no_nonce_period_requirement():
    claims = tv.Verifier(PEM, service="backend").verify(GOOD["token"], now=GOOD["now"])
    assert claims.nonce_period == 0
