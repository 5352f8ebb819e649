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
