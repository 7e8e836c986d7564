//! The database going away: requests are refused with 503 (the proxy fails closed, serving
//! nothing unmetered) after the bounded wait for a connection, and service resumes by itself.

use crate::helpers::*;
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use voucherd_store::testing::DEFAULT_POSTGRES_URL;
use voucherd_store::Backend;

#[tokio::test]
async fn when_the_database_is_unreachable_requests_get_503_and_service_recovers() {
    let app = spawn_app_with(Backend::Postgres, |c| c.db_acquire_timeout_ms = 1_000).await;
    let (owner, _voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    let name = app.database_url.rsplit('/').next().unwrap().to_string();
    let admin_url =
        std::env::var("VOUCHERD_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into());
    let mut admin = PgConnection::establish(&admin_url).unwrap();
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .unwrap();

    let resp = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_problem(resp, 503, "unavailable").await;
    assert_problem(
        app.get("/api/v1/vouchers", &owner).await,
        503,
        "unavailable",
    )
    .await;
    let resp = app.chat(&key, &chat_request()).await;
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(body(resp).await["error"]["code"], "service_unavailable");
    assert!(
        app.upstream.received().is_empty(),
        "nothing is forwarded unmetered"
    );

    // The database is back: the pool reconnects without a restart.
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let resp = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}
