//! Step 5 of the balanced planner: steps cut from the layout, with the packs that stay far from
//! their class's median cost matched in steps of their own ([`match_costly_packs`]).

use super::swaps::Loads;

/// Costly and cheap packs matched in steps of their own: a pack that holds a sample long (or
/// short) for its size cannot be brought to its class's typical cost by swaps (its other
/// samples are already the shortest, or longest, of theirs), and a random step holding it runs
/// that much longer than its mean (or pulls the mean down). In each vision class (a run of
/// `drawn`), the packs costlier than the class median by more than 1/[`COSTLY_PACK_DIV`] are
/// taken out, costliest first, in whole steps of `m` (when there are at least `m`), then those
/// cheaper than it by more than 1/[`CHEAP_PACK_DIV`], cheapest first; these steps go first (the step order is shuffled
/// later), the rest keeps its random order. Few packs qualify on ordinary data, so steps still
/// look i.i.d.
pub(super) fn match_costly_packs(drawn: Vec<u32>, loads: &Loads<'_>, m: usize) -> Vec<u32> {
    let mut costly: Vec<u32> = Vec::new();
    let mut taken = vec![false; drawn.len()];
    let mut start = 0;
    while start < drawn.len() {
        let v = loads[drawn[start] as usize].v;
        let mut end = start;
        while end < drawn.len() && loads[drawn[end] as usize].v == v {
            end += 1;
        }
        // The median cost, then only the packs far from it sorted (the same packs, in the same
        // order, as sorting the whole class).
        let mut costs: Vec<u64> = drawn[start..end]
            .iter()
            .map(|&k| loads[k as usize].w)
            .collect();
        let mid = costs.len() / 2;
        let median = *costs.select_nth_unstable(mid).1;
        drop(costs);
        let far = |keep: &dyn Fn(u64) -> bool| -> Vec<(u64, u32, usize)> {
            (start..end)
                .map(|j| (loads[drawn[j] as usize].w, drawn[j], j))
                .filter(|e| keep(e.0))
                .collect()
        };
        let mut over = far(&|w| w > median + median / COSTLY_PACK_DIV);
        over.sort_unstable();
        let whole = over.len() - over.len() % m;
        for &(_, k, j) in over.iter().rev().take(whole) {
            costly.push(k);
            taken[j] = true;
        }
        let mut under = far(&|w| w + median / CHEAP_PACK_DIV < median);
        under.sort_unstable();
        let whole = under.len() - under.len() % m;
        for &(_, k, j) in under.iter().take(whole) {
            costly.push(k);
            taken[j] = true;
        }
        start = end;
    }
    if costly.is_empty() {
        return drawn;
    }
    costly.extend(
        drawn
            .iter()
            .enumerate()
            .filter(|&(j, _)| !taken[j])
            .map(|(_, &k)| k),
    );
    costly
}

/// See [`match_costly_packs`]: packs over the class median by more than 1/this are matched.
pub const COSTLY_PACK_DIV: u64 = 200;
/// See [`match_costly_packs`]: packs under the class median by more than 1/this are matched (a
/// cheap pack moves a step's mean, and so its slowest rank's excess, by 1/m of its deficit).
pub const CHEAP_PACK_DIV: u64 = 100;
