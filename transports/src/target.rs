//! Function targets identified by their address relative to the running image.
//!
//! A parent that wants a child (running the *same* binary, checked with
//! [`crate::os::exe_fingerprint`]) to call a function sends the function's offset from a
//! fixed anchor symbol of this crate. Position-independent executables load at a different
//! base in each process, but the distance between two functions of one image is fixed.
//!
//! # Only described targets resolve
//!
//! A [`TargetRef`] is made only by [`describe`] / [`describe_target`]; its fields are
//! private and it carries a MAC: SipHash-2-4, keyed with a 128-bit secret of the process
//! tree, over its offset and type name. [`resolve_checked`] and [`resolve_target`] refuse
//! a reference whose MAC does not verify ([`TargetError::Forged`]), so safe code cannot
//! make a callable pointer to an address of its choosing: a reference rebuilt from
//! bytes ([`TargetRef::from_parts`], a decoded message) resolves only if a process of
//! this tree described it.
//!
//! The secret is drawn from the kernel (`/dev/urandom`) by the root process the first time
//! it is needed. A child made by `fork` (the `Fork` start method, the fork server's
//! children) has it in its copied memory. A child made by [`crate::os::spawn_self`] gets
//! it in an environment variable of its `exec` that a constructor of this crate reads and
//! removes before `main` runs (single-threaded), so that no code of the child, and no
//! child it starts otherwise, sees it. No function returns or sets the key.
//!
//! The variable's digits are also overwritten with `0` in the environment strings
//! themselves, which is what `/proc/self/environ` shows. Out of this model (as writing
//! `/proc/self/mem` is out of Rust's): code that reads a process's memory through
//! `/proc/<pid>/mem` or a debugger learns the key.

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

/// A function target as it travels to a child: its offset, its type's name and a MAC
/// over both, keyed with this process tree's secret (see the [module](self) docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRef {
    offset: FnOffset,
    type_name: String,
    mac: u64,
}

impl TargetRef {
    fn new(offset: FnOffset, type_name: String) -> TargetRef {
        let mac = mac(offset, &type_name);
        TargetRef {
            offset,
            type_name,
            mac,
        }
    }

    /// A reference rebuilt from the parts a message carried ([`TargetRef::offset`],
    /// [`TargetRef::type_name`], [`TargetRef::mac`] on the sending side). Nothing is
    /// checked here: resolving it checks the MAC, and refuses it unless a process of
    /// this tree described it.
    pub fn from_parts(offset: i64, type_name: String, mac: u64) -> TargetRef {
        TargetRef {
            offset: FnOffset(offset),
            type_name,
            mac,
        }
    }

    /// The offset from the anchor.
    pub fn offset(&self) -> i64 {
        self.offset.0
    }

    /// `std::any::type_name` of the function pointer type (or the trampoline's name).
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// The MAC that makes the reference resolvable in this process tree.
    pub fn mac(&self) -> u64 {
        self.mac
    }

    /// Splits the reference into its parts (for a message).
    pub fn into_parts(self) -> (i64, String, u64) {
        (self.offset.0, self.type_name, self.mac)
    }

    fn verify(&self) -> Result<(), TargetError> {
        // (not constant-time: the MAC is compared once per reference, and a process that
        // can time it is a process of the tree that could describe targets anyway)
        if mac(self.offset, &self.type_name) == self.mac {
            Ok(())
        } else {
            Err(TargetError::Forged {
                type_name: self.type_name.clone(),
            })
        }
    }
}

/// Why a [`TargetRef`] does not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    /// The reference was not made by [`describe`] / [`describe_target`] in this process
    /// tree: its MAC does not verify (forged, corrupted, or from another program run).
    Forged {
        /// The type name the reference claims.
        type_name: String,
    },
    /// The reference was described for another type than the one asked for.
    WrongType {
        /// The type name the reference carries.
        found: String,
        /// The type name expected.
        expected: String,
    },
}

impl std::fmt::Display for TargetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetError::Forged { type_name } => write!(
                f,
                "refusing a function reference ({type_name}) that no process of this \
                 program described: its MAC does not verify"
            ),
            TargetError::WrongType { found, expected } => {
                write!(f, "function reference of type {found}, expected {expected}")
            }
        }
    }
}

impl std::error::Error for TargetError {}

/// The environment variable that carries the tree's key to a spawned child (read and
/// removed before `main`, see the module docs).
pub(crate) const KEY_ENV: &str = "PROCACTOR_TREE_KEY";

/// The key a spawned child found in its start environment (set before `main`).
static INHERITED_KEY: std::sync::OnceLock<[u64; 2]> = std::sync::OnceLock::new();
/// This process's key: inherited, or drawn at first use.
static KEY: std::sync::OnceLock<[u64; 2]> = std::sync::OnceLock::new();

fn parse_key(v: &[u8]) -> Option<[u64; 2]> {
    let s = std::str::from_utf8(v).ok()?;
    if s.len() != 32 {
        return None;
    }
    let k0 = u64::from_str_radix(s.get(..16)?, 16).ok()?;
    let k1 = u64::from_str_radix(s.get(16..)?, 16).ok()?;
    Some([k0, k1])
}

static TAKEN: std::sync::Once = std::sync::Once::new();

/// Takes the key a parent put in this process's start environment, and removes the
/// variable so that nothing else reads it; once. It runs before `main`, single-threaded:
/// from this crate's constructor, or from an earlier constructor that needs the key (a
/// test binary's `test_support!` runs `init`, which starts a child's target, as a
/// constructor, in an order the linker chooses).
fn take_inherited_key() {
    TAKEN.call_once(|| {
        use std::os::unix::ffi::OsStrExt;
        if let Some(v) = std::env::var_os(KEY_ENV) {
            if let Some(k) = parse_key(v.as_bytes()) {
                let _ = INHERITED_KEY.set(k);
            }
            // Changing the environment is sound only while no other thread can read
            // it: always so from a constructor; were this crate's constructor not linked
            // in, the first `key()` may come later, when threads run: then the variable
            // is only read (and stays visible to this process's code).
            if crate::os::thread_count().is_ok_and(|n| n == 1) {
                scrub_initial_environment();
                std::env::remove_var(KEY_ENV);
            }
        }
    });
}

extern "C" {
    /// The C library's environment array (`environ(7)`).
    static environ: *const *mut std::ffi::c_char;
}

/// Overwrites the key's digits with `0` in the environment strings themselves: the
/// initial ones are the memory `/proc/self/environ` shows, which removing the variable
/// from the array does not change.
fn scrub_initial_environment() {
    let prefix = format!("{KEY_ENV}=");
    // SAFETY: called only from `take_inherited_key` when the kernel counts one thread in
    // this process (before `main`, from a constructor, or a single-threaded program), so
    // no other thread exists to read or change the environment meanwhile. `environ` is the C
    // library's NULL-terminated array of pointers to NUL-terminated strings, which live in
    // writable memory (the initial process stack, or the heap for variables set later);
    // we read each string up to its NUL and overwrite bytes inside it only, never the NUL.
    unsafe {
        let mut p = environ;
        if p.is_null() {
            return;
        }
        while !(*p).is_null() {
            let s = *p;
            let bytes = std::ffi::CStr::from_ptr(s).to_bytes();
            if bytes.starts_with(prefix.as_bytes()) {
                for i in prefix.len()..bytes.len() {
                    s.add(i).cast::<u8>().write(b'0');
                }
            }
            p = p.add(1);
        }
    }
}

extern "C" fn take_inherited_key_at_start() {
    take_inherited_key();
}

#[used]
#[link_section = ".init_array"]
static TAKE_INHERITED_KEY: extern "C" fn() = take_inherited_key_at_start;

fn random_key() -> [u64; 2] {
    use std::io::Read;
    let mut b = [0u8; 16];
    let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if ok.is_err() {
        // (no /dev/urandom — never seen where procactor runs: the standard library's
        // hash keys, which it draws from the kernel's getrandom, mixed with the time)
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        let a = h.finish();
        let mut h2 = std::collections::hash_map::RandomState::new().build_hasher();
        h2.write_u64(a);
        b[..8].copy_from_slice(&a.to_le_bytes());
        b[8..].copy_from_slice(&h2.finish().to_le_bytes());
    }
    let mut k = [0u64; 2];
    for (i, w) in k.iter_mut().enumerate() {
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[i * 8..i * 8 + 8]);
        *w = u64::from_le_bytes(x);
    }
    k
}

/// Draws (or takes the inherited) key now if it was not yet: called before every `fork`,
/// so that parent and child share one key (a child that drew its own could not verify
/// the references its parent describes later, and the other way round).
pub(crate) fn ensure_key() {
    let _ = key();
}

fn key() -> [u64; 2] {
    take_inherited_key();
    *KEY.get_or_init(|| INHERITED_KEY.get().copied().unwrap_or_else(random_key))
}

/// The key as the environment variable's value, for a child this process spawns.
pub(crate) fn key_for_child() -> String {
    let [k0, k1] = key();
    format!("{k0:016x}{k1:016x}")
}

fn mac(offset: FnOffset, type_name: &str) -> u64 {
    use std::hash::Hasher;
    let [k0, k1] = key();
    #[allow(deprecated)] // (SipHash-2-4 with a given key, which std has no other name for)
    let mut h = std::hash::SipHasher::new_with_keys(k0, k1);
    h.write_i64(offset.0);
    h.write(type_name.as_bytes());
    h.finish()
}

/// Describes function pointer `f` of type `F` for a child running the same image.
pub fn describe<F: Copy + 'static>(f: F) -> TargetRef {
    TargetRef::new(offset_of(f), std::any::type_name::<F>().to_string())
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

/// Resolves `r` as a function pointer of type `F`.
///
/// Soundness rests on three facts this function checks or is given: the image is the
/// same (`proof`), `r` was made by [`describe`] in this process tree (its MAC verifies,
/// see the [module](self) docs), and for the same type `F` (type name compared).
///
/// # Errors
///
/// [`TargetError::Forged`] when the MAC does not verify; [`TargetError::WrongType`] when
/// `r` was described as another type.
pub fn resolve_checked<F: Copy + 'static>(
    r: &TargetRef,
    proof: &SameImage,
) -> Result<F, TargetError> {
    let _ = proof;
    r.verify()?;
    if r.type_name != std::any::type_name::<F>() {
        return Err(TargetError::WrongType {
            found: r.type_name.clone(),
            expected: std::any::type_name::<F>().to_string(),
        });
    }
    // SAFETY: same image (proof), and the offset was made by `describe::<F>` in this
    // process tree (the MAC verifies, and only `describe`/`describe_target` make one)
    // for type `F` (the type names match), which is `resolve`'s contract.
    Ok(unsafe { resolve::<F>(r.offset) })
}

// ------------------------------------------------------------------ targets of any arity

mod sealed {
    /// Implemented only by this module's blanket impls: nobody else can make a type a
    /// [`Target`](super::Target) (the trampolines below conjure zero-sized targets, which
    /// is sound only for functions and closures).
    pub trait Sealed<Args, Signature> {}
}

/// A function that a process, a pool worker or a supervisor can run in another process:
/// a function item, a closure that captures nothing, or a function pointer, taking 0 to
/// 8 arguments.
///
/// The arguments are given as one value: `()` for none, the value itself for one
/// (`Process::new(square, 7)`), a tuple for two or more (`Process::new(mul, (6, 7))`
/// calls `mul(6, 7)`). A one-argument function whose argument is a tuple takes that
/// tuple as it is (`fn f((a, b): (u32, u32))` with `(1, 2)`). `Signature` is the
/// function pointer type of the target (`fn(A, B) -> R`); it is inferred, never
/// written.
///
/// A closure that captures variables is refused when the program is built (a
/// monomorphisation-time error, reported by `cargo build`, not by `cargo check`): the
/// child runs the same binary and finds the function by its address, but a captured
/// value would have to travel too. The one exception the compiler cannot see is a
/// closure whose captures are exactly pointer-sized (one `u64`, one `&'static T`): it is
/// refused when the process starts, with an error. Pass such values as arguments.
///
/// This trait is sealed: it is implemented for every `F: Fn(A, …) -> R + Copy + 'static`
/// and for nothing else.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a process target",
    label = "not a function (or a closure capturing nothing) that takes these arguments",
    note = "a target is a function (or a closure capturing nothing) of 0 to 8 arguments, \
            given as one value: `()` for none, the value itself for one \
            (`Process::new(square, 7)`), a tuple for more (`Process::new(mul, (6, 7))`)",
    note = "the argument types must be exactly the function's parameter types"
)]
pub trait Target<Args, Signature>: sealed::Sealed<Args, Signature> + Copy + 'static {
    /// What the function returns.
    type Output;

    /// Calls the function with the arguments unpacked.
    fn call(self, args: Args) -> Self::Output;
}

impl<F, A, R> sealed::Sealed<A, fn(A) -> R> for F where F: Fn(A) -> R + Copy + 'static {}

impl<F, A, R> Target<A, fn(A) -> R> for F
where
    F: Fn(A) -> R + Copy + 'static,
{
    type Output = R;
    fn call(self, a: A) -> R {
        self(a)
    }
}

macro_rules! target_arity {
    ($($t:ident $v:ident),*) => {
        impl<F, $($t,)* R> sealed::Sealed<($($t,)*), fn($($t),*) -> R> for F
        where
            F: Fn($($t),*) -> R + Copy + 'static,
        {
        }

        impl<F, $($t,)* R> Target<($($t,)*), fn($($t),*) -> R> for F
        where
            F: Fn($($t),*) -> R + Copy + 'static,
        {
            type Output = R;
            #[allow(clippy::unused_unit)]
            fn call(self, ($($v,)*): ($($t,)*)) -> R {
                self($($v),*)
            }
        }
    };
}

target_arity!();
target_arity!(A a, B b);
target_arity!(A a, B b, C c);
target_arity!(A a, B b, C c, D d);
target_arity!(A a, B b, C c, D d, E e);
target_arity!(A a, B b, C c, D d, E e, G g);
target_arity!(A a, B b, C c, D d, E e, G g, H h);
target_arity!(A a, B b, C c, D d, E e, G g, H h, I i);

/// Makes a value of the zero-sized type `F` out of nothing.
///
/// `None` when `F` is not zero-sized (never the case where it is called: the size is
/// known at compile time and the branch is folded away).
///
/// # Safety
///
/// A value of type `F` must have existed in this program (in this process, or in the
/// parent process running the same image): `F` being `Copy`, a conjured value is then
/// no more than another copy of it. Conjuring a type that was never constructed would
/// bypass whatever its constructor checks.
unsafe fn conjure<F: Copy + 'static>() -> Option<F> {
    if std::mem::size_of::<F>() != 0 {
        return None;
    }
    // SAFETY: `F` has no bytes, so reading it through a dangling but well-aligned
    // non-null pointer reads no memory; the caller promises that `F` is inhabited by a
    // value that existed in this program, and `F: Copy` allows any number of copies.
    Some(unsafe { std::ptr::NonNull::<F>::dangling().as_ptr().read() })
}

/// The function a zero-sized target travels as: its address is specific to `F` (one
/// monomorphisation per target), and it conjures `F` to call it.
fn trampoline<F, Args, S>(args: Args) -> F::Output
where
    F: Target<Args, S>,
{
    // SAFETY: the address of `trampoline::<F, …>` is taken in one place only,
    // `describe_target`, which holds a value of `F` (and checked it is zero-sized); a
    // child calls it after resolving that address in the same image.
    match unsafe { conjure::<F>() } {
        Some(f) => f.call(args),
        // (unreachable: `describe_target` and `resolve_target` use the trampoline only
        // for zero-sized targets)
        None => unreachable!("trampoline of a target that is not zero-sized"),
    }
}

/// Why a value cannot be a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotATarget(pub String);

impl std::fmt::Display for NotATarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotATarget {}

fn trampoline_name<F, Args, S>() -> String
where
    F: Target<Args, S>,
{
    format!(
        "trampoline of {} as {}",
        std::any::type_name::<F>(),
        std::any::type_name::<fn(Args) -> F::Output>()
    )
}

/// Describes target `f` for a child running the same image: a zero-sized target (a
/// function item or a closure capturing nothing) as the address of its trampoline, a
/// function pointer as itself.
///
/// A capturing closure is a build error when its captures are not pointer-sized, and
/// this error otherwise.
///
/// # Errors
///
/// `f` is a closure that captures a pointer-sized value.
pub fn describe_target<F, Args, S>(f: F) -> Result<TargetRef, NotATarget>
where
    F: Target<Args, S>,
    Args: 'static,
    S: 'static,
{
    const {
        assert!(
            std::mem::size_of::<F>() == 0 || std::mem::size_of::<F>() == std::mem::size_of::<S>(),
            "a closure that captures variables cannot be a process target: pass the \
             values as arguments instead"
        )
    };
    if std::mem::size_of::<F>() == 0 {
        let t: fn(Args) -> F::Output = trampoline::<F, Args, S>;
        Ok(TargetRef::new(
            offset_of(t),
            trampoline_name::<F, Args, S>(),
        ))
    } else if std::any::TypeId::of::<F>() == std::any::TypeId::of::<S>() {
        // a function pointer: its own type is its signature
        Ok(describe(f))
    } else {
        Err(NotATarget(format!(
            "{} captures variables and cannot be a process target: pass the values as \
             arguments instead",
            std::any::type_name::<F>()
        )))
    }
}

/// A target resolved in a child: call it with [`Resolved::call`].
pub struct Resolved<F: Target<Args, S>, Args, S> {
    how: How<F, Args, S>,
}

enum How<F: Target<Args, S>, Args, S> {
    Trampoline(fn(Args) -> F::Output),
    Pointer(F),
}

impl<F: Target<Args, S>, Args, S> Clone for Resolved<F, Args, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F: Target<Args, S>, Args, S> Copy for Resolved<F, Args, S> {}

impl<F: Target<Args, S>, Args, S> Clone for How<F, Args, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F: Target<Args, S>, Args, S> Copy for How<F, Args, S> {}

impl<F: Target<Args, S>, Args, S> std::fmt::Debug for Resolved<F, Args, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("target", &std::any::type_name::<F>())
            .finish()
    }
}

impl<F: Target<Args, S>, Args, S> Resolved<F, Args, S> {
    /// Calls the target.
    pub fn call(&self, args: Args) -> F::Output {
        match self.how {
            How::Trampoline(t) => t(args),
            How::Pointer(f) => f.call(args),
        }
    }
}

/// Resolves a reference made by [`describe_target`]`::<F, Args, S>` in this process
/// tree.
///
/// As [`resolve_checked`], soundness rests on the image being the same (`proof`) and
/// the reference's MAC verifying; the name it carries is compared with what
/// `describe_target` would have written for `F`.
///
/// # Errors
///
/// As [`resolve_checked`]: a forged reference, or one made for another target.
pub fn resolve_target<F, Args, S>(
    r: &TargetRef,
    proof: &SameImage,
) -> Result<Resolved<F, Args, S>, TargetError>
where
    F: Target<Args, S>,
    Args: 'static,
    S: 'static,
{
    r.verify()?;
    if std::mem::size_of::<F>() == 0 {
        let expected = trampoline_name::<F, Args, S>();
        if r.type_name != expected {
            return Err(TargetError::WrongType {
                found: r.type_name.clone(),
                expected,
            });
        }
        let _ = proof;
        // SAFETY: same image (proof), and a process of this tree made this offset from
        // `trampoline::<F, Args, S>` as a `fn(Args) -> F::Output` (the MAC verifies and
        // the names match), which is `resolve`'s contract.
        let t: fn(Args) -> F::Output = unsafe { resolve(r.offset) };
        Ok(Resolved {
            how: How::Trampoline(t),
        })
    } else if std::any::TypeId::of::<F>() == std::any::TypeId::of::<S>() {
        let f: F = resolve_checked(r, proof)?;
        Ok(Resolved {
            how: How::Pointer(f),
        })
    } else {
        Err(TargetError::WrongType {
            found: r.type_name.clone(),
            expected: std::any::type_name::<F>().to_string(),
        })
    }
}

#[cfg(test)]
mod arity_tests {
    use super::*;

    fn hello() -> &'static str {
        "hello"
    }
    fn square(x: u64) -> u64 {
        x * x
    }
    fn mul(a: i32, b: i32) -> i32 {
        a * b
    }
    #[allow(clippy::too_many_arguments)]
    fn eight(a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8, h: u8) -> u32 {
        [a, b, c, d, e, f, g, h].iter().map(|&x| u32::from(x)).sum()
    }
    fn pair((a, b): (u32, u32)) -> u32 {
        a + b
    }

    fn round_trip<F, Args, S>(f: F, args: Args) -> F::Output
    where
        F: Target<Args, S>,
        Args: 'static,
        S: 'static,
    {
        let proof = SameImage::verify(&crate::os::exe_fingerprint().unwrap()).unwrap();
        let r = describe_target(f).unwrap();
        resolve_target::<F, Args, S>(&r, &proof).unwrap().call(args)
    }

    #[test]
    fn every_arity_round_trips() {
        assert_eq!(round_trip(hello, ()), "hello");
        assert_eq!(round_trip(square, 7), 49);
        assert_eq!(round_trip(mul, (6, 7)), 42);
        assert_eq!(round_trip(eight, (1, 2, 3, 4, 5, 6, 7, 8)), 36);
        assert_eq!(round_trip(pair, (1, 2)), 3);
        assert_eq!(round_trip(|a: u8, b: u8, c: u8| a + b + c, (1, 2, 3)), 6);
        // function pointers travel as themselves
        let p: fn(i32, i32) -> i32 = mul;
        assert_eq!(round_trip(p, (3, 4)), 12);
        let q: fn(u64) -> u64 = square;
        assert_eq!(round_trip(q, 3), 9);
    }

    #[test]
    fn a_reference_resolves_only_as_its_own_target() {
        type Sig = fn(u64) -> u64;
        fn cube(x: u64) -> u64 {
            x * x * x
        }
        fn resolves<F: Target<u64, Sig>>(_: F, r: &TargetRef, p: &SameImage) -> bool {
            resolve_target::<F, u64, Sig>(r, p).is_ok()
        }
        let proof = SameImage::verify(&crate::os::exe_fingerprint().unwrap()).unwrap();
        let r = describe_target(square).unwrap();
        assert!(resolves(square, &r, &proof));
        // another function of the same signature has another trampoline
        assert!(!resolves(cube, &r, &proof));
        // a trampoline reference is not a function pointer, nor the reverse
        assert!(!resolves(square as Sig, &r, &proof));
        let p = describe_target(square as Sig).unwrap();
        assert!(resolves(square as Sig, &p, &proof));
        assert!(!resolves(square, &p, &proof));
    }

    #[test]
    fn a_pointer_sized_capture_is_refused() {
        let y = 5u64;
        let e = describe_target(move |x: u64| x + y).unwrap_err();
        assert!(e.0.contains("captures variables"), "{e}");
    }

    #[test]
    fn conjured_zero_sized_values_work_and_others_are_refused() {
        fn conjure_like<F: Copy + 'static>(_: &F) -> Option<F> {
            // SAFETY: a value of `F` exists (the argument).
            unsafe { conjure::<F>() }
        }
        let add = |a: u32, b: u32| a + b;
        let f = conjure_like(&add).expect("a closure capturing nothing is zero-sized");
        assert_eq!(f(2, 3), 5);
        let g = conjure_like(&(square as fn(u64) -> u64));
        assert!(g.is_none(), "a function pointer is not zero-sized");
    }
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
        assert!(matches!(
            resolve_checked::<fn(u8) -> u8>(&r, &proof),
            Err(TargetError::WrongType { .. })
        ));
        assert!(SameImage::verify(&[0, 0, 0, 0, 0]).is_err());
    }

    fn forged_variants(r: &TargetRef) -> Vec<TargetRef> {
        let (off, name, mac) = r.clone().into_parts();
        vec![
            // another address, the MAC left as it was
            TargetRef::from_parts(off + 16, name.clone(), mac),
            // a MAC guessed
            TargetRef::from_parts(off + 16, name.clone(), 0),
            // the right address with a damaged MAC
            TargetRef::from_parts(off, name.clone(), mac ^ 1),
            // another type name for the same address and MAC
            TargetRef::from_parts(off, format!("{name} "), mac),
        ]
    }

    #[test]
    fn a_forged_reference_is_refused_with_a_clear_error() {
        let proof = SameImage::verify(&crate::os::exe_fingerprint().unwrap()).unwrap();
        let r = describe(add_one as fn(i32) -> i32);
        // the parts round-trip
        let back = r.clone().into_parts();
        let again = TargetRef::from_parts(back.0, back.1, back.2);
        assert_eq!(
            resolve_checked::<fn(i32) -> i32>(&again, &proof).unwrap()(2),
            3
        );
        for forged in forged_variants(&r) {
            let e = resolve_checked::<fn(i32) -> i32>(&forged, &proof).unwrap_err();
            assert!(matches!(e, TargetError::Forged { .. }), "{e:?}");
            assert!(e.to_string().contains("MAC does not verify"), "{e}");
        }
        // the same through `resolve_target`, for a trampoline and for a pointer
        fn refused<F: Target<i32, fn(i32) -> i32>>(_: F, r: &TargetRef, p: &SameImage) -> bool {
            matches!(
                resolve_target::<F, i32, fn(i32) -> i32>(r, p),
                Err(TargetError::Forged { .. })
            )
        }
        let t = describe_target(add_one).unwrap();
        for forged in forged_variants(&t) {
            assert!(refused(add_one, &forged, &proof));
        }
        assert_eq!(
            resolve_target::<fn(i32) -> i32, i32, fn(i32) -> i32>(&r, &proof)
                .unwrap()
                .call(4),
            5
        );
        for forged in forged_variants(&r) {
            let e = resolve_target::<fn(i32) -> i32, i32, fn(i32) -> i32>(&forged, &proof);
            assert!(matches!(e, Err(TargetError::Forged { .. })));
        }
    }

    #[test]
    fn the_key_travels_as_32_hex_digits() {
        let k = key_for_child();
        assert_eq!(parse_key(k.as_bytes()), Some(key()));
        assert_eq!(parse_key(b"xyz"), None);
        assert_eq!(parse_key(&[b'g'; 32]), None);
    }
}
