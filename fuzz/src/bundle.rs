//! The guest bundle's header parser (`platform::guest_bundle`): whatever bytes a loader put
//! where `/chosen` says, parsing never panics; a header it accepts has a kernel and parts that
//! lie inside the bundle, on their alignment, after the header and apart from each other; a
//! bundle it verifies has parts whose bytes hash to the header's values and rewrites to a
//! bundle that verifies to the same parts.

use platform::guest_bundle::{Bundle, BundleError, BundleHeader, HEADER_SIZE, PART_ALIGN, PartKind, hash, write};

/// Parses `data` as a bundle (the first bytes may be replaced by a valid header, so the
/// fuzzer reaches the layout and hash checks) and checks the properties.
pub fn fuzz(data: &[u8]) {
    check(data);
    // The same bytes behind a well-formed header whose parts are taken from the data.
    if let Some((&split, rest)) = data.split_first() {
        let (kernel, initramfs) = rest.split_at(usize::from(split).min(rest.len()));
        let rewritten = write(kernel, initramfs, "");
        match Bundle::verify(&rewritten) {
            Ok(bundle) => assert_eq!((bundle.kernel, bundle.initramfs, bundle.cmdline), (kernel, initramfs, "")),
            // A bundle without a kernel is the one thing written that does not verify.
            Err(error) => assert!(kernel.is_empty() && error == BundleError::NoKernel, "a written bundle: {error}"),
        }
        check(&rewritten);
    }
}

fn check(data: &[u8]) {
    let Ok(header) = BundleHeader::parse(data, data.len() as u64) else {
        assert!(Bundle::verify(data).is_err(), "verify accepts what parse refuses");
        return;
    };
    assert!(header.kernel.size > 0);
    for kind in PartKind::ALL {
        let part = header.part(kind);
        if part.size == 0 {
            continue;
        }
        assert!(part.offset.is_multiple_of(PART_ALIGN) && part.offset >= HEADER_SIZE as u64);
        assert!(part.range().end <= data.len() as u64);
        assert_eq!(header.bytes(data, kind).len() as u64, part.size);
        for other in PartKind::ALL.into_iter().filter(|o| *o != kind) {
            let o = header.part(other);
            assert!(o.size == 0 || o.range().end <= part.offset || part.range().end <= o.offset, "{kind:?} overlaps {other:?}");
        }
    }
    if let Ok(bundle) = Bundle::verify(data) {
        assert_eq!(hash(bundle.kernel), header.kernel.hash);
        let again = write(bundle.kernel, bundle.initramfs, bundle.cmdline);
        let reread = Bundle::verify(&again).expect("a rewritten bundle verifies");
        assert_eq!((reread.kernel, reread.initramfs, reread.cmdline), (bundle.kernel, bundle.initramfs, bundle.cmdline));
    }
}
