"""PyJWT decode (EdDSA) throughput on tokens made by Tether: the peer a
Python shop would use. Prints one number: decodes per second, one core.

usage: pyjwt_peer.py TOKENS_FILE SESSION_PUBLIC_KEY_B64URL
needs: pip install pyjwt cryptography
"""
import base64
import sys
import time

try:
    import jwt
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
except ImportError as e:  # reported as "skipped" by the Rust bench
    sys.exit(f"pyjwt or cryptography not installed ({e}): pip install pyjwt cryptography")

tokens = open(sys.argv[1]).read().split("\n")
raw = base64.urlsafe_b64decode(sys.argv[2] + "=" * (-len(sys.argv[2]) % 4))
key = Ed25519PublicKey.from_public_bytes(raw)
for t in tokens[:50]:
    jwt.decode(t, key, algorithms=["EdDSA"], audience="backend")
n = 0
start = time.perf_counter()
while time.perf_counter() - start < 2.0:
    for t in tokens:
        jwt.decode(t, key, algorithms=["EdDSA"], audience="backend")
    n += len(tokens)
print(n / (time.perf_counter() - start))
