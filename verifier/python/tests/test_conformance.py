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


@pytest.mark.parametrize("v", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector(v):
    e = v["expect"]
    verifier = tv.Verifier(v["vendor_pub"], service=e["service"], features=e["features"],
                           leeway=e["leeway"], instance=e["instance"])
    if v["expected"] == "ok":
        claims = verifier.verify(v["token"], nonce=v["nonce"], now=v["now"])
        assert claims.aud == e["service"]
        assert claims.cert_not_after is not None
        if v["nonce"]:
            assert claims.nonce == v["nonce"]
    else:
        with pytest.raises(tv.TokenRefused) as info:
            verifier.verify(v["token"], nonce=v["nonce"], now=v["now"])
        assert info.value.code == v["expected"], str(info.value)
        assert type(info.value).code == v["expected"]


def test_every_reason_has_a_class_and_a_vector():
    refusals = {name for name, code in tv.STATUS_CODES.items() if 1 <= code < 63}
    classes = {cls.code for cls in tv.TokenRefused.__subclasses__()}
    assert refusals <= classes
    assert refusals <= {v["expected"] for v in VECTORS}
