//! The Merkle tree a delegation certificate commits to: the live consumer
//! instances and their nonces (`docs/formats.md`, "Merkle commitment").
//!
//! Hashing is RFC 6962 section 2.1 (kept as RFC 9162 section 2.1.1) with
//! SHA-256: a leaf hashes as `SHA-256(0x00 || leaf)`, an inner node as
//! `SHA-256(0x01 || left || right)`, so no leaf can pass for a node; the
//! tree over `n > 1` leaves splits at the largest power of two below `n`;
//! the empty tree's hash is `SHA-256("")`. Inclusion proofs are RFC 6962
//! section 2.1.1 audit paths, checked with the algorithm of RFC 9162
//! section 2.1.3.2.
//!
//! A [`Leaf`] is one consumer instance's `(service, instance, nonce)`. A
//! [`LeafSet`] sorts and deduplicates them (by service, then instance, then
//! nonce, bytewise), so a set of leaves has exactly one tree and one root,
//! and each service's leaves sit side by side: a certificate's per-service
//! counts ([`Commitment`]) then give every service a range of leaf
//! positions, and a consumer accepts a proof only at a position in its
//! service's range. However the tree was built, a service can then have at
//! most its count of consumers admitted by one certificate.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use sha2::{Digest, Sha256};

use crate::codec::{Reader, Writer};
use crate::{Error, Result};

/// A SHA-256 hash: a leaf hash, an inner node or a root.
pub type Hash = [u8; 32];

/// The root of the empty tree: `SHA-256("")` (RFC 6962 section 2.1).
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Most services a commitment counts (the license's own bound).
pub const MAX_SERVICES: usize = 64;

/// Longest audit path: a tree of at most `u32::MAX` leaves is 32 levels deep.
pub const MAX_PATH_LEN: usize = 32;

/// Prefix of a leaf's hash input (RFC 6962 section 2.1).
const LEAF_PREFIX: u8 = 0x00;
/// Prefix of an inner node's hash input (RFC 6962 section 2.1).
const NODE_PREFIX: u8 = 0x01;

/// `SHA-256(0x00 || data)`: the hash of a leaf whose encoding is `data`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: an inner node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([NODE_PREFIX]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn split_point(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// MTH (RFC 6962 section 2.1) over leaf hashes, in the order given.
pub fn root_of_hashes(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => EMPTY_ROOT,
        [one] => *one,
        _ => {
            let k = split_point(leaves.len());
            node_hash(&root_of_hashes(&leaves[..k]), &root_of_hashes(&leaves[k..]))
        }
    }
}

/// `PATH(m, D[n])` (RFC 6962 section 2.1.1) over leaf hashes: the siblings
/// from the leaf up to the root. `None` when `index` is out of range.
pub fn path_of_hashes(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    let (mut lo, mut hi, mut m) = (0, leaves.len(), index);
    // Walk down from the root, collecting siblings root-first, then reverse.
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if m < k {
            path.push(root_of_hashes(&leaves[lo + k..hi]));
            hi = lo + k;
        } else {
            path.push(root_of_hashes(&leaves[lo..lo + k]));
            lo += k;
            m -= k;
        }
    }
    path.reverse();
    Some(path)
}

/// Appends to each of `paths` (one per leaf of `leaves`, non-empty) its
/// siblings from the leaf up, as RFC 6962 section 2.1.1 orders them, and
/// returns the subtree's root.
fn fill_paths(leaves: &[Hash], paths: &mut [Vec<Hash>]) -> Hash {
    if let [one] = leaves {
        return *one;
    }
    let k = split_point(leaves.len());
    let (left_paths, right_paths) = paths.split_at_mut(k);
    let left = fill_paths(&leaves[..k], left_paths);
    let right = fill_paths(&leaves[k..], right_paths);
    left_paths.iter_mut().for_each(|p| p.push(right));
    right_paths.iter_mut().for_each(|p| p.push(left));
    node_hash(&left, &right)
}

/// One consumer instance's entry in a certificate's tree: the service it
/// runs as, its instance id and the nonce it drew last.
///
/// Encoded (`docs/formats.md`, "Merkle commitment") as
/// `str8 service || str8 instance || str8 nonce`; each field is 1 to 255
/// bytes of UTF-8. Ordered by service, then instance, then nonce, bytewise.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Leaf {
    service: String,
    instance: String,
    nonce: String,
}

impl Leaf {
    /// A leaf for `instance` of `service`, which drew `nonce`.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if a field is empty or longer than 255 bytes.
    pub fn new(
        service: impl Into<String>,
        instance: impl Into<String>,
        nonce: impl Into<String>,
    ) -> Result<Leaf> {
        let leaf = Leaf {
            service: service.into(),
            instance: instance.into(),
            nonce: nonce.into(),
        };
        for (what, s) in [
            ("leaf service", &leaf.service),
            ("leaf instance", &leaf.instance),
            ("leaf nonce", &leaf.nonce),
        ] {
            if s.is_empty() || s.len() > 255 {
                return Err(Error::Invalid {
                    what,
                    reason: "1-255 bytes".into(),
                });
            }
        }
        Ok(leaf)
    }

    /// The service.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The instance id.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The nonce.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// The canonical encoding: `str8 service || str8 instance || str8 nonce`.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.str8(&self.service);
        w.str8(&self.instance);
        w.str8(&self.nonce);
        w.buf
    }

    /// `SHA-256(0x00 || encoding)`.
    pub fn hash(&self) -> Hash {
        leaf_hash(&self.encode())
    }
}

/// Leaves in canonical order (sorted, no duplicates): one set, one tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeafSet {
    leaves: Vec<Leaf>,
    hashes: Vec<Hash>,
}

impl LeafSet {
    /// Sorts and deduplicates `leaves`.
    pub fn new(leaves: impl IntoIterator<Item = Leaf>) -> LeafSet {
        let mut leaves: Vec<Leaf> = leaves.into_iter().collect();
        leaves.sort();
        leaves.dedup();
        let hashes = leaves.iter().map(Leaf::hash).collect();
        LeafSet { leaves, hashes }
    }

    /// The leaves, in tree order.
    pub fn leaves(&self) -> &[Leaf] {
        &self.leaves
    }

    /// How many leaves.
    pub fn len(&self) -> usize {
        self.leaves.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// The tree's root ([`EMPTY_ROOT`] for no leaves).
    pub fn root(&self) -> Hash {
        root_of_hashes(&self.hashes)
    }

    /// The position of `leaf` in tree order, if it is in the set.
    pub fn index_of(&self, leaf: &Leaf) -> Option<usize> {
        self.leaves.binary_search(leaf).ok()
    }

    /// The inclusion proof of the leaf at `index` (tree order); `None` when
    /// `index` is out of range or the set has more than `u32::MAX` leaves.
    pub fn prove(&self, index: usize) -> Option<InclusionProof> {
        let path = path_of_hashes(&self.hashes, index)?;
        Some(InclusionProof {
            index: u32::try_from(index).ok()?,
            size: u32::try_from(self.len()).ok()?,
            path,
        })
    }

    /// Every leaf's inclusion proof, in tree order, in O(n log n) hashes
    /// (each subtree root is computed once, where [`LeafSet::prove`] costs
    /// O(n) per proof). Empty for more than `u32::MAX` leaves.
    pub fn prove_all(&self) -> Vec<InclusionProof> {
        let Ok(size) = u32::try_from(self.len()) else {
            return Vec::new();
        };
        let mut paths = vec![Vec::new(); self.len()];
        if !self.hashes.is_empty() {
            fill_paths(&self.hashes, &mut paths);
        }
        paths
            .into_iter()
            .enumerate()
            .map(|(index, path)| InclusionProof {
                // `index < size`, which fits.
                index: index as u32,
                size,
                path,
            })
            .collect()
    }

    /// The root and the per-service leaf counts: what a certificate commits to.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for more than [`MAX_SERVICES`] services, a service
    /// that is not a valid name ([`crate::license::check_name`]), or more
    /// than `u32::MAX` leaves.
    pub fn commitment(&self) -> Result<Commitment> {
        let mut counts = BTreeMap::<String, u32>::new();
        for leaf in &self.leaves {
            let n = counts.entry(leaf.service.clone()).or_default();
            *n = n.checked_add(1).ok_or_else(|| Error::Invalid {
                what: "commitment",
                reason: "more than 2^32 - 1 leaves".into(),
            })?;
        }
        Commitment::new(self.root(), counts)
    }
}

/// The root of the canonical tree over `leaves` (sorted and deduplicated
/// first, [`LeafSet`]).
pub fn root(leaves: &[Leaf]) -> Hash {
    LeafSet::new(leaves.iter().cloned()).root()
}

/// The inclusion proof of the leaf at `index` in the canonical order of
/// `leaves` ([`LeafSet::leaves`]).
pub fn prove(leaves: &[Leaf], index: usize) -> Option<InclusionProof> {
    LeafSet::new(leaves.iter().cloned()).prove(index)
}

/// An audit path (RFC 6962 section 2.1.1): the leaf's position, the tree's
/// size and the sibling hashes from the leaf up.
///
/// Encoded (`docs/formats.md`, "Inclusion proof") as `u32 index || u32 size
/// || u8 count || count x [u8; 32]`, carried base64url in a token's `prf`
/// claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// The leaf's position in tree order.
    pub index: u32,
    /// How many leaves the tree has.
    pub size: u32,
    /// Sibling hashes, the leaf's own sibling first.
    pub path: Vec<Hash>,
}

impl InclusionProof {
    /// The canonical encoding. A proof from [`LeafSet::prove`] or
    /// [`InclusionProof::decode`] has at most [`MAX_PATH_LEN`] hashes; a
    /// hand-made one of more than 255 is cut there (and would not verify
    /// anyway).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u32(self.index);
        w.u32(self.size);
        let path = &self.path[..self.path.len().min(255)];
        w.u8(path.len() as u8);
        for h in path {
            w.bytes(h);
        }
        w.buf
    }

    /// Decodes the canonical encoding; refuses trailing bytes and paths of
    /// more than [`MAX_PATH_LEN`] hashes.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] for bytes that are not one proof.
    pub fn decode(bytes: &[u8]) -> Result<InclusionProof> {
        let mut r = Reader::new("inclusion proof", bytes);
        let index = r.u32()?;
        let size = r.u32()?;
        let count = usize::from(r.u8()?);
        if count > MAX_PATH_LEN {
            return Err(r.malformed("path longer than 32 hashes"));
        }
        let mut path = Vec::with_capacity(count);
        for _ in 0..count {
            path.push(r.array()?);
        }
        r.end()?;
        Ok(InclusionProof { index, size, path })
    }

    /// Base64url (no padding) of the encoding: the `prf` claim's value.
    pub fn to_claim(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.encode())
    }

    /// Decodes a `prf` claim's value.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] if it is not base64url of one proof.
    pub fn from_claim(text: &str) -> Result<InclusionProof> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| Error::Malformed {
                what: "inclusion proof",
                reason: "not base64url without padding",
            })?;
        InclusionProof::decode(&bytes)
    }
}

/// Checks that `leaf` is at `proof.index` of a tree of `proof.size` leaves
/// with root `root` (RFC 9162 section 2.1.3.2).
///
/// The audit path does not always pin the size down (leaf 0 of a 3-leaf
/// tree has the same path as in a 4-leaf one); [`Commitment::check`] binds
/// it to the certificate's counts.
///
/// # Errors
///
/// [`Error::NotIncluded`] if the proof does not lead from `leaf` to `root`.
pub fn verify(root: &Hash, leaf: &Leaf, proof: &InclusionProof) -> Result<()> {
    verify_with(root, leaf, proof, &mut |_, l, r| node_hash(l, r))
}

/// [`verify`], computing inner nodes with `node(step, left, right)`.
fn verify_with(
    root: &Hash,
    leaf: &Leaf,
    proof: &InclusionProof,
    node: &mut dyn FnMut(Step, &Hash, &Hash) -> Hash,
) -> Result<()> {
    if root_from_path(leaf.hash(), proof, node).as_ref() == Some(root) {
        Ok(())
    } else {
        Err(Error::NotIncluded(
            "the inclusion proof does not lead to the root",
        ))
    }
}

/// The root an audit path leads to from `leaf` (RFC 9162 section 2.1.3.2,
/// steps 1 to 6), or `None` when the path has the wrong length for the
/// index and size.
fn root_from_path(
    leaf: Hash,
    proof: &InclusionProof,
    node: &mut dyn FnMut(Step, &Hash, &Hash) -> Hash,
) -> Option<Hash> {
    if proof.index >= proof.size {
        return None;
    }
    let (mut fnode, mut snode) = (proof.index, proof.size - 1);
    let mut r = leaf;
    for (k, p) in proof.path.iter().enumerate() {
        if snode == 0 {
            return None;
        }
        let step = Step {
            size: proof.size,
            k: k as u8,
            fnode,
            snode,
        };
        if fnode & 1 == 1 || fnode == snode {
            r = node(step, p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node(step, &r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    (snode == 0).then_some(r)
}

/// Where an inner node is computed on an audit path: the tree size, the
/// step (`k`-th path hash) and the RFC 9162 section 2.1.3.2 state
/// `(fn, sn)` before it. Only a locator for [`NodeMemo`]: a hit is
/// decided by comparing the hash inputs themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Step {
    size: u32,
    k: u8,
    fnode: u32,
    snode: u32,
}

/// A memo of inner node hashes computed on audit paths that led to one
/// commitment's root, for a verifier that checks proofs of many leaves of
/// one tree (a certificate's): the nodes near the root are shared by every
/// proof. A node is taken from the memo only when both its inputs, `left`
/// and `right`, are byte-identical to those of a node already computed at
/// the same step of a path that reached the root; anything else is hashed.
/// So a proof passes with the memo exactly when it passes without.
///
/// Bounded: at most [`NodeMemo::CAP`] nodes (about 140 bytes each); past
/// that, new nodes are hashed and not kept.
#[derive(Debug, Default)]
pub struct NodeMemo {
    nodes: HashMap<Step, (Hash, Hash, Hash)>,
}

impl NodeMemo {
    /// Most nodes kept: enough for every inner node of a 2,048-leaf tree.
    pub const CAP: usize = 2048;

    /// How many nodes are kept.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node is kept.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// What a delegation certificate commits to about the live consumers: the
/// root of their [`LeafSet`] and how many leaves each service has
/// (`docs/formats.md`, "Delegation certificate").
///
/// The default is the empty commitment: [`EMPTY_ROOT`], no counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commitment {
    /// The tree's root.
    pub root: Hash,
    /// Leaves per service: names sorted and unique (a `BTreeMap`), counts at
    /// least 1, at most [`MAX_SERVICES`] services.
    pub counts: BTreeMap<String, u32>,
}

impl Default for Commitment {
    fn default() -> Self {
        Commitment {
            root: EMPTY_ROOT,
            counts: BTreeMap::new(),
        }
    }
}

impl Commitment {
    /// A checked commitment.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] as [`Commitment::validate`].
    pub fn new(root: Hash, counts: BTreeMap<String, u32>) -> Result<Commitment> {
        let c = Commitment { root, counts };
        c.validate()?;
        Ok(c)
    }

    /// Whether it commits to no leaves at all.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Checks the rules of the format: at most [`MAX_SERVICES`] services,
    /// valid names, counts of at least 1 summing to at most `u32::MAX`, and
    /// the empty tree's root exactly when there are no counts.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming the broken rule.
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Error::Invalid {
            what: "commitment",
            reason,
        };
        if self.counts.len() > MAX_SERVICES {
            return Err(invalid(format!("more than {MAX_SERVICES} services")));
        }
        for (service, &n) in &self.counts {
            crate::license::check_name("commitment service", service)?;
            if n == 0 {
                return Err(invalid(format!(
                    "{service:?} counts 0 leaves: leave it out"
                )));
            }
        }
        self.total()
            .ok_or_else(|| invalid("more than 2^32 - 1 leaves".into()))?;
        if self.counts.is_empty() != (self.root == EMPTY_ROOT) {
            return Err(invalid(
                "the empty tree's root goes with no counts, and only with none".into(),
            ));
        }
        Ok(())
    }

    /// The tree's size: the sum of the counts (`None` past `u32::MAX`).
    pub fn total(&self) -> Option<u32> {
        self.counts
            .values()
            .try_fold(0u32, |sum, &n| sum.checked_add(n))
    }

    /// The leaf positions of `service`: services in name order, each after
    /// the ones before it. Empty when the service has no leaves.
    pub fn range(&self, service: &str) -> Range<u32> {
        let mut start = 0u32;
        for (name, &n) in &self.counts {
            if name == service {
                return start..start.saturating_add(n);
            }
            start = start.saturating_add(n);
        }
        start..start
    }

    /// A consumer's check: `leaf` is in the tree, at a position of its own
    /// service's range, and the proof is for a tree of exactly the committed
    /// size.
    ///
    /// # Errors
    ///
    /// [`Error::NotIncluded`] naming which of these fails.
    pub fn check(&self, leaf: &Leaf, proof: &InclusionProof) -> Result<()> {
        self.check_bounds(leaf, proof)?;
        verify(&self.root, leaf, proof)
    }

    /// [`Commitment::check`], with inner nodes taken from `memo` when their
    /// inputs are byte-identical to ones computed before on a path that
    /// reached this root (see [`NodeMemo`]); the nodes of a path that
    /// reaches the root are then kept in `memo`. Keep one memo per
    /// commitment: a memo is only ever filled from paths to one root.
    ///
    /// # Errors
    ///
    /// As [`Commitment::check`], in the same cases.
    pub fn check_with_memo(
        &self,
        leaf: &Leaf,
        proof: &InclusionProof,
        memo: &mut NodeMemo,
    ) -> Result<()> {
        self.check_bounds(leaf, proof)?;
        let mut fresh: Vec<(Step, (Hash, Hash, Hash))> = Vec::new();
        verify_with(&self.root, leaf, proof, &mut |step, l, r| {
            if let Some((ml, mr, out)) = memo.nodes.get(&step)
                && ml == l
                && mr == r
            {
                return *out;
            }
            let out = node_hash(l, r);
            fresh.push((step, (*l, *r, out)));
            out
        })?;
        // Only a path that reached the root is remembered.
        for (step, node) in fresh {
            if memo.nodes.len() >= NodeMemo::CAP {
                break;
            }
            memo.nodes.insert(step, node);
        }
        Ok(())
    }

    /// The size and position checks of [`Commitment::check`].
    fn check_bounds(&self, leaf: &Leaf, proof: &InclusionProof) -> Result<()> {
        if Some(proof.size) != self.total() {
            return Err(Error::NotIncluded(
                "the proof's tree size is not the certificate's leaf count",
            ));
        }
        if !self.range(leaf.service()).contains(&proof.index) {
            return Err(Error::NotIncluded(
                "the proof's position is outside the service's leaves",
            ));
        }
        Ok(())
    }

    /// The canonical encoding: `root [32] || u8 count || count x (str8 name
    /// || u32 leaves)`.
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.bytes(&self.root);
        w.u8(self.counts.len().min(255) as u8);
        for (name, &n) in self.counts.iter().take(255) {
            w.str8(name);
            w.u32(n);
        }
    }

    /// Reads the canonical encoding, refusing names out of order and any
    /// commitment that breaks [`Commitment::validate`].
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Commitment> {
        let root = r.array()?;
        let count = usize::from(r.u8()?);
        if count > MAX_SERVICES {
            return Err(r.malformed("commitment counts more than 64 services"));
        }
        let mut counts = BTreeMap::new();
        let mut last: Option<String> = None;
        for _ in 0..count {
            let name = r.str8()?;
            let n = r.u32()?;
            if last.as_ref().is_some_and(|l| *l >= name) {
                return Err(r.malformed("commitment services not sorted and unique"));
            }
            last = Some(name.clone());
            counts.insert(name, n);
        }
        let c = Commitment { root, counts };
        c.validate()
            .map_err(|_| r.malformed("commitment not in canonical form"))?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(hex: &str) -> Hash {
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    /// The reference inputs of the Certificate Transparency test suites
    /// (certificate-transparency `merkle_tree_test`, transparency-dev
    /// `merkle/testonly`), leaf data hashed as RFC 6962 says.
    const CT_LEAVES: [&[u8]; 8] = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
    ];

    #[test]
    fn roots_match_the_rfc_6962_reference_vectors() {
        let roots = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let hashes: Vec<Hash> = CT_LEAVES.iter().map(|d| leaf_hash(d)).collect();
        for (n, want) in roots.iter().enumerate() {
            assert_eq!(root_of_hashes(&hashes[..=n]), h(want), "{} leaves", n + 1);
        }
        assert_eq!(root_of_hashes(&[]), EMPTY_ROOT);
        assert_eq!(EMPTY_ROOT, <[u8; 32]>::from(Sha256::digest(b"")));
    }

    #[test]
    fn every_path_of_every_small_tree_verifies_and_has_the_rfc_length() {
        let hashes: Vec<Hash> = CT_LEAVES.iter().map(|d| leaf_hash(d)).collect();
        for n in 1..=hashes.len() {
            let root = root_of_hashes(&hashes[..n]);
            for i in 0..n {
                let path = path_of_hashes(&hashes[..n], i).unwrap();
                let proof = InclusionProof {
                    index: i as u32,
                    size: n as u32,
                    path,
                };
                assert_eq!(
                    root_from_path(hashes[i], &proof, &mut |_, l, r| node_hash(l, r)),
                    Some(root),
                    "{i} of {n}"
                );
            }
            assert!(path_of_hashes(&hashes[..n], n).is_none());
        }
        // RFC 6962 section 2.1.3's example tree of 7 leaves: d0's path has 3 hashes, d6's 2.
        assert_eq!(path_of_hashes(&hashes[..7], 0).unwrap().len(), 3);
        assert_eq!(path_of_hashes(&hashes[..7], 6).unwrap().len(), 2);
    }

    #[test]
    fn leaf_encoding_exact_bytes() {
        let leaf = Leaf::new("backend", "b-1", "n1").unwrap();
        assert_eq!(leaf.encode(), b"\x07backend\x03b-1\x02n1");
        assert!(Leaf::new("", "b-1", "n").is_err());
        assert!(Leaf::new("backend", "x".repeat(256), "n").is_err());
    }

    #[test]
    fn a_set_has_one_root_whatever_the_order_and_repeats() {
        let a = Leaf::new("backend", "b-1", "n1").unwrap();
        let b = Leaf::new("backend", "b-2", "n2").unwrap();
        let c = Leaf::new("muxer", "m-1", "n3").unwrap();
        let one = root(&[a.clone(), b.clone(), c.clone()]);
        assert_eq!(root(&[c.clone(), a.clone(), b.clone(), a.clone()]), one);
        assert_ne!(root(&[a, b]), one);
        assert_eq!(root(&[]), EMPTY_ROOT);
    }

    #[test]
    fn proof_encoding_exact_bytes_and_refusals() {
        let proof = InclusionProof {
            index: 2,
            size: 3,
            path: vec![[0xAA; 32]],
        };
        let bytes = proof.encode();
        let mut want = vec![0, 0, 0, 2, 0, 0, 0, 3, 1];
        want.extend_from_slice(&[0xAA; 32]);
        assert_eq!(bytes, want);
        assert_eq!(InclusionProof::decode(&bytes).unwrap(), proof);
        assert_eq!(
            InclusionProof::from_claim(&proof.to_claim()).unwrap(),
            proof
        );
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(InclusionProof::decode(&trailing).is_err());
        assert!(InclusionProof::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut long = vec![0, 0, 0, 0, 0, 0, 0, 1, 33];
        long.extend_from_slice(&[0; 33 * 32]);
        assert!(InclusionProof::decode(&long).is_err());
        assert!(InclusionProof::from_claim("AAAA=").is_err());
    }

    #[test]
    fn commitment_ranges_and_rules() {
        let set = LeafSet::new([
            Leaf::new("muxer", "m-1", "n3").unwrap(),
            Leaf::new("backend", "b-2", "n2").unwrap(),
            Leaf::new("backend", "b-1", "n1").unwrap(),
        ]);
        let c = set.commitment().unwrap();
        assert_eq!(
            c.counts,
            BTreeMap::from([("backend".into(), 2), ("muxer".into(), 1)])
        );
        assert_eq!(c.range("backend"), 0..2);
        assert_eq!(c.range("muxer"), 2..3);
        assert!(c.range("other").is_empty());
        for (i, leaf) in set.leaves().iter().enumerate() {
            c.check(leaf, &set.prove(i).unwrap()).unwrap();
        }
        // The muxer's leaf at a backend position: refused even with a valid path.
        let mut lying = c.clone();
        lying.counts = BTreeMap::from([("backend".into(), 1), ("muxer".into(), 2)]);
        assert!(matches!(
            lying.check(&set.leaves()[1], &set.prove(1).unwrap()),
            Err(Error::NotIncluded(_))
        ));
        assert!(Commitment::default().validate().is_ok());
        assert!(Commitment::new(EMPTY_ROOT, BTreeMap::from([("backend".into(), 1)])).is_err());
        assert!(Commitment::new([1; 32], BTreeMap::new()).is_err());
        assert!(Commitment::new([1; 32], BTreeMap::from([("backend".into(), 0)])).is_err());
        assert!(Commitment::new([1; 32], BTreeMap::from([("Backend".into(), 1)])).is_err());
        let many = (0..65).map(|i| (format!("s{i}"), 1)).collect();
        assert!(Commitment::new([1; 32], many).is_err());
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The worked example of `docs/formats.md`, "Token claims": the three
    /// leaves, their hashes, the root and the proof of leaf 1, printed
    /// (`cargo test -p tether-keys worked_example -- --nocapture`) and held
    /// to the values the document shows.
    #[test]
    fn worked_example_of_the_token_claims_section() {
        let set = LeafSet::new([
            Leaf::new("backend", "b-1", "n1").unwrap(),
            Leaf::new("backend", "b-2", "n2").unwrap(),
            Leaf::new("muxer", "m-1", "n3").unwrap(),
        ]);
        let encodings: Vec<String> = set.leaves().iter().map(|l| hex(&l.encode())).collect();
        let hashes: Vec<String> = set.leaves().iter().map(|l| hex(&l.hash())).collect();
        let proof = set.prove(1).unwrap();
        for (i, (e, h)) in encodings.iter().zip(&hashes).enumerate() {
            println!("leaf {i}: {e}  hash {h}");
        }
        println!("root: {}", hex(&set.root()));
        println!("proof of leaf 1: {}", hex(&proof.encode()));
        println!("prf: {}", proof.to_claim());
        assert_eq!(
            encodings,
            [
                "076261636b656e6403622d31026e31",
                "076261636b656e6403622d32026e32",
                "056d75786572036d2d31026e33",
            ]
        );
        assert_eq!(
            hashes,
            [
                "e37320c331f3c9b0f56f8d336927b17688d47e307d5f4eeee3792a326e843de3",
                "fea063084ae451c38f22a8ad4f9a458344b5348f2b17bff45b8d15afcae9d585",
                "b28bfdeea744e350439031a37d70e701ec8e5e7c5931e82e4c5a935d3a2932ad",
            ]
        );
        assert_eq!(
            hex(&set.root()),
            "a2d5331c08b8f82a8aaf165d9a253f42fdac0fd019b214028ad47139a311f685"
        );
        assert_eq!(
            hex(&proof.encode()),
            "000000010000000302e37320c331f3c9b0f56f8d336927b17688d47e307d5f4eeee3792a326e843de3b28bfdeea744e350439031a37d70e701ec8e5e7c5931e82e4c5a935d3a2932ad"
        );
        assert_eq!(
            proof.to_claim(),
            "AAAAAQAAAAMC43MgwzHzybD1b40zaSexdojUfjB9X07u43kqMm6EPeOyi_3up0TjUEOQMaN9cOcB7I5efFkx6C5MWpNdOikyrQ"
        );
        // The consumer's check, as the document walks through it.
        let c = set.commitment().unwrap();
        c.check(&set.leaves()[1], &proof).unwrap();
        let step1 = node_hash(&set.leaves()[0].hash(), &set.leaves()[1].hash());
        assert_eq!(node_hash(&step1, &set.leaves()[2].hash()), c.root);
    }

    fn leaves() -> impl Strategy<Value = Vec<Leaf>> {
        proptest::collection::vec(
            ("[a-c]{1,3}", "[a-z0-9]{1,6}", "[A-Za-z0-9_-]{1,8}")
                .prop_map(|(s, i, n)| Leaf::new(s, i, n).unwrap()),
            1..40,
        )
    }

    proptest! {
        #[test]
        fn proofs_for_random_sets_verify(leaves in leaves()) {
            let set = LeafSet::new(leaves);
            let c = set.commitment().unwrap();
            let all = set.prove_all();
            prop_assert_eq!(all.len(), set.len());
            for (i, leaf) in set.leaves().iter().enumerate() {
                let proof = set.prove(i).unwrap();
                prop_assert_eq!(&all[i], &proof);
                prop_assert!(verify(&c.root, leaf, &proof).is_ok());
                prop_assert!(c.check(leaf, &proof).is_ok());
                prop_assert_eq!(InclusionProof::decode(&proof.encode()).unwrap(), proof);
            }
        }

        #[test]
        fn a_warm_memo_changes_no_verdict(
            leaves in leaves(),
            pick in any::<usize>(),
            flip in 0usize..256,
        ) {
            let set = LeafSet::new(leaves);
            let c = set.commitment().unwrap();
            let mut memo = NodeMemo::default();
            for (i, leaf) in set.leaves().iter().enumerate() {
                let proof = set.prove(i).unwrap();
                prop_assert!(c.check_with_memo(leaf, &proof, &mut memo).is_ok());
            }
            // Warm: every inner node is kept, and every proof still holds.
            prop_assert_eq!(!memo.is_empty(), set.len() > 1);
            for (i, leaf) in set.leaves().iter().enumerate() {
                let proof = set.prove(i).unwrap();
                prop_assert!(c.check_with_memo(leaf, &proof, &mut memo).is_ok());
            }
            let i = pick % set.len();
            let leaf = &set.leaves()[i];
            let proof = set.prove(i).unwrap();
            // One bit of one path element, at any level: refused with the
            // memo as without it.
            if !proof.path.is_empty() {
                let mut p = proof.clone();
                let at = flip % (p.path.len() * 32 * 8);
                p.path[at / 256][(at / 8) % 32] ^= 1 << (at % 8);
                prop_assert!(c.check(leaf, &p).is_err());
                prop_assert!(c.check_with_memo(leaf, &p, &mut memo).is_err());
            }
            let other = Leaf::new(leaf.service(), leaf.instance(), format!("{}x", leaf.nonce())).unwrap();
            prop_assert!(c.check_with_memo(&other, &proof, &mut memo).is_err());
            // The memo of another tree's paths proves nothing here.
            let mut other_set: Vec<Leaf> = set.leaves().to_vec();
            other_set.push(Leaf::new("zz", "extra", "n").unwrap());
            let other_set = LeafSet::new(other_set);
            let oc = other_set.commitment().unwrap();
            let op = other_set.prove(i).unwrap();
            prop_assert_eq!(
                c.check_with_memo(leaf, &op, &mut memo).is_ok(),
                c.check(leaf, &op).is_ok()
            );
            prop_assert!(oc.check(leaf, &op).is_ok());
        }

        #[test]
        fn any_altered_leaf_path_index_or_size_is_refused(
            leaves in leaves(),
            pick in any::<usize>(),
            flip in 0usize..256,
            other in any::<u32>(),
        ) {
            let set = LeafSet::new(leaves);
            let c = set.commitment().unwrap();
            let i = pick % set.len();
            let leaf = &set.leaves()[i];
            let proof = set.prove(i).unwrap();

            // Another leaf: a different nonce, instance or service.
            let altered = [
                Leaf::new(leaf.service(), leaf.instance(), format!("{}x", leaf.nonce())).unwrap(),
                Leaf::new(leaf.service(), format!("{}x", leaf.instance()), leaf.nonce()).unwrap(),
                Leaf::new(format!("{}x", leaf.service()), leaf.instance(), leaf.nonce()).unwrap(),
            ];
            for a in &altered {
                prop_assert!(verify(&c.root, a, &proof).is_err());
                prop_assert!(c.check(a, &proof).is_err());
            }
            // One bit of one path element.
            if !proof.path.is_empty() {
                let mut p = proof.clone();
                let at = flip % (p.path.len() * 32 * 8);
                p.path[at / 256][(at / 8) % 32] ^= 1 << (at % 8);
                prop_assert!(verify(&c.root, leaf, &p).is_err());
            }
            // A path element dropped or added.
            let mut shorter = proof.clone();
            if shorter.path.pop().is_some() {
                prop_assert!(verify(&c.root, leaf, &shorter).is_err());
            }
            let mut longer = proof.clone();
            longer.path.push([0; 32]);
            prop_assert!(verify(&c.root, leaf, &longer).is_err());
            // Any other index.
            let mut p = proof.clone();
            p.index = other % (proof.size + 1);
            if p.index != proof.index {
                prop_assert!(verify(&c.root, leaf, &p).is_err());
                prop_assert!(c.check(leaf, &p).is_err());
            }
            // Any other size: refused against the certificate's counts.
            let mut p = proof.clone();
            p.size = other;
            if p.size != proof.size {
                prop_assert!(c.check(leaf, &p).is_err());
            }
            // The root of another set.
            let mut root = c.root;
            root[flip % 32] ^= 1;
            prop_assert!(verify(&root, leaf, &proof).is_err());
        }
    }
}
