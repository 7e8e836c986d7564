//! Reports: administrators list and download kept reports (JSON, HTML, CSV per table); anyone
//! may read the public summaries, which carry only disclosure-controlled figures.

use crate::error::ApiError;
use crate::service::reports as service;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::Value;
use validator::Validate;
use voucherd_domain::report_period::{Period, ReportKind};
use voucherd_store::reports::ReportRow;

/// The tables of a report made before reports listed their own (schema version 1).
const VERSION_1_TABLES: [(&str, &str); 5] = [
    ("by_model", "/current/usage/by_model"),
    ("by_region", "/current/usage/by_region"),
    ("by_sector", "/current/usage/by_sector"),
    ("by_size_band", "/current/usage/by_size_band"),
    ("by_month", "/current/usage/by_month"),
];
/// The public summary's.
const PUBLIC_TABLES: [&str; 2] = [
    "organisations_by_region_and_size",
    "spend_by_region_and_size",
];

fn parse(text: &str) -> Result<Value, ApiError> {
    serde_json::from_str(text).map_err(|e| ApiError::Internal(format!("stored report: {e}")))
}

/// An object's entries as `measure,value` rows, nested objects' keys joined with dots.
fn measures(prefix: &str, v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                measures(&key, v, out);
            }
        }
        other => out.push(serde_json::json!({"measure": prefix, "value": other})),
    }
}

/// A JSON array of flat objects as CSV (the first row's keys are the header); an object as
/// `measure,value` rows.
fn csv(rows: &Value) -> String {
    if rows.is_object() {
        let mut flat = Vec::new();
        measures("", rows, &mut flat);
        if flat.is_empty() {
            return "measure,value\n".into();
        }
        return csv(&Value::Array(flat));
    }
    let Some(rows) = rows.as_array() else {
        return String::new();
    };
    let cell = |v: &Value| {
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s
        }
    };
    let mut out = String::new();
    if let Some(Value::Object(first)) = rows.first() {
        let keys: Vec<&String> = first.keys().collect();
        out.push_str(
            &keys
                .iter()
                .map(|k| cell(&Value::String((*k).clone())))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push('\n');
        for r in rows {
            out.push_str(
                &keys
                    .iter()
                    .map(|k| cell(&r[k.as_str()]))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            out.push('\n');
        }
    }
    out
}

pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let data = service::list(&state).await?;
    Ok(HttpResponse::Ok().json(crate::views::List { data }))
}

/// Makes the final report of a period that has ended (201), or says why not.
pub async fn make(
    state: web::Data<AppState>,
    user: crate::auth::AuthUser,
    crate::extract::ApiJson(body): crate::extract::ApiJson<service::ReportRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(service::make(&state, &user, body).await?))
}

pub async fn get(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::content(&state, &path).await?))
}

pub async fn html(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(service::html(&state, &path).await?))
}

#[derive(Debug, Deserialize, Validate)]
pub struct TableQuery {
    #[validate(length(min = 1, max = 64, message = "must be 1 to 64 characters"))]
    pub table: String,
}

pub async fn csv_table(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let q: TableQuery = crate::handlers::query(&req)?;
    let r = state.store.report(path.into_inner()).await?;
    let content = parse(&r.content)?;
    // The report lists its tables, each with where it sits in the report.
    let tables: Vec<(String, String)> = match content["tables"].as_object() {
        Some(t) => t
            .iter()
            .filter_map(|(name, at)| at.as_str().map(|at| (name.clone(), at.to_string())))
            .collect(),
        None => VERSION_1_TABLES
            .iter()
            .map(|(n, at)| ((*n).to_string(), (*at).to_string()))
            .collect(),
    };
    let Some((_, at)) = tables.iter().find(|(name, _)| *name == q.table) else {
        let names: Vec<&str> = tables.iter().map(|(n, _)| n.as_str()).collect();
        return Err(ApiError::field(
            "table",
            format!("must be one of {}", names.join(", ")),
        ));
    };
    let rows = content.pointer(at).cloned().unwrap_or(Value::Null);
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .body(csv(&rows)))
}

#[derive(Debug, Deserialize, Validate)]
pub struct PublicQuery {
    /// `html` (the default), `json` or `csv` (with `table`).
    #[validate(length(min = 1, max = 8, message = "must be html, json or csv"))]
    pub format: Option<String>,
    #[validate(length(min = 1, max = 64, message = "must be 1 to 64 characters"))]
    pub table: Option<String>,
    #[validate(length(min = 1, max = 16, message = "must be monthly or semi_annual"))]
    pub kind: Option<String>,
}

fn public_response(r: &ReportRow, q: &PublicQuery) -> Result<HttpResponse, ApiError> {
    match q.format.as_deref().unwrap_or("html") {
        "html" => Ok(HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(r.public_html.clone())),
        "json" => Ok(HttpResponse::Ok().json(parse(&r.public_content)?)),
        "csv" => {
            let table = q.table.as_deref().unwrap_or("");
            if !PUBLIC_TABLES.contains(&table) {
                return Err(ApiError::field(
                    "table",
                    format!("must be one of {}", PUBLIC_TABLES.join(", ")),
                ));
            }
            let content = parse(&r.public_content)?;
            Ok(HttpResponse::Ok()
                .content_type("text/csv; charset=utf-8")
                .body(csv(&content["summary"][table])))
        }
        _ => Err(ApiError::field("format", "must be html, json or csv")),
    }
}

/// Only the semi-annual review is published: monthly summaries beside it would let months be
/// subtracted from half-years, recovering cells each hides.
fn kind(q: &PublicQuery) -> Result<ReportKind, ApiError> {
    // Only the spelling the document gives: the public address has one form.
    match q.kind.as_deref() {
        None => Ok(ReportKind::SemiAnnual),
        Some(k) if k == ReportKind::SemiAnnual.as_str() => Ok(ReportKind::SemiAnnual),
        Some(_) => Err(ApiError::field(
            "kind",
            "only the semi-annual review has a public summary",
        )),
    }
}

/// The latest public summary (of the semi-annual review's final reports).
pub async fn public_latest(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let q: PublicQuery = crate::handlers::query(&req)?;
    let r = state.store.public_report(kind(&q)?, None).await?;
    public_response(&r, &q)
}

/// The public summary for one period, `/public/reports/{from}/{to}` (ISO dates): a half-year
/// (April–September or October–March) whose final report has been made.
pub async fn public_period(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let q: PublicQuery = crate::handlers::query(&req)?;
    let (from, to) = path.into_inner();
    let date = |s: &str, f: &str| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map_err(|_| ApiError::field(f, "must be a date, YYYY-MM-DD"))
    };
    let kind = kind(&q)?;
    let (from, to) = (date(&from, "from")?, date(&to, "to")?);
    let period = Period::fixed(ReportKind::SemiAnnual, from, to)
        .map_err(|e| ApiError::field("period", e))?;
    let r = state
        .store
        .public_report(kind, Some((period.from(), period.to())))
        .await?;
    public_response(&r, &q)
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_quotes_what_needs_quoting() {
        let rows = serde_json::json!([{"key": "a,b", "n": 1}, {"key": "say \"hi\"", "n": null}]);
        assert_eq!(super::csv(&rows), "key,n\n\"a,b\",1\n\"say \"\"hi\"\"\",\n");
        let figures = serde_json::json!({"received": 3, "decision_hours": {"median": "0.50"}});
        assert_eq!(
            super::csv(&figures),
            "measure,value\ndecision_hours.median,0.50\nreceived,3\n"
        );
    }
}
