//! Cache hints: the packet path asks for memory a few packets before it reads it (a
//! flow's index slot and state, a frame's headers, a frame the reader decoded). One of
//! the two places the crate allows `unsafe` (the other joins a fanout group, in
//! `capture::fanout`).

/// Asks the CPU for the cache line holding `at`.
#[allow(unsafe_code)]
#[inline]
pub fn line<T>(at: *const T) {
    // SAFETY: SSE is part of x86_64's baseline, and a prefetch only hints the cache: it
    // reads nothing the program sees and cannot fault, whatever the address.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// Asks the CPU for every cache line of `value`.
#[inline]
pub fn all<T>(value: &T) {
    let start: *const u8 = std::ptr::from_ref(value).cast();
    for offset in (0..size_of::<T>()).step_by(64) {
        line(start.wrapping_add(offset));
    }
}
