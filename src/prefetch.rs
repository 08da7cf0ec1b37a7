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

/// Bytes at the start of a frame that decoding reads: link, IP and transport headers
/// and the first payload bytes, with room for a VLAN tag and IPv6.
const FRAME_HEAD: usize = 96;

/// Asks the CPU for the cache lines holding a frame's headers: a frame starts anywhere
/// in its file's chunk, so its first 96 bytes usually span two lines.
#[inline]
pub fn frame(data: &[u8]) {
    line(data.as_ptr());
    if let Some(last) = data.get(..FRAME_HEAD.min(data.len())).and_then(<[u8]>::last) {
        line(last);
    }
}

/// Asks the CPU for every cache line of `value`.
#[inline]
pub fn all<T>(value: &T) {
    let start: *const u8 = std::ptr::from_ref(value).cast();
    for offset in (0..size_of::<T>()).step_by(64) {
        line(start.wrapping_add(offset));
    }
}
