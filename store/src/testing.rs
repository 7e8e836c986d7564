//! Throw-away databases for tests: a temporary SQLite file, or a fresh PostgreSQL database
//! created on the server named by `VOUCHERD_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`). Dropped when the value is dropped.
//! A PostgreSQL server that cannot be reached is an error, never a skip.

use crate::db::Backend;
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub struct TestDatabase {
    pub url: String,
    backend: Backend,
    cleanup: Cleanup,
}

enum Cleanup {
    Dir(std::path::PathBuf),
    Database { admin_url: String, name: String },
}

fn admin_url() -> String {
    std::env::var("VOUCHERD_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into())
}

impl TestDatabase {
    pub fn create(backend: Backend) -> Result<TestDatabase, String> {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("voucherd-test-{tag}"));
                std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
                Ok(TestDatabase {
                    url: format!("sqlite://{}", dir.join("voucherd.db").display()),
                    backend,
                    cleanup: Cleanup::Dir(dir),
                })
            }
            Backend::Postgres => {
                let admin = admin_url();
                let name = format!("voucherd_test_{tag}");
                let mut c = PgConnection::establish(&admin).map_err(|e| {
                    format!("PostgreSQL at {admin} is required for these tests: {e}")
                })?;
                c.batch_execute(&format!("CREATE DATABASE {name}"))
                    .map_err(|e| e.to_string())?;
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
                Ok(TestDatabase {
                    url: format!("{base}/{name}"),
                    backend,
                    cleanup: Cleanup::Database {
                        admin_url: admin,
                        name,
                    },
                })
            }
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Dir(d) => {
                let _ = std::fs::remove_dir_all(d);
            }
            Cleanup::Database { admin_url, name } => {
                if let Ok(mut c) = PgConnection::establish(admin_url) {
                    let _ =
                        c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
                }
            }
        }
    }
}

impl crate::Store {
    /// Changes an account's cached posted credits without a transfer: the kind of damage
    /// reconciliation exists to find. For tests only.
    pub async fn corrupt_account_for_tests(
        &self,
        account_id: &str,
        delta_micros: i64,
    ) -> crate::StoreResult<()> {
        use crate::schema::accounts;
        use diesel::prelude::*;
        let id = account_id.to_string();
        self.write(move |c| {
            diesel::update(accounts::table.find(&id))
                .set(accounts::credits_posted.eq(accounts::credits_posted + delta_micros))
                .execute(c)?;
            Ok(())
        })
        .await
    }

    /// Makes the database refuse (`refuse`) or accept again every usage row of one voucher: a
    /// commit that fails for reasons of the database's own. For tests only.
    pub async fn refuse_usage_for_tests(
        &self,
        voucher_id: &str,
        refuse: bool,
    ) -> crate::StoreResult<()> {
        use diesel::connection::SimpleConnection;
        let id = voucher_id.replace('\'', "");
        let backend = self.backend();
        self.write(move |c| {
            let sql = match (backend, refuse) {
                (Backend::Sqlite, true) => format!(
                    "CREATE TRIGGER refuse_usage BEFORE INSERT ON usage_records \
                     WHEN NEW.voucher_id = '{id}' BEGIN SELECT RAISE(ABORT, 'usage refused'); END;"
                ),
                (Backend::Sqlite, false) => "DROP TRIGGER refuse_usage;".to_string(),
                (Backend::Postgres, true) => format!(
                    "CREATE FUNCTION refuse_usage() RETURNS trigger AS $$ BEGIN \
                     IF NEW.voucher_id = '{id}' THEN RAISE EXCEPTION 'usage refused'; END IF; \
                     RETURN NEW; END $$ LANGUAGE plpgsql; \
                     CREATE TRIGGER refuse_usage BEFORE INSERT ON usage_records \
                     FOR EACH ROW EXECUTE FUNCTION refuse_usage();"
                ),
                (Backend::Postgres, false) => {
                    "DROP TRIGGER refuse_usage ON usage_records; DROP FUNCTION refuse_usage();"
                        .to_string()
                }
            };
            c.batch_execute(&sql)?;
            Ok(())
        })
        .await
    }

    /// Sets a voucher's expiry. For tests only.
    pub async fn set_voucher_expiry_for_tests(
        &self,
        voucher_id: String,
        at: chrono::NaiveDateTime,
    ) {
        use crate::schema::vouchers;
        use diesel::prelude::*;
        let result = self
            .write(move |c| {
                diesel::update(vouchers::table.find(&voucher_id))
                    .set(vouchers::expires_at.eq(at))
                    .execute(c)?;
                Ok(())
            })
            .await;
        assert!(result.is_ok(), "setting a voucher's expiry: {result:?}");
    }

    /// Moves a voucher's expiry a second into the past, as time passing would. For tests only.
    pub async fn expire_voucher_for_tests(&self, voucher_id: String) {
        use crate::schema::vouchers;
        use diesel::prelude::*;
        let past = crate::now() - chrono::Duration::seconds(1);
        let result = self
            .write(move |c| {
                diesel::update(vouchers::table.find(&voucher_id))
                    .set(vouchers::expires_at.eq(past))
                    .execute(c)?;
                Ok(())
            })
            .await;
        assert!(result.is_ok(), "expiring a voucher: {result:?}");
    }
}
