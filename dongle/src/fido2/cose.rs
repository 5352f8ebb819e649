//! COSE_Key (RFC 9052, section 7; key types in RFC 9053, sections 7.1 and
//! 7.2) for the two kinds of credential key Tether accepts: OKP Ed25519
//! (alg EdDSA -8 or Ed25519 -19, RFC 9864) and EC2 P-256 (alg ES256 -7).

use ciborium::Value;

use super::cbor::{self, Map};
use crate::error::ProtocolError;

/// COSE algorithm EdDSA (RFC 9053, section 2.2).
pub const ALG_EDDSA: i64 = -8;
/// COSE algorithm Ed25519, fully specified (RFC 9864).
pub const ALG_ED25519: i64 = -19;
/// COSE algorithm ES256 (RFC 9053, section 2.1).
pub const ALG_ES256: i64 = -7;
/// What we offer in makeCredential's pubKeyCredParams, in preference order.
pub const PREFERRED_ALGORITHMS: [i64; 3] = [ALG_EDDSA, ALG_ED25519, ALG_ES256];

const WHAT: &str = "COSE_Key";

/// A credential public key as the key gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CosePublicKey {
    /// OKP, crv Ed25519: the 32-byte public key.
    Ed25519([u8; 32]),
    /// EC2, crv P-256: the affine coordinates, 32 bytes each, big-endian.
    P256 {
        /// x coordinate.
        x: [u8; 32],
        /// y coordinate.
        y: [u8; 32],
    },
}

impl CosePublicKey {
    /// The key bytes as a Tether identity file keeps them: 32 bytes for
    /// Ed25519, the 65-byte uncompressed SEC1 point (`04 || x || y`) for P-256.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            CosePublicKey::Ed25519(k) => k.to_vec(),
            CosePublicKey::P256 { x, y } => {
                let mut v = Vec::with_capacity(65);
                v.push(0x04);
                v.extend_from_slice(x);
                v.extend_from_slice(y);
                v
            }
        }
    }

    /// The COSE algorithm name for messages.
    pub fn algorithm_name(&self) -> &'static str {
        match self {
            CosePublicKey::Ed25519(_) => "EdDSA (Ed25519)",
            CosePublicKey::P256 { .. } => "ES256 (P-256)",
        }
    }

    /// Parses a COSE_Key map.
    ///
    /// # Errors
    /// [`ProtocolError::Malformed`] for a key that is not OKP/Ed25519 with
    /// alg -8 or -19, nor EC2/P-256 with alg -7, or whose coordinates are
    /// not 32 bytes each.
    pub fn from_cbor(value: Value) -> Result<CosePublicKey, ProtocolError> {
        let map = Map::new(value, WHAT)?;
        let kty = cbor::int(
            map.required(1, "no kty (1)")?,
            WHAT,
            "kty is not an integer",
        )?;
        let alg = cbor::int(
            map.required(3, "no alg (3)")?,
            WHAT,
            "alg is not an integer",
        )?;
        let crv = cbor::int(
            map.required(-1, "no crv (-1)")?,
            WHAT,
            "crv is not an integer",
        )?;
        let coord = |key: i64, reason: &'static str| -> Result<[u8; 32], ProtocolError> {
            let v = cbor::bytes(
                map.required(key, reason)?,
                WHAT,
                "a coordinate is not a byte string",
            )?;
            v.try_into().map_err(|_| ProtocolError::Malformed {
                what: WHAT,
                reason: "a coordinate is not 32 bytes",
            })
        };
        match (kty, alg, crv) {
            // OKP (1), crv Ed25519 (6).
            (1, ALG_EDDSA | ALG_ED25519, 6) => Ok(CosePublicKey::Ed25519(coord(-2, "no x (-2)")?)),
            // EC2 (2), crv P-256 (1).
            (2, ALG_ES256, 1) => Ok(CosePublicKey::P256 {
                x: coord(-2, "no x (-2)")?,
                y: coord(-3, "no y (-3)")?,
            }),
            (1 | 2, _, _) => Err(ProtocolError::Malformed {
                what: WHAT,
                reason: "an algorithm or curve other than EdDSA/Ed25519 or ES256/P-256",
            }),
            _ => Err(ProtocolError::Malformed {
                what: WHAT,
                reason: "a key type other than OKP or EC2",
            }),
        }
    }

    /// The COSE_Key map (as a key would send it).
    pub fn to_cbor(&self) -> Value {
        use cbor::{b, i, map};
        match self {
            CosePublicKey::Ed25519(k) => map(vec![
                (i(1), i(1)),
                (i(3), i(ALG_EDDSA)),
                (i(-1), i(6)),
                (i(-2), b(k)),
            ]),
            CosePublicKey::P256 { x, y } => map(vec![
                (i(1), i(2)),
                (i(3), i(ALG_ES256)),
                (i(-1), i(1)),
                (i(-2), b(x)),
                (i(-3), b(y)),
            ]),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(bytes: &[u8]) -> Result<CosePublicKey, ProtocolError> {
        CosePublicKey::from_cbor(cbor::decode_one(bytes, "t").unwrap())
    }

    #[test]
    fn ed25519_okp_exact_bytes() {
        // {1: 1, 3: -8, -1: 6, -2: h'11..11'}
        let mut bytes = vec![0xA4, 0x01, 0x01, 0x03, 0x27, 0x20, 0x06, 0x21, 0x58, 0x20];
        bytes.extend_from_slice(&[0x11; 32]);
        assert_eq!(parse(&bytes).unwrap(), CosePublicKey::Ed25519([0x11; 32]));
        assert_eq!(
            cbor::encode(&CosePublicKey::Ed25519([0x11; 32]).to_cbor()),
            bytes
        );
        // alg -19 is Ed25519 too.
        bytes[4] = 0x32;
        assert_eq!(parse(&bytes).unwrap(), CosePublicKey::Ed25519([0x11; 32]));
        // crv X25519 (4) is refused.
        bytes[6] = 0x04;
        assert!(parse(&bytes).is_err());
    }

    #[test]
    fn p256_ec2_round_trip_and_refusals() {
        let key = CosePublicKey::P256 {
            x: [1; 32],
            y: [2; 32],
        };
        let bytes = cbor::encode(&key.to_cbor());
        assert_eq!(
            &bytes[..8],
            &[0xA5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21]
        );
        assert_eq!(parse(&bytes).unwrap(), key);
        assert_eq!(key.to_bytes()[0], 0x04);
        assert_eq!(key.to_bytes().len(), 65);
        // A short coordinate.
        let short = cbor::map(vec![
            (cbor::i(1), cbor::i(2)),
            (cbor::i(3), cbor::i(-7)),
            (cbor::i(-1), cbor::i(1)),
            (cbor::i(-2), cbor::b(&[1; 31])),
            (cbor::i(-3), cbor::b(&[2; 32])),
        ]);
        assert!(CosePublicKey::from_cbor(short).is_err());
        // RS256 (-257, kty RSA 3) is refused.
        let rsa = cbor::map(vec![
            (cbor::i(1), cbor::i(3)),
            (cbor::i(3), cbor::i(-257)),
            (cbor::i(-1), cbor::i(0)),
        ]);
        assert!(CosePublicKey::from_cbor(rsa).is_err());
        assert!(CosePublicKey::from_cbor(cbor::i(5)).is_err());
    }
}
