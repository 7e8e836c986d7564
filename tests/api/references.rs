//! Short references: an application is `APP-` and six characters, the voucher granted on it
//! `VCH-` and the same six; both are unique, shown where people read them, and find the
//! voucher however they are typed.

use crate::helpers::{assert_problem, body, fields, valid_application, Browser, TestApp};
use serde_json::{json, Value};

fn code_of(reference: &Value, prefix: &str) -> String {
    let r = reference.as_str().unwrap_or_default();
    let code = r.strip_prefix(prefix).unwrap_or_else(|| panic!("{r}"));
    assert_eq!(code.len(), 6, "{r}");
    assert!(
        code.bytes()
            .all(|b| b"0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(&b)),
        "{r}"
    );
    code.to_string()
}

async fn an_application_and_its_voucher_share_a_short_reference(app: TestApp) {
    let (owner, voucher_id, _key) = app.funded_voucher("refs@example.com", "10").await;
    let admin = app.user_with_role("refs-admin@example.com", "admin").await;
    let voucher = app.voucher(&owner, &voucher_id).await;
    let code = code_of(&voucher["reference"], "VCH-");
    let application_id = voucher["application_id"].as_str().unwrap();
    let application = body(
        app.get(&format!("/api/v1/applications/{application_id}"), &owner)
            .await,
    )
    .await;
    assert_eq!(code_of(&application["reference"], "APP-"), code);
    assert_eq!(application["voucher_reference"], voucher["reference"]);

    // Another company's application has its own reference and, undecided, no voucher's.
    let mut other = valid_application();
    other["company_number"] = json!("SC123456");
    other["company_name"] = json!("Other Holdings Ltd");
    let second = body(app.apply(&owner, &other).await).await;
    assert_ne!(code_of(&second["reference"], "APP-"), code);
    assert_eq!(second["voucher_reference"], Value::Null);

    // Found by its reference typed any way, or by its application's.
    let lower = format!("vch{}", code.to_lowercase());
    for typed in [format!("VCH-{code}"), lower, format!("APP-{code}")] {
        let found = body(
            app.get(&format!("/api/v1/vouchers?reference={typed}"), &admin)
                .await,
        )
        .await;
        assert_eq!(found["data"].as_array().unwrap().len(), 1, "{typed}");
        assert_eq!(found["data"][0]["id"], voucher_id.as_str(), "{typed}");
    }
    let bad = assert_problem(
        app.get("/api/v1/vouchers?reference=VCH-12345", &admin)
            .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&bad), ["reference"]);
    // An owner finds only their own: another SME's search for it finds nothing.
    let stranger = app.applicant("refs-stranger@example.com").await;
    let theirs = body(
        app.get(&format!("/api/v1/vouchers?reference=VCH-{code}"), &stranger)
            .await,
    )
    .await;
    assert_eq!(theirs["data"], json!([]));

    // The pages name the voucher and the application by reference, not by id.
    let mut sme = Browser::sign_in(&app, "refs@example.com").await;
    let page = sme
        .get(&app, &format!("/portal/vouchers/{voucher_id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains(&format!("Reference VCH-{code}")), "{page}");
    let dashboard = sme.get(&app, "/portal").await.text().await.unwrap();
    assert!(dashboard.contains(&format!("VCH-{code}")));
    assert!(dashboard.contains(&format!("APP-{code}")));
    let mut console = Browser::sign_in(&app, "refs-admin@example.com").await;
    let found = console
        .get(
            &app,
            &format!("/console/vouchers?company=vch-{}", code.to_lowercase()),
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(found.contains(&format!("VCH-{code}")), "{found}");
    assert!(found.contains("Widget Analytics Ltd"));
    assert!(!found.contains("Other Holdings Ltd"));
    let decided = console
        .get(&app, &format!("/console/applications/{application_id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(decided.contains(&format!("APP-{code}")));
    assert!(
        decided.contains(&format!("company=VCH-{code}\">VCH-{code}</a>")),
        "{decided}"
    );
    assert!(!decided.contains(&voucher_id));
    // The approver who confirmed ownership is named, not shown as an id.
    assert!(
        decided.contains("By Programme staff (admin-refs@example.com) on"),
        "{decided}"
    );
    let audit = console
        .get(&app, "/console/audit")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        audit.contains(&format!("application APP-{code}")),
        "{audit}"
    );
}

/// The audit log lists one kind of subject or one action, with its count and its CSV.
async fn the_audit_log_is_filtered_by_subject_and_action(app: TestApp) {
    let (_, voucher_id, _) = app.funded_voucher("audit-filter@example.com", "10").await;
    let admin = app
        .user_with_role("audit-filter-admin@example.com", "admin")
        .await;
    let all = body(app.get("/api/v1/audit?limit=500", &admin).await).await["data"]
        .as_array()
        .unwrap()
        .len();
    let apps = body(
        app.get("/api/v1/audit?subject_type=application", &admin)
            .await,
    )
    .await;
    let apps = apps["data"].as_array().unwrap();
    assert!(
        !apps.is_empty() && apps.len() < all,
        "{} of {all}",
        apps.len()
    );
    assert!(apps.iter().all(|e| e["subject_type"] == "application"));
    let approvals = body(
        app.get("/api/v1/audit?action=application.approve", &admin)
            .await,
    )
    .await;
    assert_eq!(
        approvals["data"].as_array().unwrap().len(),
        1,
        "{approvals}"
    );
    let none = body(
        app.get(
            "/api/v1/audit?subject_type=application&action=voucher.suspend",
            &admin,
        )
        .await,
    )
    .await;
    assert_eq!(none["data"], json!([]));
    assert_problem(
        app.get(&format!("/api/v1/audit?subject_id={voucher_id}"), &admin)
            .await,
        422,
        "validation_failed",
    )
    .await;

    let mut console = Browser::sign_in(&app, "audit-filter-admin@example.com").await;
    let page = console
        .get(
            &app,
            "/console/audit?subject=application&action=application.approve",
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Showing 1 to 1 of 1 entries"), "{page}");
    assert!(page.contains("<option value=\"application.approve\" selected>"));
    let csv = console
        .get(
            &app,
            "/console/audit.csv?subject=application&action=application.approve",
        )
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    // A filter the log does not hold lists everything.
    let page = console
        .get(&app, "/console/audit?subject=nonsense")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains(&format!("of {all} entries")), "{page}");
}

on_both_backends!(
    an_application_and_its_voucher_share_a_short_reference,
    the_audit_log_is_filtered_by_subject_and_action
);
