//! The hot loops of [`Cluster`](crate::Cluster): the fits mask over the
//! dense columns and the least-key scan.

use crate::InstanceId;

/// The hot loop of [`Cluster::candidates`]: on wasm, 16 instances at a time
/// with wasm SIMD (every wasm32-wasip2 host berth supports has SIMD; wasm
/// validation, not the CPU, decides, so this is safe), written out because
/// the compiler's own vectorisation of the plain loop does 4 at a time.
/// `F`/`G`: whether the filter and the distinctInstance group counts apply,
/// as constants so each combination gets its own straight loop.
#[allow(clippy::too_many_arguments)]
#[cfg_attr(target_family = "wasm", target_feature(enable = "simd128"))]
pub(crate) fn fill_fits<const F: bool, const G: bool>(
    fits: &mut [u8],
    sched: &[bool],
    cpu: &[u32],
    mem: &[u32],
    etcp: &[u32],
    eudp: &[u32],
    filter: &[u8],
    groups: &[u32],
    need: (u32, u32, u32, u32),
) -> usize {
    let mut n = fits
        .len()
        .min(sched.len())
        .min(cpu.len())
        .min(mem.len())
        .min(etcp.len())
        .min(eudp.len());
    if F {
        n = n.min(filter.len());
    }
    if G {
        n = n.min(groups.len());
    }
    let (fits, sched, cpu, mem, etcp, eudp) = (
        &mut fits[..n],
        &sched[..n],
        &cpu[..n],
        &mem[..n],
        &etcp[..n],
        &eudp[..n],
    );
    let (filter, groups) = (
        if F { &filter[..n] } else { filter },
        if G { &groups[..n] } else { groups },
    );
    let (c, m, t, u) = need;
    #[cfg(target_family = "wasm")]
    let done = {
        use core::arch::wasm32::*;
        let full = n - n % 16;
        let (cv, mv, tv, uv, zero) = (
            u32x4_splat(c),
            u32x4_splat(m),
            u32x4_splat(t),
            u32x4_splat(u),
            u32x4_splat(0),
        );
        // Macros, not closures: a closure would not inherit `simd128` and
        // would stay a call.
        macro_rules! ld {
            ($col:expr, $j:expr) => {
                u32x4($col[$j], $col[$j + 1], $col[$j + 2], $col[$j + 3])
            };
        }
        macro_rules! bytes {
            ($b:expr) => {{
                let b = $b;
                u8x16(
                    b[0] as u8,
                    b[1] as u8,
                    b[2] as u8,
                    b[3] as u8,
                    b[4] as u8,
                    b[5] as u8,
                    b[6] as u8,
                    b[7] as u8,
                    b[8] as u8,
                    b[9] as u8,
                    b[10] as u8,
                    b[11] as u8,
                    b[12] as u8,
                    b[13] as u8,
                    b[14] as u8,
                    b[15] as u8,
                )
            }};
        }
        // All-ones lanes where instances j..j+4 fit.
        macro_rules! quad {
            ($j:expr) => {{
                let j = $j;
                let ok = v128_and(
                    v128_and(u32x4_ge(ld!(cpu, j), cv), u32x4_ge(ld!(mem, j), mv)),
                    v128_and(u32x4_ge(ld!(etcp, j), tv), u32x4_ge(ld!(eudp, j), uv)),
                );
                if G {
                    v128_and(ok, u32x4_eq(ld!(groups, j), zero))
                } else {
                    ok
                }
            }};
        }
        let mut i = 0;
        while i < full {
            // One byte per lane (the masks are all-ones or zero), 16 instances.
            let lo = i8x16_shuffle::<0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0>(
                quad!(i),
                quad!(i + 4),
            );
            let hi = i8x16_shuffle::<0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0>(
                quad!(i + 8),
                quad!(i + 12),
            );
            let mut ok = i64x2_shuffle::<0, 2>(lo, hi);
            // `sched` bytes are 0 or 1, so the result is too.
            ok = v128_and(ok, bytes!(&sched[i..i + 16]));
            if F {
                ok = v128_andnot(ok, i8x16_eq(bytes!(&filter[i..i + 16]), zero));
            }
            fits[i..i + 8].copy_from_slice(&u64x2_extract_lane::<0>(ok).to_le_bytes());
            fits[i + 8..i + 16].copy_from_slice(&u64x2_extract_lane::<1>(ok).to_le_bytes());
            i += 16;
        }
        full
    };
    #[cfg(not(target_family = "wasm"))]
    let done = 0;
    for i in done..n {
        let mut ok = u8::from(sched[i])
            & u8::from(cpu[i] >= c)
            & u8::from(mem[i] >= m)
            & u8::from(etcp[i] >= t)
            & u8::from(eudp[i] >= u);
        if F {
            ok &= u8::from(filter[i] != 0);
        }
        if G {
            ok &= u8::from(groups[i] == 0);
        }
        fits[i] = ok;
    }
    n
}

/// The loop of [`Cluster::least`]: key and id packed in one `u64` (key
/// high), so the least candidate, ties to the lowest id, is the running
/// minimum of one number. Non-candidates weigh `u32::MAX`; when that is the
/// least, every candidate has that key and the first one wins.
#[cfg_attr(target_family = "wasm", target_feature(enable = "simd128"))]
pub(crate) fn least_of(fits: &[u8], key: impl Fn(InstanceId) -> u32) -> Option<InstanceId> {
    let mut best = u64::MAX;
    let step = |i: usize, ok: u8| {
        let k = if ok != 0 {
            key(i as InstanceId)
        } else {
            u32::MAX
        };
        (u64::from(k) << 32) | i as u64
    };
    let chunks = fits.chunks_exact(8);
    let tail = fits.len() - chunks.remainder().len();
    // Eight at a time: one loop check (and one epoch check) per eight.
    for (c, f) in chunks.enumerate() {
        for (j, &ok) in f.iter().enumerate() {
            best = best.min(step(c * 8 + j, ok));
        }
    }
    for (i, &ok) in fits.iter().enumerate().skip(tail) {
        best = best.min(step(i, ok));
    }
    if best >> 32 != u64::from(u32::MAX) {
        return Some(best as u32);
    }
    fits.iter().position(|&f| f != 0).map(|i| i as InstanceId)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain definition [`least_of`] must agree with.
    fn least_naive(fits: &[u8], key: impl Fn(InstanceId) -> u32) -> Option<InstanceId> {
        (0..fits.len() as InstanceId)
            .filter(|&i| fits[i as usize] != 0)
            .min_by_key(|&i| (key(i), i))
    }

    #[test]
    fn least_of_agrees_with_the_plain_definition() {
        // A small LCG: the SDK has no dependencies beyond wit-bindgen.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |m: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % m
        };
        for round in 0..2000 {
            let n = next(70) as usize;
            let density = next(4);
            let fits: Vec<u8> = (0..n).map(|_| u8::from(next(4) < density)).collect();
            // Few distinct keys, so ties are common; u32::MAX included.
            let spread = [1, 3, 1000][next(3) as usize];
            let column: Vec<u32> = (0..n)
                .map(|_| {
                    if next(10) == 0 {
                        u32::MAX
                    } else {
                        next(spread) as u32
                    }
                })
                .collect();
            let key = |i: InstanceId| column[i as usize];
            assert_eq!(
                least_of(&fits, key),
                least_naive(&fits, key),
                "round {round}: fits {fits:?} keys {column:?}"
            );
        }
    }
}
