//! Order statistics for reports (time to decision and the like), on integers: the nearest-rank
//! definition, so a reported percentile is always a value that occurred.

/// The `p`th percentile (0–100) by nearest rank; `None` for no values.
pub fn percentile(values: &[i64], p: u32) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let p = u64::from(p.min(100));
    let n = sorted.len() as u64;
    // Nearest rank: ceil(p / 100 × n), at least 1.
    let rank = (p * n).div_ceil(100).max(1);
    sorted.get((rank - 1) as usize).copied()
}

/// The median, by nearest rank (the lower middle for an even count).
pub fn median(values: &[i64]) -> Option<i64> {
    percentile(values, 50)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v = [15, 20, 35, 40, 50];
        assert_eq!(percentile(&v, 5), Some(15));
        assert_eq!(percentile(&v, 30), Some(20));
        assert_eq!(percentile(&v, 40), Some(20));
        assert_eq!(percentile(&v, 50), Some(35));
        assert_eq!(percentile(&v, 100), Some(50));
        assert_eq!(median(&[4, 1, 3, 2]), Some(2));
        assert_eq!(percentile(&(1..=10).collect::<Vec<_>>(), 90), Some(9));
        assert_eq!(median(&[]), None);
    }
}
