use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{
    fallocate, fcntl_add_seals, fcntl_get_seals, fstat, ftruncate, memfd_create, FallocateFlags,
    MemfdFlags, SealFlags,
};
use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

/// A memfd-backed shared mapping, created once and passed to other processes as a file
/// descriptor.
///
/// The mapping is `MAP_SHARED`, page-aligned and zero-filled at creation. Every process
/// that maps the same memory file sees the same bytes. The region is unmapped when the
/// value is dropped; the memory itself lives while any process holds a mapping or the fd.
///
/// The memory file is *sealed* once sized (`F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`):
/// no process holding the descriptor — however it reopens it — can change its size, so
/// no peer can make another process's mapping fault with `SIGBUS` by truncating the
/// file. [`ShmRegion::from_fd`] and [`ShmRegion::from_fd_prefix`] refuse a file without
/// those seals. A peer can still write any bytes into the memory (that is what sharing
/// means): readers treat its contents as untrusted (see the crate documentation).
///
/// Access is through atomics ([`ShmRegion::atomic_u32`], [`ShmRegion::atomic_u64`]) and
/// through raw pointers whose use the caller justifies (see [`ShmRegion::as_ptr`]).
///
/// # Examples
///
/// ```
/// use procactor_transports::shm::ShmRegion;
/// use std::sync::atomic::Ordering;
///
/// let a = ShmRegion::create("example", 4096).unwrap();
/// let b = ShmRegion::from_fd(a.try_clone_fd().unwrap()).unwrap(); // a second mapping
/// a.atomic_u32(0).store(7, Ordering::SeqCst);
/// assert_eq!(b.atomic_u32(0).load(Ordering::SeqCst), 7);
/// ```
pub struct ShmRegion {
    fd: OwnedFd,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; every access through the
// public API is either atomic or goes through raw pointers whose users uphold the
// synchronisation rules of their own protocol (locks in shared memory).
unsafe impl Send for ShmRegion {}
// SAFETY: as above: shared access is through atomics or caller-synchronised raw pointers.
unsafe impl Sync for ShmRegion {}

impl std::fmt::Debug for ShmRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmRegion")
            .field("fd", &self.fd)
            .field("len", &self.len)
            .finish()
    }
}

impl ShmRegion {
    /// Creates a zero-filled region of at least `len` bytes (rounded up to whole pages).
    ///
    /// `name` only labels the memory file in `/proc/<pid>/fd` for debugging; it is not a
    /// file-system name and nothing can open the region by it.
    ///
    /// # Errors
    ///
    /// `len == 0`, or the kernel refusing `memfd_create`, `ftruncate` or `mmap`.
    pub fn create(name: &str, len: usize) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a shared memory region needs at least one byte",
            ));
        }
        let len = round_to_page(len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "region size overflows"))?;
        let fd = sealed_memfd(name, len as u64)?;
        Self::map(fd, len)
    }

    /// Creates a region whose memory file is `file_len` bytes long (at least the mapping)
    /// but of which only the first `map_len` bytes (rounded up to whole pages) are mapped. The rest of the file
    /// is sparse: it takes no memory until written through a [`ShmWindow`]
    /// ([`map_window`](ShmRegion::map_window)), and [`punch_hole`](ShmRegion::punch_hole)
    /// gives written pages back.
    ///
    /// # Errors
    ///
    /// `map_len == 0`, or the kernel refusing the memory.
    pub fn create_sparse(name: &str, map_len: usize, file_len: u64) -> io::Result<Self> {
        let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidInput, m.to_string());
        if map_len == 0 {
            return Err(bad("a shared memory region needs at least one byte"));
        }
        let map_len = round_to_page(map_len).ok_or_else(|| bad("region size overflows"))?;
        let fd = sealed_memfd(name, file_len.max(map_len as u64))?;
        Self::map(fd, map_len)
    }

    /// Maps the first `map_len` bytes (rounded up to whole pages) of a memory file
    /// received from another process.
    ///
    /// # Errors
    ///
    /// `map_len == 0`, the file is not a sealed memory file (see [`ShmRegion`]), it is
    /// shorter than `map_len`, or `mmap` fails.
    pub fn from_fd_prefix(fd: OwnedFd, map_len: usize) -> io::Result<Self> {
        let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
        let map_len = round_to_page(map_len)
            .filter(|&l| l > 0)
            .ok_or_else(|| bad("bad mapping length"))?;
        if check_sealed(&fd)? < map_len as u64 {
            return Err(bad("shared region shorter than expected"));
        }
        Self::map(fd, map_len)
    }

    /// Maps `len` bytes of the memory file from byte `offset` (a multiple of the page
    /// size), `MAP_SHARED | MAP_NORESERVE`: a window on a sparse part of the file that
    /// takes memory only where written.
    ///
    /// # Errors
    ///
    /// `offset` not page-aligned, `len == 0`, the window past the end of the file, or
    /// `mmap` failing (e.g. no address space left).
    pub fn map_window(&self, offset: u64, len: usize) -> io::Result<ShmWindow> {
        let page = rustix::param::page_size() as u64;
        let st = fstat(&self.fd)?;
        let size = u64::try_from(st.st_size).unwrap_or(0);
        if !offset.is_multiple_of(page)
            || len == 0
            || offset.checked_add(len as u64).is_none_or(|e| e > size)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("window {offset}+{len} not page-aligned or outside the file ({size})"),
            ));
        }
        // SAFETY: a fresh mapping at an address the kernel picks, of a file we hold, inside
        // the file's current size (checked above); it aliases no Rust object. The
        // returned `ShmWindow` owns it and unmaps it once on drop.
        let ptr = unsafe {
            mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED | MapFlags::NORESERVE,
                &self.fd,
                offset,
            )?
        };
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok(ShmWindow { ptr, len })
    }

    /// Gives the memory behind bytes `offset..offset + len` of the file back to the
    /// system (`fallocate(PUNCH_HOLE | KEEP_SIZE)`): they read as zeros afterwards, in
    /// every mapping. Whole pages inside the range are freed; partial pages are zeroed.
    ///
    /// # Errors
    ///
    /// The kernel refusing the call.
    pub fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        fallocate(
            &self.fd,
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            offset,
            len,
        )?;
        Ok(())
    }

    /// The memory the file takes now, in bytes (`st_blocks * 512`).
    ///
    /// # Errors
    ///
    /// The kernel refusing `fstat`.
    pub fn allocated_bytes(&self) -> io::Result<u64> {
        Ok(fstat(&self.fd)?.st_blocks as u64 * 512)
    }

    /// The memory file's size in bytes (at least the mapping's length).
    ///
    /// # Errors
    ///
    /// The kernel refusing `fstat`.
    pub fn file_len(&self) -> io::Result<u64> {
        Ok(u64::try_from(fstat(&self.fd)?.st_size).unwrap_or(0))
    }

    /// Maps a region from a file descriptor received from another process.
    ///
    /// The size is read from the file itself, and the file must be sealed against
    /// shrinking and growing (see [`ShmRegion`]), so a peer can make this mapping neither
    /// larger than the memory behind it nor, later, fault.
    ///
    /// # Errors
    ///
    /// The fd is not a sealed memory file (`InvalidData`: e.g. a pipe, a regular file, a
    /// memfd some process made without the seals), is empty, or `mmap` fails.
    pub fn from_fd(fd: OwnedFd) -> io::Result<Self> {
        let len = usize::try_from(check_sealed(&fd)?).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidData, "shared region too large to map")
        })?;
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "shared region is empty",
            ));
        }
        Self::map(fd, len)
    }

    fn map(fd: OwnedFd, len: usize) -> io::Result<Self> {
        // SAFETY: a fresh mapping at an address the kernel picks, of a file we hold; it
        // aliases no Rust object. We own the mapping until `Drop` unmaps it.
        let ptr = unsafe {
            mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &fd,
                0,
            )?
        };
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok(Self { fd, ptr, len })
    }

    /// The mapping's length in bytes (a whole number of pages).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: a region has at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The start of the mapping. The pointer is valid for `len()` bytes for as long as
    /// `self` lives; other processes may write to it at any time, so reads and writes
    /// through it must be synchronised by the caller's protocol.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The memory file's descriptor (to send to another process).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// A new descriptor for the same memory file.
    ///
    /// # Errors
    ///
    /// The process is out of file descriptors.
    pub fn try_clone_fd(&self) -> io::Result<OwnedFd> {
        self.fd.try_clone()
    }

    /// The `AtomicU32` at byte `offset`.
    ///
    /// # Panics
    ///
    /// If `offset` is not 4-aligned or `offset + 4 > len()`: offsets are the caller's
    /// layout constants, so this is a bug in the caller, never a peer's doing.
    #[inline]
    pub fn atomic_u32(&self, offset: usize) -> &AtomicU32 {
        self.check(offset, 4);
        // SAFETY: in bounds and aligned (checked above); the mapping lives as long as
        // `&self`; AtomicU32 has the size and alignment of u32 and any bit pattern is
        // valid; concurrent access from other processes is atomic.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU32>() }
    }

    /// The `AtomicU64` at byte `offset`.
    ///
    /// # Panics
    ///
    /// If `offset` is not 8-aligned or `offset + 8 > len()` (a caller bug, as above).
    #[inline]
    pub fn atomic_u64(&self, offset: usize) -> &AtomicU64 {
        self.check(offset, 8);
        // SAFETY: in bounds and aligned (checked above); the mapping outlives `&self`;
        // any bit pattern is a valid u64; access is atomic.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU64>() }
    }

    #[inline]
    fn check(&self, offset: usize, size: usize) {
        if !offset.is_multiple_of(size) || offset.checked_add(size).is_none_or(|e| e > self.len) {
            out_of_bounds(offset, size, self.len);
        }
    }
}

#[cold]
#[inline(never)]
fn out_of_bounds(offset: usize, size: usize, len: usize) -> ! {
    panic!("shared region access at {offset}+{size} outside 0..{len} or misaligned")
}

impl Drop for ShmRegion {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping made in `map`, unmapped once here;
        // no reference derived from it outlives `&self`.
        let _ = unsafe { munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A second mapping of part of a [`ShmRegion`]'s memory file (see
/// [`ShmRegion::map_window`]), unmapped when dropped. Access is through raw pointers whose
/// use the caller justifies, as for [`ShmRegion::as_ptr`].
pub struct ShmWindow {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: as for `ShmRegion`: plain shared memory owned by this value, accessed only
// through raw pointers whose users synchronise by their own protocol.
unsafe impl Send for ShmWindow {}
// SAFETY: as above.
unsafe impl Sync for ShmWindow {}

impl std::fmt::Debug for ShmWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmWindow").field("len", &self.len).finish()
    }
}

impl ShmWindow {
    /// The start of the window, valid for `len()` bytes while `self` lives.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The window's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: a window has at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl Drop for ShmWindow {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping made in `map_window`, unmapped once
        // here; no reference derived from it outlives `&self`.
        let _ = unsafe { munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The seals every shared memory file carries once sized: its size can never change again
/// and no seal can be added or removed.
const SEALS: SealFlags = SealFlags::SHRINK
    .union(SealFlags::GROW)
    .union(SealFlags::SEAL);

/// This process's file-size limit (`RLIMIT_FSIZE`, `ulimit -f`) in bytes, `None` when
/// unlimited. Memory files count against it: sizing one above it would make the kernel
/// send `SIGXFSZ`, which kills the process, so [`ShmRegion::create`] and
/// [`ShmRegion::create_sparse`] refuse such a size with an error first, and the queue
/// ring sizes its sparse overflow area to fit under it.
pub fn file_size_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Fsize).current
}

/// A new memory file of `len` bytes, sealed (see [`SEALS`]). A size above the process's
/// file-size limit is an error (`FileTooLarge`), never a `SIGXFSZ`.
fn sealed_memfd(name: &str, len: u64) -> io::Result<OwnedFd> {
    if let Some(limit) = file_size_limit().filter(|&l| len > l) {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!(
                "a shared memory file of {len} bytes is above this process's file-size \
                 limit (RLIMIT_FSIZE, `ulimit -f`) of {limit} bytes"
            ),
        ));
    }
    let fd = memfd_create(
        format!("procactor:{name}"),
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    ftruncate(&fd, len)?;
    fcntl_add_seals(&fd, SEALS)?;
    Ok(fd)
}

/// The size of a received memory file, if it carries all of [`SEALS`] (so that the size
/// read here is the size for good); a clear `InvalidData` error otherwise, before anything
/// is mapped.
fn check_sealed(fd: &OwnedFd) -> io::Result<u64> {
    let seals = fcntl_get_seals(fd).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a sealable shared memory file ({e})"),
        )
    })?;
    if !seals.contains(SEALS) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "shared memory file is not sealed against resizing: refused (a peer could \
             truncate it under our mapping)",
        ));
    }
    u64::try_from(fstat(fd)?.st_size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "negative file size"))
}

fn round_to_page(len: usize) -> Option<usize> {
    let page = rustix::param::page_size();
    len.checked_add(page - 1).map(|l| l / page * page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn create_is_zeroed_and_page_rounded() {
        let r = ShmRegion::create("t", 10).unwrap();
        assert_eq!(r.len(), rustix::param::page_size());
        assert_eq!(r.atomic_u64(0).load(Ordering::Relaxed), 0);
        assert_eq!(r.atomic_u32(r.len() - 4).load(Ordering::Relaxed), 0);
    }

    #[test]
    fn two_mappings_share_memory() {
        let a = ShmRegion::create("t", 8192).unwrap();
        let b = ShmRegion::from_fd(a.try_clone_fd().unwrap()).unwrap();
        assert_eq!(b.len(), 8192);
        a.atomic_u64(4096).store(0xdead_beef, Ordering::SeqCst);
        assert_eq!(b.atomic_u64(4096).load(Ordering::SeqCst), 0xdead_beef);
    }

    #[test]
    fn a_sparse_file_takes_memory_only_where_written_and_punched_holes_give_it_back() {
        let page = rustix::param::page_size();
        let big = 1u64 << 36; // 64 GiB of file, one page mapped
        let r = ShmRegion::create_sparse("t", 1, big).unwrap();
        assert_eq!((r.len(), r.file_len().unwrap()), (page, big));
        assert!(r.allocated_bytes().unwrap() < 1 << 20);
        let w = r.map_window(big - (4 << 20), 4 << 20).unwrap();
        assert_eq!(w.len(), 4 << 20);
        // SAFETY (test): the window is 4 MiB long and private to this test
        unsafe { std::ptr::write_bytes(w.as_ptr(), 0x5a, 4 << 20) };
        assert!(r.allocated_bytes().unwrap() >= 4 << 20);
        // another process's view: the same bytes through its own window
        let other = ShmRegion::from_fd_prefix(r.try_clone_fd().unwrap(), 1).unwrap();
        let w2 = other.map_window(big - (4 << 20), 4 << 20).unwrap();
        // SAFETY (test): in bounds of the 4 MiB window
        assert_eq!(unsafe { *w2.as_ptr().add(12345) }, 0x5a);
        r.punch_hole(big - (4 << 20), 4 << 20).unwrap();
        assert!(r.allocated_bytes().unwrap() < 1 << 20);
        // SAFETY (test): in bounds; punched memory reads as zeros
        assert_eq!(unsafe { *w2.as_ptr().add(12345) }, 0);
        assert!(r.map_window(1, 10).is_err(), "unaligned");
        assert!(r.map_window(big, page).is_err(), "past the end");
        assert!(ShmRegion::from_fd_prefix(r.try_clone_fd().unwrap(), usize::MAX / 2).is_err());
    }

    /// Reopens the memory file behind `fd` for writing, as any process holding a handle
    /// can (through `/proc/self/fd`), and tries to resize it.
    fn resize_through_proc(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
        use rustix::fd::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
        f.set_len(len)
    }

    #[test]
    fn a_region_cannot_be_truncated_or_grown_by_anyone_holding_it() {
        let r = ShmRegion::create("t", 8192).unwrap();
        r.atomic_u64(4096).store(5, Ordering::SeqCst);
        for len in [0, 4096, 1 << 20] {
            let e = resize_through_proc(r.fd(), len).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{len}: {e}");
        }
        assert_eq!(r.file_len().unwrap(), 8192);
        // still mapped and readable: no SIGBUS
        assert_eq!(r.atomic_u64(4096).load(Ordering::SeqCst), 5);
        // the seals cannot be removed or changed either
        assert!(fcntl_add_seals(r.fd(), SealFlags::WRITE).is_err());
    }

    #[test]
    fn unsealed_or_foreign_files_are_refused_before_mapping() {
        // a memfd made without seals (by a peer not using this crate)
        let fd = memfd_create("foreign", MemfdFlags::CLOEXEC).unwrap();
        ftruncate(&fd, 4096).unwrap();
        let e = ShmRegion::from_fd(fd.try_clone().unwrap()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        assert!(e.to_string().contains("sealed"), "{e}");
        assert!(ShmRegion::from_fd_prefix(fd, 4096).is_err());
        // sealable but only partly sealed
        let fd = memfd_create("partial", MemfdFlags::ALLOW_SEALING).unwrap();
        ftruncate(&fd, 4096).unwrap();
        fcntl_add_seals(&fd, SealFlags::SHRINK).unwrap();
        assert!(ShmRegion::from_fd(fd).is_err());
        // a regular file
        let f = std::fs::File::open("/proc/self/exe").unwrap();
        assert!(ShmRegion::from_fd(OwnedFd::from(f)).is_err());
    }

    #[test]
    fn punching_holes_and_windows_still_work_on_a_sealed_sparse_file() {
        let page = rustix::param::page_size();
        let r = ShmRegion::create_sparse("t", 1, 1 << 30).unwrap();
        let seals = fcntl_get_seals(r.fd()).unwrap();
        assert!(seals.contains(SEALS), "{seals:?}");
        let w = r.map_window(1 << 29, 2 * page).unwrap();
        // SAFETY (test): the window is two pages long and private to this test
        unsafe { std::ptr::write_bytes(w.as_ptr(), 7, 2 * page) };
        r.punch_hole(1 << 29, 2 * page as u64).unwrap();
        // SAFETY (test): in bounds; the punched page reads as zeros
        assert_eq!(unsafe { *w.as_ptr().add(page + 1) }, 0);
        assert_eq!(r.file_len().unwrap(), 1 << 30);
    }

    #[test]
    fn zero_len_and_bad_fd_are_errors() {
        assert!(ShmRegion::create("t", 0).is_err());
        let (r, _w) = rustix::pipe::pipe().unwrap();
        assert!(ShmRegion::from_fd(r).is_err());
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn out_of_range_atomic_panics() {
        let r = ShmRegion::create("t", 1).unwrap();
        let _ = r.atomic_u32(r.len());
    }
}
