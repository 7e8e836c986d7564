//! API keys: minted for the owner's voucher, shown once, revocable, and refused once revoked.

use crate::helpers::*;
use diesel::connection::SimpleConnection;
use serde_json::json;

on_both_backends!(
    a_revoked_key_is_refused_with_openai_shaped_errors,
    keys_belong_to_the_vouchers_owner,
    an_expired_voucher_spends_nothing,
);

async fn a_revoked_key_is_refused_with_openai_shaped_errors(app: TestApp) {
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    let keys = body(
        app.get(&format!("/api/v1/vouchers/{voucher_id}/keys"), &owner)
            .await,
    )
    .await;
    let key_id = keys["data"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(app.chat(&key, &chat_request()).await.status().as_u16(), 200);

    let resp = app
        .client
        .delete(app.url(&format!("/api/v1/keys/{key_id}")))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    // Revoking again is harmless.
    let resp = app
        .client
        .delete(app.url(&format!("/api/v1/keys/{key_id}")))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let listed = body(
        app.get(&format!("/api/v1/vouchers/{voucher_id}/keys"), &owner)
            .await,
    )
    .await;
    assert_eq!(listed["data"][0]["status"], "revoked");

    let before = app.voucher(&owner, &voucher_id).await;
    let resp = app.chat(&key, &chat_request()).await;
    assert_eq!(resp.status().as_u16(), 401);
    let e = body(resp).await;
    assert_eq!(e["error"]["code"], "invalid_api_key");
    assert_eq!(e["error"]["message"], "This API key has been revoked.");
    assert_eq!(app.voucher(&owner, &voucher_id).await, before);
    assert_eq!(app.upstream.received().len(), 1);

    for bad in [
        "",
        "sk-not-ours",
        "vk_live_0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let resp = app.chat(bad, &chat_request()).await;
        assert_eq!(resp.status().as_u16(), 401, "{bad:?}");
        assert_eq!(body(resp).await["error"]["code"], "invalid_api_key");
    }
    let resp = app
        .client
        .post(app.url("/v1/chat/completions"))
        .json(&chat_request())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

async fn keys_belong_to_the_vouchers_owner(app: TestApp) {
    let (owner, voucher_id, _key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    let stranger = app.applicant("stranger@elsewhere.co.uk").await;
    assert_problem(
        app.create_key(&stranger, &voucher_id).await,
        404,
        "not_found",
    )
    .await;
    assert_problem(
        app.get(&format!("/api/v1/vouchers/{voucher_id}"), &stranger)
            .await,
        404,
        "not_found",
    )
    .await;
    assert_problem(
        app.get(
            &format!("/api/v1/vouchers/{voucher_id}/transactions"),
            &stranger,
        )
        .await,
        404,
        "not_found",
    )
    .await;
    let key_id = app.first_key_id(&owner, &voucher_id).await;
    let resp = app.revoke_key(&stranger, &key_id).await;
    assert_problem(resp, 404, "not_found").await;
    let p = assert_problem(
        app.post(
            &format!("/api/v1/vouchers/{voucher_id}/keys"),
            &owner,
            &json!({"name": ""}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&p), ["name"]);
    // Still exactly the one key.
    let keys = body(
        app.get(&format!("/api/v1/vouchers/{voucher_id}/keys"), &owner)
            .await,
    )
    .await;
    assert_eq!(keys["data"].as_array().unwrap().len(), 1);
    assert!(
        body(app.get("/api/v1/vouchers", &stranger).await).await["data"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

async fn an_expired_voucher_spends_nothing(app: TestApp) {
    let (owner, voucher_id, key) = app.funded_voucher("owner@widgets.co.uk", "100").await;
    // Time passes: the voucher's expiry is now behind us.
    app.store
        .write_blocking(|c| {
            Ok(c.batch_execute("UPDATE vouchers SET expires_at = '2020-01-01 00:00:00'")?)
        })
        .unwrap();
    let resp = app.chat(&key, &chat_request()).await;
    assert_eq!(resp.status().as_u16(), 429);
    let e = body(resp).await;
    assert_eq!(e["error"]["code"], "insufficient_quota");
    assert!(e["error"]["message"].as_str().unwrap().contains("expired"));
    assert!(app.upstream.received().is_empty());
    let v = app.voucher(&owner, &voucher_id).await;
    assert_eq!(v["status"], "expired");
    assert_eq!(v["spent"], "0.00");
    assert_problem(
        app.create_key(&owner, &voucher_id).await,
        409,
        "voucher_expired",
    )
    .await;
}
