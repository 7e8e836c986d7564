#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The ledger's invariants on both backends: random sequences of transfers, holds, posts and
//! voids keep Σ debits = Σ credits, never take a no-overdraft account below zero, never post
//! more than a hold, and keep every cached total equal to what its transfers add up to.

use proptest::prelude::*;
use voucherd_domain::ledger::{AccountKind, TransferCode};
use voucherd_domain::Money;
use voucherd_store::ledger::{self, TransferRequest};
use voucherd_store::testing::TestDatabase;
use voucherd_store::{Backend, Store, StoreConfig, StoreError};

fn open(backend: Backend) -> (TestDatabase, Store) {
    let db = TestDatabase::create(backend).unwrap();
    let store = Store::connect(&StoreConfig {
        database_url: db.url.clone(),
        max_connections: 4,
        acquire_timeout_ms: 5_000,
    })
    .unwrap();
    store.migrate().unwrap();
    (db, store)
}

fn money(m: i64) -> Money {
    Money::from_micros(m).unwrap()
}

fn req(id: &str, debit: &str, credit: &str, amount: i64) -> TransferRequest {
    TransferRequest {
        id: id.into(),
        debit_account_id: debit.into(),
        credit_account_id: credit.into(),
        amount: money(amount),
        code: TransferCode::Test,
        memo: String::new(),
    }
}

#[derive(Debug, Clone)]
enum Op {
    Deposit(i64),
    Grant(usize, i64),
    Hold(usize, i64),
    Post(usize, i64),
    Void(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1i64..5_000).prop_map(Op::Deposit),
        (0usize..3, 1i64..4_000).prop_map(|(v, a)| Op::Grant(v, a)),
        (0usize..3, 1i64..3_000).prop_map(|(v, a)| Op::Hold(v, a)),
        (0usize..20, 0i64..3_500).prop_map(|(h, a)| Op::Post(h, a)),
        (0usize..20).prop_map(Op::Void),
    ]
}

fn run_sequence(backend: Backend, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let (_db, store) = open(backend);
    let vouchers = ["v0", "v1", "v2"];
    let mut holds: Vec<(String, i64)> = Vec::new();
    store
        .write_blocking(|c| {
            for v in vouchers {
                ledger::create_account(c, v, AccountKind::Voucher)?;
            }
            Ok(())
        })
        .unwrap();
    for (i, op) in ops.into_iter().enumerate() {
        let id = format!("t{i}");
        let result = store.write_blocking(|c| match &op {
            Op::Deposit(a) => ledger::transfer(
                c,
                &req(&id, ledger::FUNDING_SOURCE, ledger::PROGRAMME_FUND, *a),
            )
            .map(|_| ()),
            Op::Grant(v, a) => {
                ledger::transfer(c, &req(&id, ledger::PROGRAMME_FUND, vouchers[*v], *a)).map(|_| ())
            }
            Op::Hold(v, a) => {
                let far = chrono::Utc::now().naive_utc() + chrono::Duration::hours(1);
                ledger::hold(c, &req(&id, vouchers[*v], ledger::USAGE, *a), far).map(|_| ())
            }
            Op::Post(h, a) => match holds.get(*h) {
                Some((hid, _)) => ledger::post(c, &id, hid, money(*a)).map(|_| ()),
                None => Ok(()),
            },
            Op::Void(h) => match holds.get(*h) {
                Some((hid, _)) => ledger::void(c, &id, hid).map(|_| ()),
                None => Ok(()),
            },
        });
        match (&op, &result) {
            (_, Ok(())) => {
                if let Op::Hold(_, a) = op {
                    holds.push((id.clone(), a));
                }
            }
            (_, Err(StoreError::InsufficientFunds { .. }))
            | (_, Err(StoreError::HoldResolved(_)))
            | (Op::Post(..), Err(StoreError::PostExceedsHold { .. })) => {}
            (_, Err(e)) => return Err(TestCaseError::fail(format!("{op:?}: {e}"))),
        }
        if let (Op::Post(h, a), Ok(())) = (&op, &result) {
            if let Some((_, held)) = holds.get(*h) {
                prop_assert!(a <= held, "posted {a} above hold {held}");
            }
        }
        // After every step, not just at the end.
        let verified = store.write_blocking(ledger::verify);
        prop_assert!(verified.is_ok(), "{:?}", verified);
        for v in vouchers {
            let a = store.write_blocking(|c| ledger::account(c, v)).unwrap();
            prop_assert!(a.totals().available() >= 0);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_transfers_keep_the_ledger_balanced_on_sqlite(ops in proptest::collection::vec(op(), 1..30)) {
        run_sequence(Backend::Sqlite, ops)?;
    }

    #[test]
    fn random_transfers_keep_the_ledger_balanced_on_postgres(ops in proptest::collection::vec(op(), 1..30)) {
        run_sequence(Backend::Postgres, ops)?;
    }
}

fn both(test: impl Fn(Store)) {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let (_db, store) = open(backend);
        test(store);
    }
}

#[test]
fn replaying_a_transfer_id_returns_the_original_and_a_different_body_is_refused() {
    both(|store| {
        let first = store
            .write_blocking(|c| {
                ledger::transfer(
                    c,
                    &req("dep-1", ledger::FUNDING_SOURCE, ledger::PROGRAMME_FUND, 700),
                )
            })
            .unwrap();
        let again = store
            .write_blocking(|c| {
                ledger::transfer(
                    c,
                    &req("dep-1", ledger::FUNDING_SOURCE, ledger::PROGRAMME_FUND, 700),
                )
            })
            .unwrap();
        assert_eq!(first, again);
        let other = store.write_blocking(|c| {
            ledger::transfer(
                c,
                &req("dep-1", ledger::FUNDING_SOURCE, ledger::PROGRAMME_FUND, 701),
            )
        });
        assert!(
            matches!(other, Err(StoreError::TransferIdConflict(_))),
            "{other:?}"
        );
        let fund = store
            .write_blocking(|c| ledger::account(c, ledger::PROGRAMME_FUND))
            .unwrap();
        assert_eq!(fund.credits_posted, 700);
    });
}

#[test]
fn a_hold_posts_at_most_its_amount_once_and_expired_holds_are_voided() {
    both(|store| {
        store
            .write_blocking(|c| {
                ledger::create_account(c, "v", AccountKind::Voucher)?;
                ledger::transfer(
                    c,
                    &req("d", ledger::FUNDING_SOURCE, ledger::PROGRAMME_FUND, 1_000),
                )?;
                ledger::transfer(c, &req("g", ledger::PROGRAMME_FUND, "v", 1_000))?;
                let far = chrono::Utc::now().naive_utc() + chrono::Duration::hours(1);
                ledger::hold(c, &req("h1", "v", ledger::USAGE, 600), far)?;
                let past = chrono::Utc::now().naive_utc() - chrono::Duration::seconds(1);
                ledger::hold(c, &req("h2", "v", ledger::USAGE, 300), past)?;
                Ok(())
            })
            .unwrap();
        let over = store.write_blocking(|c| ledger::post(c, "p0", "h1", money(601)));
        assert!(
            matches!(over, Err(StoreError::PostExceedsHold { .. })),
            "{over:?}"
        );
        let too_much = store.write_blocking(|c| {
            let far = chrono::Utc::now().naive_utc() + chrono::Duration::hours(1);
            ledger::hold(c, &req("h3", "v", ledger::USAGE, 101), far)
        });
        assert!(
            matches!(too_much, Err(StoreError::InsufficientFunds { .. })),
            "{too_much:?}"
        );
        store
            .write_blocking(|c| ledger::post(c, "p1", "h1", money(250)))
            .unwrap();
        let twice = store.write_blocking(|c| ledger::post(c, "p2", "h1", money(10)));
        assert!(
            matches!(twice, Err(StoreError::HoldResolved(_))),
            "{twice:?}"
        );
        let late = store.write_blocking(|c| ledger::post(c, "p3", "h2", money(10)));
        assert!(matches!(late, Err(StoreError::HoldExpired(_))), "{late:?}");
        let voided = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(store.void_expired_holds(100))
            .unwrap();
        assert_eq!(voided, 1);
        let h2 = store
            .write_blocking(|c| ledger::resolution(c, "h2"))
            .unwrap()
            .unwrap();
        assert_eq!(h2.kind.as_str(), "void");
        let v = store.write_blocking(|c| ledger::account(c, "v")).unwrap();
        assert_eq!(
            (v.credits_posted, v.debits_posted, v.debits_pending),
            (1_000, 250, 0)
        );
        assert_eq!(v.totals().available(), 750);
        store.write_blocking(ledger::verify).unwrap();
    });
}

#[test]
fn the_database_refuses_to_update_or_delete_a_transfer() {
    use diesel::connection::SimpleConnection;
    both(|store| {
        store
            .write_blocking(|c| {
                ledger::transfer(
                    c,
                    &req("d", ledger::FUNDING_SOURCE, ledger::PROGRAMME_FUND, 5),
                )
                .map(|_| ())
            })
            .unwrap();
        let upd = store.write_blocking(|c| Ok(c.batch_execute("UPDATE transfers SET amount = 6")?));
        assert!(upd.is_err());
        let del = store.write_blocking(|c| Ok(c.batch_execute("DELETE FROM transfers")?));
        assert!(del.is_err());
    });
}
