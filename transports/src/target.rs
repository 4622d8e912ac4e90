//! Function targets identified by their address relative to the running image.
//!
//! A parent that wants a child (running the *same* binary, checked with
//! [`crate::os::exe_fingerprint`]) to call a function sends the function's offset from a
//! fixed anchor symbol of this crate. Position-independent executables load at a different
//! base in each process, but the distance between two functions of one image is fixed.

/// A function's position in the image, relative to the anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FnOffset(pub i64);

#[inline(never)]
fn anchor() -> u64 {
    // a body that cannot be folded into another function's
    std::hint::black_box(0x7072_6f63_6163_746f)
}

fn anchor_addr() -> usize {
    let f: fn() -> u64 = anchor;
    f as usize
}

/// The offset of a function pointer (`F` must be a function pointer type such as
/// `fn(Vec<u8>) -> u32`).
///
/// # Panics
///
/// If `F` is not pointer-sized (it is then not a function pointer: a caller bug).
pub fn offset_of<F: Copy + 'static>(f: F) -> FnOffset {
    assert_eq!(
        std::mem::size_of::<F>(),
        std::mem::size_of::<usize>(),
        "offset_of takes a function pointer"
    );
    // SAFETY: `F` is pointer-sized (asserted) and `Copy`; reading its bits as usize reads
    // a code address and creates nothing that could be invalid.
    let addr: usize = unsafe { std::mem::transmute_copy(&f) };
    FnOffset((addr as i64).wrapping_sub(anchor_addr() as i64))
}

/// Turns an offset made by [`offset_of`] back into a callable function pointer.
///
/// # Safety
///
/// `off` must come from [`offset_of`] applied to a value of exactly type `F`, in a
/// process running the same binary image (same file, same build) as this one. Calling
/// the result otherwise jumps to an arbitrary address.
pub unsafe fn resolve<F: Copy + 'static>(off: FnOffset) -> F {
    assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<usize>());
    let addr = (anchor_addr() as i64).wrapping_add(off.0) as usize;
    // SAFETY: per the contract, `addr` is the address of a function of type `F` in this
    // image, so these bits are a valid value of `F`.
    unsafe { std::mem::transmute_copy(&addr) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn triple(x: u32) -> u32 {
        x * 3
    }

    #[test]
    fn offset_round_trips_to_a_callable_pointer() {
        let off = offset_of(triple as fn(u32) -> u32);
        // SAFETY: made from a `fn(u32) -> u32` in this very process.
        let f: fn(u32) -> u32 = unsafe { resolve(off) };
        assert_eq!(f(5), 15);
        assert_ne!(off, offset_of(anchor as fn() -> u64));
    }
}

/// A function target as it travels to a child: its offset and its type's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRef {
    /// Offset from the anchor.
    pub offset: FnOffset,
    /// `std::any::type_name` of the function pointer type.
    pub type_name: String,
}

/// Describes function pointer `f` of type `F` for a child running the same image.
pub fn describe<F: Copy + 'static>(f: F) -> TargetRef {
    TargetRef {
        offset: offset_of(f),
        type_name: std::any::type_name::<F>().to_string(),
    }
}

/// Proof that this process runs the same binary image as the process that made the
/// [`TargetRef`]s it is about to resolve. Made only by [`SameImage::verify`].
#[derive(Debug, Clone)]
pub struct SameImage(());

impl SameImage {
    /// Compares the parent's image fingerprint with this process's.
    ///
    /// # Errors
    ///
    /// A different binary (a message saying so), or `/proc` unreadable.
    pub fn verify(parent_fingerprint: &[u64; 5]) -> std::io::Result<SameImage> {
        let mine = crate::os::exe_fingerprint()?;
        if &mine != parent_fingerprint {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "refusing to run a target from another binary image \
                     (parent image {parent_fingerprint:?}, this image {mine:?})"
                ),
            ));
        }
        Ok(SameImage(()))
    }
}

/// Resolves `r` as a function pointer of type `F`, or `None` when `r` was described as
/// another type.
///
/// Soundness rests on two facts this function checks or is given: the image is the same
/// (`proof`), and `r` was made by [`describe`] for the same type `F` (type name
/// compared). The control channel that carries `r` is a private socketpair between a
/// parent and the child it started, so only that parent can write it.
pub fn resolve_checked<F: Copy + 'static>(r: &TargetRef, proof: &SameImage) -> Option<F> {
    let _ = proof;
    if r.type_name != std::any::type_name::<F>() {
        return None;
    }
    // SAFETY: same image (proof), and the offset was made by `describe::<F>` in the
    // parent (the type names match), which is `resolve`'s contract.
    Some(unsafe { resolve::<F>(r.offset) })
}

#[cfg(test)]
mod checked_tests {
    use super::*;

    fn add_one(x: i32) -> i32 {
        x + 1
    }

    #[test]
    fn checked_resolution_matches_types_and_images() {
        let proof = SameImage::verify(&crate::os::exe_fingerprint().unwrap()).unwrap();
        let r = describe(add_one as fn(i32) -> i32);
        let f: fn(i32) -> i32 = resolve_checked(&r, &proof).unwrap();
        assert_eq!(f(1), 2);
        assert!(resolve_checked::<fn(u8) -> u8>(&r, &proof).is_none());
        assert!(SameImage::verify(&[0, 0, 0, 0, 0]).is_err());
    }
}
