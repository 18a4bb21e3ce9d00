//! Cache prefetch hints for hot loops over cold data (see `ConnHandle::prefetch`).

/// A hint to load every cache line holding `value` (64-byte lines); it neither faults nor
/// blocks.
pub(crate) fn prefetch_value<T>(value: &T) {
    const LINE: usize = 64;
    let first = (value as *const T).cast::<i8>();
    let size = std::mem::size_of::<T>();
    // One address per line: every 64 bytes from the start, and the last byte (the value need
    // not start on a line boundary).
    let addresses = (0..size)
        .step_by(LINE)
        .chain(std::iter::once(size.saturating_sub(1)))
        .map(|offset| first.wrapping_add(offset));
    for address in addresses {
        // SAFETY: SSE is part of the x86_64 baseline, and a prefetch only hints: it never
        // dereferences the address in a way that can fault (and each one is inside a live value).
        #[cfg(target_arch = "x86_64")]
        unsafe {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            _mm_prefetch::<_MM_HINT_T0>(address);
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = address;
    }
}
