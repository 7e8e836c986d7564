//! Disclosure control for published tables, so that no published figure identifies a
//! business: a cell covering fewer than `k` organisations is suppressed (primary, threshold
//! rule), and so is an amount cell one organisation makes up more than a share of (primary,
//! dominance rule); counts are rounded to a base; and further cells are suppressed (complementary) until no row or column
//! with a published total holds exactly one suppressed cell, which its total and the other
//! cells would otherwise reveal.

use serde::Serialize;

/// The rules, stated on every published page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rules {
    /// Cells covering fewer organisations than this are suppressed.
    pub min_organisations: u32,
    /// Counts are rounded to the nearest multiple of this.
    pub rounding_base: u32,
    /// Amount cells in which one organisation accounts for more than this percentage of the
    /// value are suppressed.
    pub dominance_percent: u32,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            min_organisations: 5,
            rounding_base: 5,
            dominance_percent: 50,
        }
    }
}

impl Rules {
    pub fn parse(
        min_organisations: u32,
        rounding_base: u32,
        dominance_percent: u32,
    ) -> Result<Rules, String> {
        if !(2..=100).contains(&min_organisations) {
            return Err("min_organisations must be 2 to 100".into());
        }
        if !(1..=100).contains(&rounding_base) {
            return Err("rounding_base must be 1 to 100".into());
        }
        if !(1..=99).contains(&dominance_percent) {
            return Err("dominance_percent must be 1 to 99".into());
        }
        Ok(Rules {
            min_organisations,
            rounding_base,
            dominance_percent,
        })
    }

    /// In words, for the page.
    pub fn describe(&self) -> String {
        format!(
            "Cells covering fewer than {} organisations are suppressed (shown as \"[c]\"), and so are amounts of which one organisation accounts for more than {}%; counts are rounded to the nearest {}; further cells are suppressed so that no suppressed value can be worked out from row or column totals.",
            self.min_organisations, self.dominance_percent, self.rounding_base
        )
    }

    /// Rounds half up to the nearest multiple of the base.
    pub fn round(&self, count: i64) -> i64 {
        let b = i64::from(self.rounding_base);
        (count + b / 2).div_euclid(b) * b
    }
}

/// One cell before control: how many organisations it covers, its value (a count or an
/// amount in micros), and the largest part of that value one organisation contributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    pub organisations: u32,
    pub value: i64,
    pub largest: i64,
}

impl Cell {
    /// A count of organisations: each contributes one.
    pub fn count(organisations: u32) -> Cell {
        Cell {
            organisations,
            value: i64::from(organisations),
            largest: i64::from(organisations.min(1)),
        }
    }
}

/// A published cell: a value, or suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Published {
    Value(i64),
    Suppressed,
}

/// A table after control, with its row, column and grand totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Controlled {
    pub cells: Vec<Vec<Published>>,
    pub row_totals: Vec<Published>,
    pub column_totals: Vec<Published>,
    pub total: Published,
}

/// Applies the rules to a table of cells (rows × columns). `counts` says whether values are
/// counts (rounded) or amounts (not rounded, but suppressed alike).
///
/// The table is taken with its totals as one grid (a total row, a total column, and the grand
/// total in the corner, never hidden as a complement). Primary suppression hides every cell
/// and total covering from 1 to k−1 organisations and, for amounts, every one of which one
/// organisation contributes more than the dominance share (each organisation sits in one cell,
/// so a total's largest contributor is its largest cell's). Then, while some row or column of the grid holds
/// exactly one hidden entry — which its other entries would reveal, totals included — the
/// smallest other non-empty entry of that line is hidden too.
pub fn control(table: &[Vec<Cell>], rules: &Rules, counts: bool) -> Controlled {
    let rows = table.len();
    let cols = table.first().map_or(0, |r| r.len());
    // The grid: rows × cols cells, column `cols` the row totals, row `rows` the column totals.
    let grid = with_totals(table, rows, cols);
    let k = rules.min_organisations;
    let share = i128::from(rules.dominance_percent);
    let dominated = |x: &Cell| {
        !counts && x.value > 0 && i128::from(x.largest) * 100 > share * i128::from(x.value)
    };
    let mut hidden: Vec<Vec<bool>> = grid
        .iter()
        .map(|line| {
            line.iter()
                .map(|x| x.organisations > 0 && (x.organisations < k || dominated(x)))
                .collect()
        })
        .collect();
    hide_complements(&grid, &mut hidden, rows, cols);
    let publish = |r: usize, c: usize| {
        if hidden[r][c] {
            Published::Suppressed
        } else if counts {
            Published::Value(rules.round(grid[r][c].value))
        } else {
            Published::Value(grid[r][c].value)
        }
    };
    Controlled {
        cells: (0..rows)
            .map(|r| (0..cols).map(|c| publish(r, c)).collect())
            .collect(),
        row_totals: (0..rows).map(|r| publish(r, cols)).collect(),
        column_totals: (0..cols).map(|c| publish(rows, c)).collect(),
        total: publish(rows, cols),
    }
}

/// The table with its totals as one grid: `rows` × `cols` cells, column `cols` the row totals,
/// row `rows` the column totals and the grand total in the corner.
fn with_totals(table: &[Vec<Cell>], rows: usize, cols: usize) -> Vec<Vec<Cell>> {
    let add = |a: Cell, b: Cell| Cell {
        organisations: a.organisations + b.organisations,
        value: a.value + b.value,
        largest: a.largest.max(b.largest),
    };
    let zero = Cell {
        organisations: 0,
        value: 0,
        largest: 0,
    };
    let mut grid: Vec<Vec<Cell>> = table
        .iter()
        .map(|r| {
            let mut line: Vec<Cell> = r.iter().copied().take(cols).collect();
            line.resize(cols, zero);
            line.push(line.iter().copied().fold(zero, add));
            line
        })
        .collect();
    let totals: Vec<Cell> = (0..=cols)
        .map(|c| (0..rows).map(|r| grid[r][c]).fold(zero, add))
        .collect();
    grid.push(totals);
    grid
}

/// Secondary suppression over the grid of `rows` × `cols` cells and their totals: while some
/// line holds exactly one hidden entry, hides another of that line too (never the grand total).
fn hide_complements(grid: &[Vec<Cell>], hidden: &mut [Vec<bool>], rows: usize, cols: usize) {
    let corner = (rows, cols);
    loop {
        let mut changed = false;
        let lines: Vec<Vec<(usize, usize)>> = (0..=rows)
            .map(|r| (0..=cols).map(|c| (r, c)).collect())
            .chain((0..=cols).map(|c| (0..=rows).map(|r| (r, c)).collect()))
            .collect();
        for line in lines {
            let lone: Vec<&(usize, usize)> = line.iter().filter(|&&(r, c)| hidden[r][c]).collect();
            if lone.len() != 1 {
                continue;
            }
            let protect = grid[lone[0].0][lone[0].1].value;
            // The complement must hide at least as much as the entry it protects, or the total
            // pins that entry to a narrow range: the smallest such entry, else the largest.
            if let Some(&(r, c)) = line
                .iter()
                .filter(|&&(r, c)| {
                    !hidden[r][c] && (r, c) != corner && grid[r][c].organisations > 0
                })
                .min_by_key(|&&(r, c)| {
                    let v = grid[r][c].value;
                    let short = v < protect;
                    (short, if short { -v } else { v }, grid[r][c].organisations)
                })
            {
                hidden[r][c] = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
}

/// Hides in each table every entry hidden in either, so that tables over the same cells
/// (organisations and spend, say) never tell apart which hidden cells were the small ones.
/// Stays safe: a union only adds hidden entries to lines that had none or at least two.
pub fn hide_alike(a: &mut Controlled, b: &mut Controlled) {
    fn merge(x: &mut Published, y: &mut Published) {
        if *x == Published::Suppressed || *y == Published::Suppressed {
            *x = Published::Suppressed;
            *y = Published::Suppressed;
        }
    }
    for (ra, rb) in a.cells.iter_mut().zip(b.cells.iter_mut()) {
        for (x, y) in ra.iter_mut().zip(rb.iter_mut()) {
            merge(x, y);
        }
    }
    for (x, y) in a.row_totals.iter_mut().zip(b.row_totals.iter_mut()) {
        merge(x, y);
    }
    for (x, y) in a.column_totals.iter_mut().zip(b.column_totals.iter_mut()) {
        merge(x, y);
    }
    merge(&mut a.total, &mut b.total);
}

/// Whether a controlled table lets no hidden entry be worked out from one line: every row and
/// column (totals included) holds zero or at least two hidden entries.
pub fn is_safe(t: &Controlled) -> bool {
    let s = |p: &Published| *p == Published::Suppressed;
    let rows_ok = t
        .cells
        .iter()
        .zip(&t.row_totals)
        .all(|(line, total)| line.iter().filter(|p| s(p)).count() + usize::from(s(total)) != 1);
    let cols = t.column_totals.len();
    let cols_ok = (0..cols).all(|c| {
        t.cells.iter().filter(|line| s(&line[c])).count() + usize::from(s(&t.column_totals[c])) != 1
    });
    let grand = usize::from(s(&t.total));
    let totals_ok = t.row_totals.iter().filter(|p| s(p)).count() + grand != 1
        && t.column_totals.iter().filter(|p| s(p)).count() + grand != 1;
    rows_ok && cols_ok && totals_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use Published::{Suppressed as S, Value as V};

    fn cell(organisations: u32, value: i64) -> Cell {
        Cell {
            organisations,
            value,
            largest: value.min(value / i64::from(organisations.max(1)) + 1),
        }
    }

    #[test]
    fn a_cell_one_organisation_dominates_is_suppressed_with_complements() {
        // Row 0: the first cell covers 6 organisations, but one spent 700 of its 1,000.
        let dominant = Cell {
            organisations: 6,
            value: 1_000,
            largest: 700,
        };
        let even = |n: u32, v: i64| Cell {
            organisations: n,
            value: v,
            largest: v / i64::from(n),
        };
        let table = vec![
            vec![dominant, even(8, 2_000)],
            vec![even(7, 1_400), even(9, 1_800)],
        ];
        let out = control(&table, &Rules::default(), false);
        assert_eq!(out.cells[0][0], S, "70% is more than 50%");
        assert!(is_safe(&out), "{out:?}");
        // Its row and its column each hide a second entry, so neither total gives it away.
        assert_eq!(out.cells, vec![vec![S, S], vec![S, S]]);
        assert_eq!(out.total, V(6_200));
        // At exactly the share it is published; the rule is configurable.
        let half = Cell {
            organisations: 6,
            value: 1_000,
            largest: 500,
        };
        let out = control(&[vec![half, even(8, 2_000)]], &Rules::default(), false);
        assert_eq!(out.cells, vec![vec![V(1_000), V(2_000)]]);
        let strict = Rules::parse(5, 5, 40).unwrap();
        let out = control(&[vec![half, even(8, 2_000)]], &strict, false);
        assert_eq!(out.cells[0][0], S);
        assert!(Rules::parse(5, 5, 100).is_err() && Rules::parse(5, 5, 0).is_err());
        // Counts are never dominated: each organisation counts one.
        let out = control(
            &[vec![Cell::count(5), Cell::count(6)]],
            &Rules::default(),
            true,
        );
        assert_eq!(out.cells, vec![vec![V(5), V(5)]]);
    }

    #[test]
    fn counts_round_half_up_to_the_base() {
        let r = Rules::default();
        assert_eq!(
            (r.round(0), r.round(2), r.round(3), r.round(7), r.round(12)),
            (0, 0, 5, 5, 10)
        );
        assert!(Rules::parse(1, 5, 50).is_err());
        assert!(Rules::parse(5, 0, 50).is_err());
    }

    #[test]
    fn a_small_cell_and_its_complements_are_suppressed() {
        // Rows: regions; columns: size bands. One cell covers 2 organisations.
        let table = vec![
            vec![cell(12, 12), cell(2, 2), cell(9, 9)],
            vec![cell(20, 20), cell(8, 8), cell(6, 6)],
        ];
        let out = control(&table, &Rules::default(), true);
        // Primary (0,1); each complement hides at least what it protects, until no row or
        // column (totals included) holds a single hidden entry.
        assert_eq!(out.cells, vec![vec![V(10), S, S], vec![S, S, V(5)]]);
        assert_eq!(out.row_totals, vec![V(25), V(35)]);
        assert_eq!(out.column_totals, vec![S, V(10), S]);
        assert_eq!(out.total, V(55), "57 rounds to 55");
        assert!(is_safe(&out));
    }

    #[test]
    fn a_lone_row_hides_a_second_cell_and_a_small_total() {
        let table = vec![vec![
            cell(3, 1_500),
            cell(0, 0),
            cell(7, 7_000),
            cell(6, 100),
        ]];
        let out = control(&table, &Rules::default(), false);
        // (0,0) is small; its column total is the same 3 organisations, hidden too; the row
        // needs a second hidden cell hiding at least £1,500: (0,2), whose column total follows
        // (hiding the £100 one would pin (0,0) between 1,500 and 1,600).
        assert_eq!(out.cells, vec![vec![S, V(0), S, V(100)]]);
        assert_eq!(out.column_totals, vec![S, V(0), S, V(100)]);
        assert_eq!(out.row_totals, vec![V(8_600)]);
        assert!(is_safe(&out));
    }

    #[test]
    fn random_tables_always_come_out_safe() {
        // A small deterministic generator: no test randomness, many shapes.
        let mut seed: u64 = 42;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u32
        };
        for _ in 0..500 {
            let rows = 1 + (next() % 5) as usize;
            let cols = 1 + (next() % 5) as usize;
            let table: Vec<Vec<Cell>> = (0..rows)
                .map(|_| {
                    (0..cols)
                        .map(|_| {
                            let n = next() % 12;
                            cell(n, i64::from(n) * 3)
                        })
                        .collect()
                })
                .collect();
            let out = control(&table, &Rules::default(), true);
            assert!(is_safe(&out), "{table:?} -> {out:?}");
            for (r, line) in table.iter().enumerate() {
                for (c, x) in line.iter().enumerate() {
                    if x.organisations > 0 && x.organisations < 5 {
                        assert_eq!(out.cells[r][c], S);
                    }
                }
            }
        }
    }
}
