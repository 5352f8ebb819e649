# Type stubs of the native module (verifier/python/src/lib.rs). Use the
# package's public API (tether_verifier) instead: it turns these tuples and
# codes into Claims and exceptions.
from typing import List, Optional, Tuple

__version__: str
STATUS_CODES: List[Tuple[str, int]]

class Verifier:
    def __init__(
        self,
        vendor_pub_pem: str,
        service: str,
        features: List[str],
        leeway: int,
        instance: Optional[str] = None,
        refuse_grace: bool = False,
    ) -> None: ...
    def verify(
        self, token: str, nonce: Optional[str] = None, now: Optional[int] = None
    ) -> Tuple[str, str]: ...
    def verify_fresh(
        self, token: str, accepted: List[str], now: Optional[int] = None
    ) -> Tuple[str, str]: ...

class Watch:
    def __init__(self, url: str, secret_file: str, verifier: Verifier) -> None: ...
    def is_licensed(self) -> bool: ...
    def state(self) -> Tuple[bool, str]: ...
    def claims_json(self) -> Optional[str]: ...
    def instance(self) -> str: ...
    def stop(self) -> None: ...
