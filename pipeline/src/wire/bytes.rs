//! Big-endian field access helpers shared by the views.

/// Reads a big-endian `u16` at `off`. Panics if out of range (views check lengths first).
#[inline(always)]
pub fn read_u16(d: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([d[off], d[off + 1]])
}

/// Reads a big-endian `u32` at `off`. Panics if out of range (views check lengths first).
#[inline(always)]
pub fn read_u32(d: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([d[off], d[off + 1], d[off + 2], d[off + 3]])
}

/// Writes a big-endian `u16` at `off`.
#[inline(always)]
pub fn write_u16(d: &mut [u8], off: usize, v: u16) {
    d[off..off + 2].copy_from_slice(&v.to_be_bytes());
}

/// Writes a big-endian `u32` at `off`.
#[inline(always)]
pub fn write_u32(d: &mut [u8], off: usize, v: u32) {
    d[off..off + 4].copy_from_slice(&v.to_be_bytes());
}

/// Copies `N` bytes starting at `off` into an array.
#[inline(always)]
pub fn read_array<const N: usize>(d: &[u8], off: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&d[off..off + N]);
    a
}
