//! The process's own memory: what a long-lived runtime process gives back once it waits.

/// Unmaps (MADV_DONTNEED) this process's pages of the binary's read-only segments: ELF header,
/// relocations, rodata, eh_frame and text, from the ELF header to `etext`. Those pages are
/// never written (no text relocations: static-pie relocations only touch RELRO and data), so
/// they come back unchanged from the page cache when next used. Done by long-lived processes
/// once their start-up is over: the shim once the container runs (its RSS then holds only what
/// its poll loop touches), and the container's init while it waits in `created` for `start`.
/// Free heap memory goes back to the kernel too (malloc_trim).
pub fn release_readonly_image() {
    extern "C" {
        // Defined by the linker: the ELF header (start of the first segment) and end of text.
        static __ehdr_start: u8;
        static etext: u8;
    }
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
    // Only the addresses of the linker symbols are taken; they are not read.
    let (start, end) = (std::ptr::addr_of!(__ehdr_start) as usize, std::ptr::addr_of!(etext) as usize);
    let start = start & !(page - 1);
    let end = end & !(page - 1);
    if end > start {
        // SAFETY: the range covers only read-only, file-backed, never-written mappings of our
        // own executable; dropping them only costs page faults later.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
    // SAFETY: malloc_trim only returns free memory of the allocator's heap to the kernel.
    unsafe { libc::malloc_trim(0) };
}
