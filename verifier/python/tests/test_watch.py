"""LicenseWatch against real tetherd and emulator processes."""

import threading

import pytest

import tether_verifier as tv
from conftest import wait_until


def test_a_watch_gets_licensed_and_follows_the_dongle(site):
    changes = []
    seen = threading.Event()

    def on_change(state):
        changes.append(state)
        seen.set()

    with tv.LicenseWatch(site.url, site.secrets["muxer"], "muxer", vendor_pub=site.vendor_pub,
                         features=["mux"], on_change=on_change) as watch:
        assert watch.wait_licensed(20), watch.state()
        assert watch.state() == tv.LicenseState(True, "licensed")
        claims = watch.claims()
        assert claims is not None and claims.aud == "muxer"
        assert claims.exp > claims.iat
        assert watch.instance.startswith("muxer")
        wait_until("on_change(licensed)", 5, lambda: any(s.licensed for s in changes))

        site.unplug()
        try:
            wait_until("unlicensed after unplug", 15, lambda: not watch.is_licensed())
            state = watch.state()
            assert not state.licensed and state.reason
            wait_until("on_change(unlicensed)", 5, lambda: not changes[-1].licensed)
        finally:
            site.plug()
        wait_until("licensed again after plug", 30, watch.is_licensed)
    assert not watch.is_licensed()
    assert watch.state().licensed is False


def test_a_watch_refuses_to_start_without_its_secret(site, tmp_path):
    with pytest.raises(tv.TetherIOError):
        tv.LicenseWatch(site.url, tmp_path / "missing.secret", "backend",
                        vendor_pub=site.vendor_pub)
    bad = tmp_path / "bad.secret"
    bad.write_text("not a secret")
    with pytest.raises(tv.InvalidArgument):
        tv.LicenseWatch(site.url, bad, "backend", vendor_pub=site.vendor_pub)
    with pytest.raises(tv.InvalidArgument):
        tv.LicenseWatch("ftp://nowhere", site.secrets["backend"], "backend",
                        vendor_pub=site.vendor_pub)
    with pytest.raises(tv.InvalidArgument):
        tv.LicenseWatch(site.url, site.secrets["backend"], "backend",
                        verifier=tv.Verifier(site.vendor_pub, "muxer"))


def test_a_watch_with_the_wrong_vendor_key_stays_unlicensed(site, tmp_path):
    # A key that is not the site's: every token is refused (untrusted chain).
    import json
    from pathlib import Path
    other = json.loads((Path(__file__).resolve().parents[3] /
                        "tests/conformance/vectors.json").read_text())["vectors"][0]["vendor_pub"]
    with tv.LicenseWatch(site.url, site.secrets["backend"], "backend", vendor_pub=other) as w:
        assert not w.wait_licensed(3)
        assert not w.state().licensed


def test_tokens_from_tetherd_verify(site):
    v = tv.Verifier(site.vendor_pub, "backend")
    claims = v.verify(site.token("backend"))
    assert claims.aud == "backend" and claims.iss == "tether:TD-PYBIND"
    with pytest.raises(tv.WrongAudience):
        tv.Verifier(site.vendor_pub, "muxer").verify(site.token("backend"))
