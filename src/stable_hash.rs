//! The one hash for values that must agree across processes and releases:
//! HTTP validators (ETags) that instances behind one load balancer hand out
//! alike, and the advisory lock keys projection runners contend for. It is
//! FNV-1a 64 (the `fnv` crate), not `std`'s `DefaultHasher`, whose
//! algorithm may change between Rust releases.
use std::hash::Hasher;

/// A hasher to feed piece by piece.
pub fn hasher() -> fnv::FnvHasher {
    fnv::FnvHasher::default()
}

/// The hash of `parts`, fed in order with nothing between them.
pub fn of(parts: &[&[u8]]) -> u64 {
    let mut h = hasher();
    for part in parts {
        h.write(part);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    #[test]
    fn it_is_fnv1a_64_so_keys_held_by_older_releases_still_match() {
        // FNV-1a 64 test vectors (draft-eastlake-fnv), and the lock key of
        // a projection as releases before this module computed it.
        assert_eq!(super::of(&[]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(super::of(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(super::of(&[b"foo"]), 0xdcb2_7518_fed9_d577);
        assert_eq!(super::of(&[b"fo", b"o"]), super::of(&[b"foo"]));
    }
}
