"""The conformance set (tests/conformance/vectors.json) through the Python
package: the same accept/refuse and reason as the Rust verifier and the C
library."""

import json
from pathlib import Path

import pytest

import tether_verifier as tv

VECTORS = json.loads(
    (Path(__file__).resolve().parents[3] / "tests/conformance/vectors.json").read_text()
)["vectors"]


def run(verifier, v):
    """verify_fresh for a vector with accepted nonces, else verify."""
    if v["accepted"] is not None:
        return verifier.verify_fresh(v["token"], v["accepted"], now=v["now"])
    return verifier.verify(v["token"], nonce=v["nonce"], now=v["now"])


@pytest.mark.parametrize("v", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector(v):
    e = v["expect"]
    verifier = tv.Verifier(v["vendor_pub"], service=e["service"], features=e["features"],
                           leeway=e["leeway"], instance=e["instance"],
                           refuse_grace=e["refuse_grace"])
    if v["expected"] == "ok":
        claims = run(verifier, v)
        assert claims.aud == e["service"]
        assert claims.cert_not_after is not None
        assert claims.nonce_period is not None
        if v["nonce"]:
            assert claims.nonce == v["nonce"]
        if v["accepted"] is not None:
            assert claims.nonce in v["accepted"]
            assert claims.nonce_period > 0
    else:
        with pytest.raises(tv.TokenRefused) as info:
            run(verifier, v)
        assert info.value.code == v["expected"], str(info.value)
        assert type(info.value).code == v["expected"]


def test_every_reason_has_a_class_and_a_vector():
    refusals = {name for name, code in tv.STATUS_CODES.items() if 1 <= code < 63}
    classes = {cls.code for cls in tv.TokenRefused.__subclasses__()}
    assert refusals <= classes
    # stale_nonce is a watch's reason: no single verification gives it.
    assert refusals - {"stale_nonce"} <= {v["expected"] for v in VECTORS}
