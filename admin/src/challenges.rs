//! Innovation challenges: an SME's challenges and entries (`/portal/challenges`), the
//! administrators' challenges with their milestones, progress and entries
//! (`/console/challenges`), and an assessor's allocated entries, scores and conflicts of
//! interest (`/assess`), on the challenge services (`voucherd_api::service::challenges`).

use crate::api::{self, Answer, Core, Failure};
use crate::portal::{
    csrf_refused, day, err, field, page, region_name, see_other, status_of, tidy_money, Form,
};
use crate::render::not_found;
use crate::render::{FieldError, View};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use voucherd_api::service::challenges;
use voucherd_domain::challenge::Status;
use voucherd_domain::{CompanyNumber, Money, Region};

// ---------------------------------------------------------------------------------------------
// Shared parts

fn list(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

/// A service's answer as the JSON the page's shaping helpers read; a list under `data`.
fn value<T: serde::Serialize>(view: &T) -> Value {
    json!(view)
}

fn listed<T: serde::Serialize>(rows: &[T]) -> Value {
    json!({ "data": rows })
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn query_has(req: &HttpRequest, flag: &str) -> bool {
    req.query_string().split('&').any(|p| p == flag)
}

/// Ids the API gives (UUIDs) only: nothing else is put into an API path.
fn safe_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// The first part of an API field path: `award_amounts[2]` → `award_amounts`.
fn head(path: &str) -> &str {
    path.split(['.', '[']).next().unwrap_or("")
}

/// The API's refusal as the form's errors; one that names no field of the form is linked to
/// `anchor` (the form or its section).
fn refusal<T>(answer: &Answer<T>, id_of: &dyn Fn(&str) -> String, anchor: &str) -> Vec<FieldError> {
    answer
        .field_errors(id_of)
        .into_iter()
        .map(|mut e| {
            if e.id.is_empty() {
                e.id = anchor.to_string();
            }
            e
        })
        .collect()
}

/// A field's message among `errors`, or null.
fn message_of(errors: &[FieldError], id: &str) -> Value {
    errors
        .iter()
        .find(|e| e.id == id)
        .map_or(Value::Null, |e| Value::String(e.message.clone()))
}

/// A challenge's statuses in the order its milestones bring them.
const STATUSES: [&str; 6] = [
    "upcoming",
    "open",
    "closed",
    "in_assessment",
    "panel",
    "decided",
];

fn stage(status: &str) -> usize {
    STATUSES.iter().position(|s| *s == status).unwrap_or(0)
}

fn status_tag(status: &str) -> Value {
    let colour = match status {
        "open" => "green",
        "closed" => "yellow",
        "in_assessment" => "purple",
        "panel" => "turquoise",
        "decided" => "blue",
        _ => "grey",
    };
    json!({"text": status.replace('_', " "), "colour": colour})
}

/// The five milestones: API field, name the worker records, label, and what happens then.
const MILESTONES: [(&str, &str, &str, &str); 5] = [
    ("opens_at", "opens", "Opens for entries", "entries open"),
    ("closes_at", "closes", "Closes for entries", "entries close"),
    (
        "assessors_assigned_at",
        "assessors_assigned",
        "Assessors assigned",
        "assessors are assigned",
    ),
    (
        "assessment_deadline",
        "assessment_deadline",
        "Assessment deadline",
        "assessment ends",
    ),
    (
        "decisions_released_at",
        "decisions_released",
        "Decisions released",
        "decisions are released",
    ),
];

const KINDS: [(&str, &str); 3] = [
    ("startup", "Start-up"),
    ("university_spin_off", "University spin-off"),
    ("sme", "Small or medium-sized enterprise (SME)"),
];

fn kind_name(kind: &str) -> &str {
    KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(kind, |(_, label)| *label)
}

/// "2027-03-10T17:00:00.000000Z" → "10 March 2027, 5:00pm" (UK time).
fn moment(v: &Value) -> String {
    v.as_str().map(crate::format::when).unwrap_or_default()
}

/// "50000.00" → "£50,000.00".
fn pounds(v: &Value) -> String {
    let s = text(v);
    let (units, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut grouped = String::new();
    for (i, c) in units.chars().enumerate() {
        if i > 0 && (units.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if frac.is_empty() {
        format!("£{grouped}")
    } else {
        format!("£{grouped}.{frac}")
    }
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// A text as its paragraphs (one a line), so line breaks survive.
fn paragraphs(v: &Value) -> Value {
    Value::Array(
        text(v)
            .split('\n')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| json!(p))
            .collect(),
    )
}

fn eligible_text(c: &Value) -> String {
    c["eligible"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|k| kind_name(text(k)).to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

/// A challenge as the templates show it.
fn challenge_view(c: &Value) -> Value {
    let status = text(&c["status"]);
    json!({
        "id": c["id"], "title": c["title"], "theme": paragraphs(&c["theme"]),
        "status": status, "tag": status_tag(status),
        "open": status.parse() == Ok(Status::Open),
        "decided": status.parse() == Ok(Status::Decided),
        "eligible": eligible_text(c), "pool": pounds(&c["award_pool"]),
        "pilot_places": c["pilot_places"], "assessors_per_entry": c["assessors_per_entry"],
        "recurrence": c["recurrence"], "previous_id": c["previous_id"],
        "created": day(&c["created_at"]),
        "opens": moment(&c["opens_at"]), "closes": moment(&c["closes_at"]),
        "decisions": moment(&c["decisions_released_at"]),
        "opens_day": day(&c["opens_at"]), "closes_day": day(&c["closes_at"]),
        "decisions_day": day(&c["decisions_released_at"]),
    })
}

/// The milestones with their dates; `performed` (the console's) tells which the worker did.
fn milestones(c: &Value, performed: &Value) -> Value {
    let reached = stage(text(&c["status"]));
    let done: Vec<&str> = performed
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    Value::Array(
        MILESTONES
            .iter()
            .enumerate()
            .map(|(i, (key, name, label, _))| {
                let (state, colour) = if done.contains(name) {
                    ("done", "green")
                } else if reached > i {
                    ("due", "yellow")
                } else {
                    ("to come", "grey")
                };
                json!({
                    "label": label, "when": moment(&c[*key]), "passed": reached > i,
                    "tag": {"text": state, "colour": colour},
                })
            })
            .collect(),
    )
}

fn awards(c: &Value) -> Value {
    Value::Array(
        list(&c["award_amounts"])
            .iter()
            .enumerate()
            .map(|(i, a)| json!({"place": ordinal(i + 1), "amount": pounds(a)}))
            .collect(),
    )
}

/// An entry's result, once decisions are released (null before).
fn outcome(r: &Value) -> Value {
    if r.is_null() {
        return Value::Null;
    }
    let awarded = Money::parse(text(&r["award"])).is_ok_and(|m| !m.is_zero());
    json!({
        "score": r["score_percent"].as_str().map(|s| format!("{s}%")),
        "rank": r["rank"],
        "awarded": awarded,
        "award": if awarded { pounds(&r["award"]) } else { "No award".to_string() },
        "pilot": r["pilot_invited"] == true,
    })
}

fn regions(selected: &str) -> Value {
    Value::Array(
        Region::ALL
            .iter()
            .map(|r| {
                json!({
                    "value": r.as_str(), "label": region_name(r.as_str()),
                    "selected": r.as_str() == selected,
                })
            })
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------------
// The SME's pages

pub async fn sme_list(req: HttpRequest) -> HttpResponse {
    let Core { state, .. } = page!(api::core(&req));
    let all = listed(&page!(api::must(&req, challenges::list(&state).await)));
    sme_list_page(&all).render(&req)
}

fn sme_list_page(all: &Value) -> View {
    let (mut current, mut past) = (Vec::new(), Vec::new());
    for c in list(&all["data"]) {
        let row = challenge_view(&c);
        if matches!(text(&c["status"]), "upcoming" | "open") {
            current.push(row);
        } else {
            past.push(row);
        }
    }
    View::new("ch_sme_list", "Innovation challenges")
        .with("current", Value::Array(current))
        .with("past", Value::Array(past))
        .back("/portal")
}

/// What was posted, shown back on the challenge's page with its errors.
enum Posted<'a> {
    Nothing,
    Entry(&'a HashMap<String, String>),
    Edit(&'a str, &'a HashMap<String, String>),
}

const ENTRY_FIELDS: [&str; 7] = [
    "company_number",
    "organisation_name",
    "organisation_kind",
    "region",
    "sic_code",
    "title",
    "summary",
];

fn phase(c: &Value) -> String {
    match text(&c["status"]) {
        "upcoming" => format!("Entries open on {}.", moment(&c["opens_at"])),
        "open" => format!("Open for entries until {}.", moment(&c["closes_at"])),
        "decided" => format!(
            "Results were released on {}.",
            moment(&c["decisions_released_at"])
        ),
        _ => format!(
            "Closed for entries on {}. Results are released on {}.",
            moment(&c["closes_at"]),
            moment(&c["decisions_released_at"])
        ),
    }
}

async fn sme_view(
    req: &HttpRequest,
    id: &str,
    posted: Posted<'_>,
    errors: Vec<FieldError>,
    banner: Option<&str>,
) -> HttpResponse {
    let Core { state, user } = page!(api::core(req));
    let c = value(&page!(api::must(
        req,
        challenges::get(&state, &user, id).await
    )));
    let mine = page!(api::must(
        req,
        challenges::list_entries(&state, &user, id).await
    ));
    let mine = listed(&mine);
    let mut view = sme_page(&c, &mine, &posted, errors);
    if let Some(b) = banner {
        view = view.banner(b, true);
    }
    view.render(req)
}

/// The challenge, the viewer's entries (each with its form while it may change) and, while
/// the challenge is open and the viewer has no entry, the form to enter.
fn sme_page(c: &Value, mine: &Value, posted: &Posted<'_>, errors: Vec<FieldError>) -> View {
    let id = text(&c["id"]);
    let open = status_of(&c["status"]) == Some(Status::Open);
    let entries: Vec<Value> = list(&mine["data"])
        .iter()
        .map(|e| own_entry(e, id, open, posted, &errors))
        .collect();
    let form = match posted {
        Posted::Entry(form) => Some(*form),
        _ => None,
    };
    let value = |name: &str| form.map_or("", |f| field(f, name)).to_string();
    let eligible: Vec<String> = list(&c["eligible"])
        .iter()
        .filter_map(|k| k.as_str().map(String::from))
        .collect();
    let kinds: Vec<Value> = eligible
        .iter()
        .enumerate()
        .map(|(i, k)| {
            json!({
                "value": k, "label": kind_name(k),
                "id": if i == 0 { "organisation_kind".to_string() } else { format!("organisation_kind-{k}") },
                "checked": *k == value("organisation_kind") || eligible.len() == 1,
            })
        })
        .collect();
    let values: Map<String, Value> = ENTRY_FIELDS
        .iter()
        .map(|f| (f.to_string(), Value::String(value(f))))
        .collect();
    let can_enter = open && entries.is_empty();
    View::new("ch_sme_challenge", text(&c["title"]).to_string())
        .with("challenge", challenge_view(c))
        .with("phase", json!(phase(c)))
        .with("milestones", milestones(c, &Value::Null))
        .with("criteria", Value::Array(list(&c["criteria"])))
        .with("awards", awards(c))
        .with("entries", Value::Array(entries))
        .with("can_enter", json!(can_enter))
        .with("kinds", Value::Array(kinds))
        .with("regions", regions(&value("region")))
        .with("values", Value::Object(values))
        .back("/portal/challenges")
        .errors(errors)
}

/// One of the viewer's entries in challenge `id`, with its form (as posted, when it was) while
/// the challenge is `open` and the entry not locked.
fn own_entry(e: &Value, id: &str, open: bool, posted: &Posted<'_>, errors: &[FieldError]) -> Value {
    let eid = text(&e["id"]);
    let (title_id, summary_id) = (format!("entry-{eid}-title"), format!("entry-{eid}-summary"));
    let values = match posted {
        Posted::Edit(edited, form) if *edited == eid => {
            json!({"title": field(form, "title"), "summary": field(form, "summary")})
        }
        _ => json!({"title": e["title"], "summary": e["summary"]}),
    };
    let (title_error, summary_error) = (
        message_of(errors, &title_id),
        message_of(errors, &summary_id),
    );
    json!({
        "id": eid, "action": format!("/portal/challenges/{id}/entries/{eid}"),
        "organisation_name": e["organisation_name"], "company_number": e["company_number"],
        "kind": kind_name(text(&e["organisation_kind"])),
        "region": region_name(text(&e["region"])), "sic_code": e["sic_code"],
        "title": e["title"], "summary": paragraphs(&e["summary"]),
        "submitted": moment(&e["submitted_at"]), "updated": moment(&e["updated_at"]),
        "editable": open && e["locked"] != true,
        "result": outcome(&e["result"]),
        "values": values,
        "title_id": title_id, "summary_id": summary_id,
        "title_error": title_error, "summary_error": summary_error,
    })
}

pub async fn sme_challenge(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let id = path.into_inner();
    if !safe_id(&id) {
        return not_found(&req);
    }
    let banner = if query_has(&req, "sent=1") {
        Some(
            "Your entry was sent. You can change its title and summary until the challenge closes.",
        )
    } else if query_has(&req, "saved=1") {
        Some("Your changes to your entry were saved.")
    } else {
        None
    };
    sme_view(&req, &id, Posted::Nothing, Vec::new(), banner).await
}

/// The title and summary, checked as the API will (`prefix` makes the form's field ids).
fn check_text(form: &HashMap<String, String>, prefix: &str, errors: &mut Vec<FieldError>) {
    let id = |f: &str| {
        if prefix.is_empty() {
            f.to_string()
        } else {
            format!("{prefix}-{f}")
        }
    };
    if !(1..=200).contains(&field(form, "title").chars().count()) {
        errors.push(err(id("title"), "Enter a title of 1 to 200 characters"));
    }
    if !(20..=5000).contains(&field(form, "summary").chars().count()) {
        errors.push(err(
            id("summary"),
            "Describe your entry in 20 to 5000 characters",
        ));
    }
}

/// Each answer checked as the API will, so every mistake shows at once.
fn check_entry(form: &HashMap<String, String>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if CompanyNumber::parse(field(form, "company_number")).is_err() {
        errors.push(err(
            "company_number",
            "Enter a company registration number, like 01234567 or SC123456",
        ));
    }
    if !(1..=160).contains(&field(form, "organisation_name").chars().count()) {
        errors.push(err(
            "organisation_name",
            "Enter the organisation's name, up to 160 characters",
        ));
    }
    if !KINDS
        .iter()
        .any(|(k, _)| *k == field(form, "organisation_kind"))
    {
        errors.push(err("organisation_kind", "Select the kind of organisation"));
    }
    crate::portal::check_region_and_sic(form, "the organisation", &mut errors);
    check_text(form, "", &mut errors);
    errors
}

pub async fn sme_submit(req: HttpRequest, path: web::Path<String>, form: Form) -> HttpResponse {
    let form = form.into_inner();
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let id = path.into_inner();
    if !safe_id(&id) {
        return not_found(&req);
    }
    let errors = check_entry(&form);
    if !errors.is_empty() {
        return sme_view(&req, &id, Posted::Entry(&form), errors, None).await;
    }
    let body: Map<String, Value> = ENTRY_FIELDS
        .iter()
        .map(|f| (f.to_string(), json!(field(&form, f))))
        .collect();
    let body = Value::Object(body);
    let Core { state, user } = page!(api::core(&req));
    let sent = api::with_input(&body, |b| challenges::submit_entry(&state, &user, &id, b)).await;
    let answer = page!(api::answer(&req, sent));
    match answer {
        Answer::Ok(_) => see_other(&format!("/portal/challenges/{id}?sent=1")),
        refused => {
            let id_of = |p: &str| {
                let f = head(p);
                if ENTRY_FIELDS.contains(&f) {
                    f.to_string()
                } else {
                    String::new()
                }
            };
            let errors = refusal(&refused, &id_of, "entry");
            sme_view(&req, &id, Posted::Entry(&form), errors, None).await
        }
    }
}

pub async fn sme_update(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    form: Form,
) -> HttpResponse {
    let form = form.into_inner();
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let (id, entry_id) = path.into_inner();
    if !safe_id(&id) || !safe_id(&entry_id) {
        return not_found(&req);
    }
    let prefix = format!("entry-{entry_id}");
    let mut errors = Vec::new();
    check_text(&form, &prefix, &mut errors);
    if !errors.is_empty() {
        return sme_view(&req, &id, Posted::Edit(&entry_id, &form), errors, None).await;
    }
    let body = json!({"title": field(&form, "title"), "summary": field(&form, "summary")});
    let Core { state, user } = page!(api::core(&req));
    let saved = api::with_input(&body, |b| {
        challenges::update_entry(&state, &user, &id, &entry_id, b)
    })
    .await;
    let answer = page!(api::answer(&req, saved));
    match answer {
        Answer::Ok(_) => see_other(&format!("/portal/challenges/{id}?saved=1")),
        refused => {
            let id_of = |p: &str| match head(p) {
                f @ ("title" | "summary") => format!("{prefix}-{f}"),
                _ => String::new(),
            };
            let errors = refusal(&refused, &id_of, "entry");
            sme_view(&req, &id, Posted::Edit(&entry_id, &form), errors, None).await
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The console's pages

/// At most this many challenges have their progress looked up for the list (one API call
/// each); the rest link to their own page.
const PROGRESS_LOOKUPS: usize = 50;

fn progress_text(p: &Value) -> String {
    let n = |k: &str| p[k].as_i64().unwrap_or(0);
    let entries = n("entries");
    let mut s = format!(
        "{entries} {}",
        if entries == 1 { "entry" } else { "entries" }
    );
    if n("allocations") > 0 {
        s.push_str(&format!(
            ", {} of {} scores in",
            n("scores"),
            n("allocations")
        ));
    }
    s
}

fn next_milestone(c: &Value) -> String {
    MILESTONES.get(stage(text(&c["status"]))).map_or_else(
        || "None: results released".to_string(),
        |(key, _, label, _)| format!("{label}, {}", day(&c[*key])),
    )
}

fn console_list_page(rows: Vec<Value>) -> View {
    View::new("ch_console_list", "Challenges").with("challenges", Value::Array(rows))
}

fn console_row(c: &Value, progress: String) -> Value {
    let mut row = challenge_view(c);
    row["progress"] = json!(progress);
    row["next"] = json!(next_milestone(c));
    row
}

pub async fn console_list(req: HttpRequest) -> HttpResponse {
    let Core { state, user } = page!(api::core(&req));
    let all = listed(&page!(api::must(&req, challenges::list(&state).await)));
    let mut rows = Vec::new();
    let mut looked_up = 0;
    for c in list(&all["data"]) {
        let progress = if c["status"] == "upcoming" {
            "Not open yet".to_string()
        } else if looked_up < PROGRESS_LOOKUPS {
            looked_up += 1;
            let one = challenges::get(&state, &user, text(&c["id"])).await;
            let one = value(&page!(api::must(&req, one)));
            progress_text(&one["progress"])
        } else {
            "See the challenge".to_string()
        };
        rows.push(console_row(&c, progress));
    }
    console_list_page(rows).render(&req)
}

pub async fn console_challenge(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let id = path.into_inner();
    if !safe_id(&id) {
        return not_found(&req);
    }
    let Core { state, user } = page!(api::core(&req));
    let c = value(&page!(api::must(
        &req,
        challenges::get(&state, &user, &id).await
    )));
    let entries = page!(api::must(
        &req,
        challenges::list_entries(&state, &user, &id).await
    ));
    let entries = listed(&entries);
    let mut view = console_challenge_page(&c, &entries);
    if query_has(&req, "created=1") {
        view = view.banner(format!("The challenge was created. {}", phase(&c)), true);
    }
    view.render(&req)
}

/// The challenge (with the progress the API gives administrators) and every entry.
fn console_challenge_page(c: &Value, entries: &Value) -> View {
    let rows: Vec<Value> = list(&entries["data"])
        .iter()
        .map(|e| {
            json!({
                "id": e["id"], "title": e["title"], "summary": paragraphs(&e["summary"]),
                "organisation_name": e["organisation_name"], "company_number": e["company_number"],
                "kind": kind_name(text(&e["organisation_kind"])),
                "region": region_name(text(&e["region"])), "sic_code": e["sic_code"],
                "submitted": day(&e["submitted_at"]), "updated": day(&e["updated_at"]),
                "locked": e["locked"] == true,
                "result": outcome(&e["result"]),
            })
        })
        .collect();
    let p = &c["progress"];
    let n = |k: &str| p[k].as_i64().unwrap_or(0);
    let places = n("entries") * c["assessors_per_entry"].as_i64().unwrap_or(0);
    let progress = json!({
        "entries": n("entries"), "entries_allocated": n("entries_allocated"),
        "allocations": n("allocations"), "places": places, "scores": n("scores"),
    });
    View::new("ch_console_challenge", text(&c["title"]).to_string())
        .with("challenge", challenge_view(c))
        .with("milestones", milestones(c, &p["milestones_performed"]))
        .with("progress", progress)
        .with("criteria", Value::Array(list(&c["criteria"])))
        .with("awards", awards(c))
        .with("entries", Value::Array(rows))
        .back("/console/challenges")
}

/// The create form's fields, as posted (the checkboxes are `eligible_{kind}`).
const NEW_FIELDS: [&str; 13] = [
    "title",
    "theme",
    "opens_at",
    "closes_at",
    "assessors_assigned_at",
    "assessment_deadline",
    "decisions_released_at",
    "criteria",
    "assessors_per_entry",
    "award_pool",
    "award_amounts",
    "pilot_places",
    "recurrence",
];

fn new_view(
    req: &HttpRequest,
    form: &HashMap<String, String>,
    errors: Vec<FieldError>,
) -> HttpResponse {
    new_page(form, errors).render(req)
}

fn new_page(form: &HashMap<String, String>, errors: Vec<FieldError>) -> View {
    let values: Map<String, Value> = NEW_FIELDS
        .iter()
        .map(|f| (f.to_string(), json!(field(form, f))))
        .collect();
    let kinds: Vec<Value> = KINDS
        .iter()
        .enumerate()
        .map(|(i, (k, label))| {
            json!({
                "name": format!("eligible_{k}"),
                "id": if i == 0 { "eligible".to_string() } else { format!("eligible-{k}") },
                "label": label,
                "checked": field(form, &format!("eligible_{k}")) == "yes",
            })
        })
        .collect();
    View::new("ch_console_new", "Create a challenge")
        .with("values", Value::Object(values))
        .with("kinds", Value::Array(kinds))
        .back("/console/challenges")
        .errors(errors)
}

pub async fn console_new(req: HttpRequest) -> HttpResponse {
    let defaults = HashMap::from([("pilot_places".to_string(), "0".to_string())]);
    new_view(&req, &defaults, Vec::new())
}

/// "2027-03-01 09:00" (UK time), "2027-03-01T09:00", "2027-03-01" (midnight) or RFC 3339 →
/// RFC 3339 in UTC. A UK time the clocks skip is no time.
fn parse_when(s: &str) -> Option<String> {
    use chrono::{NaiveDate, NaiveDateTime, SecondsFormat, Utc};
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(
            t.with_timezone(&Utc)
                .to_rfc3339_opts(SecondsFormat::Secs, true),
        );
    }
    [
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })
    .and_then(crate::format::from_uk_time)
    .map(|t| t.and_utc().to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// Pounds as the API takes them: "£50,000" → "50000.00".
fn money(s: &str) -> Option<String> {
    Money::parse(&tidy_money(s)).ok().map(|m| m.to_string())
}

/// Criteria as lines "name|max|weight".
fn parse_criteria(lines: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for (i, line) in lines.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split('|').map(str::trim).collect();
        let [name, max, weight] = parts.as_slice() else {
            return Err(format!(
                "Write line {} of the criteria as name|maximum score|weight, like Innovation|10|3",
                i + 1
            ));
        };
        let (Ok(max), Ok(weight)) = (max.parse::<u32>(), weight.parse::<u32>()) else {
            return Err(format!(
                "Give line {} of the criteria a maximum score and a weight as whole numbers, like Innovation|10|3",
                i + 1
            ));
        };
        out.push(json!({"name": name, "max_score": max, "weight": weight}));
    }
    if out.is_empty() {
        Err("Enter at least one criterion, like Innovation|10|3".into())
    } else {
        Ok(out)
    }
}

/// The API's request from the form, with every mistake the page can see for itself.
fn challenge_body(form: &HashMap<String, String>) -> (Value, Vec<FieldError>) {
    let mut errors = Vec::new();
    let title = field(form, "title");
    if !(1..=200).contains(&title.chars().count()) {
        errors.push(err("title", "Enter a title of 1 to 200 characters"));
    }
    let theme = field(form, "theme");
    if !(1..=2000).contains(&theme.chars().count()) {
        errors.push(err("theme", "Enter a description of 1 to 2000 characters"));
    }
    let eligible: Vec<&str> = KINDS
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| field(form, &format!("eligible_{k}")) == "yes")
        .collect();
    if eligible.is_empty() {
        errors.push(err("eligible", "Select who may enter"));
    }
    let mut body = json!({"title": title, "theme": theme, "eligible": eligible});
    for (key, _, _, what) in MILESTONES {
        match parse_when(field(form, key)) {
            Some(t) => body[key] = json!(t),
            None => errors.push(err(
                key,
                format!("Enter the date and time {what}, like 2027-03-01 09:00"),
            )),
        }
    }
    match parse_criteria(field(form, "criteria")) {
        Ok(c) => body["criteria"] = Value::Array(c),
        Err(m) => errors.push(err("criteria", m)),
    }
    match field(form, "assessors_per_entry").parse::<u32>() {
        Ok(n) if (1..=10).contains(&n) => body["assessors_per_entry"] = json!(n),
        _ => errors.push(err(
            "assessors_per_entry",
            "Enter how many assessors score each entry, a whole number from 1 to 10",
        )),
    }
    read_awards(form, &mut body, &mut errors);
    let recurrence = field(form, "recurrence");
    if recurrence.chars().count() > 100 {
        errors.push(err(
            "recurrence",
            "Enter a schedule of 100 characters or fewer, or leave it empty",
        ));
    }
    body["recurrence"] = if recurrence.is_empty() {
        Value::Null
    } else {
        json!(recurrence)
    };
    (body, errors)
}

/// The award pool, the awards and the pilot places, into `body`; what cannot be read, into
/// `errors`.
fn read_awards(form: &HashMap<String, String>, body: &mut Value, errors: &mut Vec<FieldError>) {
    match money(field(form, "award_pool")) {
        Some(p) => body["award_pool"] = json!(p),
        None => errors.push(err(
            "award_pool",
            "Enter the award pool in pounds, like 100000",
        )),
    }
    let amounts: Vec<Option<String>> = field(form, "award_amounts")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(money)
        .collect();
    if amounts.is_empty() || amounts.len() > 100 || amounts.iter().any(Option::is_none) {
        errors.push(err(
            "award_amounts",
            "Enter each award in pounds on its own line, first place first, like 50000",
        ));
    } else {
        body["award_amounts"] = json!(amounts.into_iter().flatten().collect::<Vec<_>>());
    }
    let pilot = field(form, "pilot_places");
    let pilot = if pilot.is_empty() {
        Ok(0)
    } else {
        pilot.parse::<u32>()
    };
    match pilot {
        Ok(n) if n <= 1000 => body["pilot_places"] = json!(n),
        _ => errors.push(err(
            "pilot_places",
            "Enter the number of pilot places, a whole number from 0 to 1000",
        )),
    }
}

/// An API field path of the create request, as the form's field id.
fn challenge_field(path: &str) -> String {
    let f = head(path);
    if NEW_FIELDS.contains(&f) || f == "eligible" {
        f.to_string()
    } else {
        String::new()
    }
}

pub async fn console_create(req: HttpRequest, form: Form) -> HttpResponse {
    let form = form.into_inner();
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let (body, errors) = challenge_body(&form);
    if !errors.is_empty() {
        return new_view(&req, &form, errors);
    }
    let Core { state, user } = page!(api::core(&req));
    let made = api::with_input(&body, |b| challenges::create(&state, &user, b)).await;
    match page!(api::answer(&req, made)) {
        Answer::Ok(c) => see_other(&format!("/console/challenges/{}?created=1", c.id)),
        refused => {
            let errors = refusal(&refused, &challenge_field, "challenge-form");
            new_view(&req, &form, errors)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The assessor's page

/// What was posted, shown back on the assessor's page with its errors.
enum Assessing<'a> {
    Nothing,
    Score(&'a str, &'a HashMap<String, String>),
    Conflict(&'a HashMap<String, String>),
}

/// The challenges of the allocated entries, each fetched once (for criteria and dates).
async fn challenges_of(
    req: &HttpRequest,
    entries: &[Value],
) -> Result<BTreeMap<String, Value>, Failure> {
    let ids: BTreeSet<String> = entries
        .iter()
        .map(|e| text(&e["challenge_id"]).to_string())
        .filter(|id| safe_id(id))
        .collect();
    let Core { state, user } = api::core(req)?;
    let mut out = BTreeMap::new();
    for id in ids {
        let c = api::must(req, challenges::get(&state, &user, &id).await)?;
        out.insert(id, value(&c));
    }
    Ok(out)
}

async fn assess_view(
    req: &HttpRequest,
    posted: Assessing<'_>,
    errors: Vec<FieldError>,
    banner: Option<&str>,
) -> HttpResponse {
    let Core { state, user } = page!(api::core(req));
    let allocated = listed(&page!(api::must(
        req,
        challenges::assessments(&state, &user).await
    )));
    let conflicts = listed(&page!(api::must(
        req,
        challenges::list_conflicts(&state, &user).await
    )));
    let challenges = page!(challenges_of(req, &list(&allocated["data"])).await);
    let mut view = assess_page(&allocated, &conflicts, &challenges, &posted, errors);
    if let Some(b) = banner {
        view = view.banner(b, true);
    }
    view.render(req)
}

/// The allocated entries (each with its scoring form while the challenge is in assessment)
/// and the assessor's conflicts of interest with the form to declare one.
fn assess_page(
    allocated: &Value,
    conflicts: &Value,
    challenges: &BTreeMap<String, Value>,
    posted: &Assessing<'_>,
    errors: Vec<FieldError>,
) -> View {
    let entries = list(&allocated["data"]);
    let rows: Vec<Value> = entries
        .iter()
        .map(|e| assessed_entry(e, challenges, posted, &errors))
        .collect();
    let declared: Vec<Value> = list(&conflicts["data"])
        .iter()
        .map(|k| {
            let tag = if k["current"] == true {
                json!({"text": "current", "colour": "green"})
            } else {
                json!({"text": "expired", "colour": "grey"})
            };
            json!({
                "company_number": k["company_number"], "reason": k["reason"],
                "declared": day(&k["declared_at"]), "expires": day(&k["expires_at"]), "tag": tag,
            })
        })
        .collect();
    let values = match posted {
        Assessing::Conflict(f) => {
            json!({"company_number": field(f, "company_number"), "reason": field(f, "reason")})
        }
        _ => json!({"company_number": "", "reason": ""}),
    };
    View::new("ch_assess", "Your assessments")
        .with("entries", Value::Array(rows))
        .with("conflicts", Value::Array(declared))
        .with("values", values)
        .errors(errors)
}

/// One allocated entry, with its scoring form: the scores posted, or those given before.
fn assessed_entry(
    e: &Value,
    challenges: &BTreeMap<String, Value>,
    posted: &Assessing<'_>,
    errors: &[FieldError],
) -> Value {
    let eid = text(&e["id"]);
    let c = challenges
        .get(text(&e["challenge_id"]))
        .cloned()
        .unwrap_or_default();
    let status = text(&c["status"]);
    let mine = &e["my_score"];
    let anchor = format!("entry-{eid}");
    let form = match posted {
        Assessing::Score(id, form) if *id == eid => Some(*form),
        _ => None,
    };
    let criteria = score_fields(&c, mine, &anchor, form, errors);
    let comment_id = format!("{anchor}-comment");
    let comment = match form {
        Some(f) => field(f, "comment").to_string(),
        None => text(&mine["comment"]).to_string(),
    };
    let comment_error = message_of(errors, &comment_id);
    let window = match stage(status) {
        s if s < 3 => format!("Scoring opens on {}.", moment(&c["assessors_assigned_at"])),
        3 => format!("Scores are due by {}.", moment(&c["assessment_deadline"])),
        _ => format!("Scoring closed on {}.", moment(&c["assessment_deadline"])),
    };
    json!({
        "id": eid, "anchor": anchor, "action": format!("/assess/{eid}"),
        "challenge_title": c["title"], "tag": status_tag(status),
        "title": e["title"], "summary": paragraphs(&e["summary"]),
        "organisation_name": e["organisation_name"], "company_number": e["company_number"],
        "kind": kind_name(text(&e["organisation_kind"])),
        "region": region_name(text(&e["region"])), "sic_code": e["sic_code"],
        "submitted": moment(&e["submitted_at"]),
        "scored": !mine.is_null(), "percent": mine["percent"],
        "scored_at": moment(&mine["submitted_at"]),
        "can_score": status == "in_assessment", "window": window,
        "criteria": criteria,
        "comment": {"id": comment_id, "value": comment, "error": comment_error},
    })
}

/// An entry's scoring fields, one per criterion of its challenge `c`.
fn score_fields(
    c: &Value,
    mine: &Value,
    anchor: &str,
    form: Option<&HashMap<String, String>>,
    errors: &[FieldError],
) -> Vec<Value> {
    list(&c["criteria"])
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let name = text(&k["name"]);
            let id = format!("{anchor}-score-{i}");
            let value = match form {
                Some(f) => field(f, &format!("score_{i}")).to_string(),
                None => mine["scores"][name]
                    .as_u64()
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
            };
            let error = message_of(errors, &id);
            json!({
                "id": id, "name": format!("score_{i}"), "label": name,
                "hint": format!("From 0 to {}. Weight {}.", k["max_score"], k["weight"]),
                "max": k["max_score"], "value": value, "error": error,
            })
        })
        .collect()
}

pub async fn assess(req: HttpRequest) -> HttpResponse {
    let banner = if query_has(&req, "scored=1") {
        Some("Your score was saved. You can change it until the assessment deadline.")
    } else if query_has(&req, "withdrawn=1") {
        Some("Your declaration was recorded: entries from this organisation that were allocated to you have been taken off your list (any score you gave them no longer counts) and given to other assessors. For 12 months, entries from this organisation will not be allocated to you.")
    } else if query_has(&req, "declared=1") {
        Some("Your declaration was recorded: for 12 months, entries from this organisation will not be allocated to you.")
    } else {
        None
    };
    assess_view(&req, Assessing::Nothing, Vec::new(), banner).await
}

/// An API field path of a score, as the form's field id.
fn score_field(path: &str, anchor: &str, criteria: &[Value]) -> String {
    if let Some(i) = path
        .strip_prefix("scores.")
        .and_then(|name| criteria.iter().position(|k| k["name"] == name))
    {
        return format!("{anchor}-score-{i}");
    }
    match path {
        "scores" => format!("{anchor}-score-0"),
        "comment" => format!("{anchor}-comment"),
        _ => String::new(),
    }
}

pub async fn score(req: HttpRequest, path: web::Path<String>, form: Form) -> HttpResponse {
    let form = form.into_inner();
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let entry_id = path.into_inner();
    if !safe_id(&entry_id) {
        return not_found(&req);
    }
    // Refused (a "you cannot open this page" page) when the entry is not the viewer's to
    // assess, or they declared a conflict of interest with its organisation.
    let Core { state, user } = page!(api::core(&req));
    let entry = page!(api::must(
        &req,
        challenges::assessment(&state, &user, &entry_id).await
    ));
    let c = page!(api::must(
        &req,
        challenges::get(&state, &user, &entry.challenge_id).await
    ));
    let criteria = list(&json!(c.criteria));
    let anchor = format!("entry-{entry_id}");
    let mut scores = Map::new();
    let mut errors = Vec::new();
    for (i, k) in criteria.iter().enumerate() {
        let name = text(&k["name"]);
        let max = k["max_score"].as_u64().unwrap_or(0);
        match field(&form, &format!("score_{i}")).parse::<u64>() {
            Ok(s) if s <= max => {
                scores.insert(name.to_string(), json!(s));
            }
            _ => errors.push(err(
                format!("{anchor}-score-{i}"),
                format!("Enter a score for {name} from 0 to {max}"),
            )),
        }
    }
    let comment = field(&form, "comment");
    if comment.chars().count() > 5000 {
        errors.push(err(
            format!("{anchor}-comment"),
            "Write a comment of 5000 characters or fewer",
        ));
    }
    if !errors.is_empty() {
        return assess_view(&req, Assessing::Score(&entry_id, &form), errors, None).await;
    }
    let body = json!({"scores": scores, "comment": comment});
    let scored = api::with_input(&body, |b| challenges::score(&state, &user, &entry_id, b)).await;
    let answer = page!(api::answer(&req, scored));
    match answer {
        Answer::Ok(_) => see_other("/assess?scored=1"),
        refused => {
            let id_of = |p: &str| score_field(p, &anchor, &criteria);
            let errors = refusal(&refused, &id_of, &anchor);
            assess_view(&req, Assessing::Score(&entry_id, &form), errors, None).await
        }
    }
}

pub async fn declare_conflict(req: HttpRequest, form: Form) -> HttpResponse {
    let form = form.into_inner();
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let mut errors = Vec::new();
    if CompanyNumber::parse(field(&form, "company_number")).is_err() {
        errors.push(err(
            "conflict_company_number",
            "Enter the organisation's company registration number, like 01234567 or SC123456",
        ));
    }
    if !(1..=500).contains(&field(&form, "reason").chars().count()) {
        errors.push(err(
            "conflict_reason",
            "Describe your connection with the organisation in 1 to 500 characters",
        ));
    }
    if !errors.is_empty() {
        return assess_view(&req, Assessing::Conflict(&form), errors, None).await;
    }
    let body = json!({
        "company_number": field(&form, "company_number"),
        "reason": field(&form, "reason"),
    });
    let Core { state, user } = page!(api::core(&req));
    let declared = api::with_input(&body, |b| challenges::declare_conflict(&state, &user, b)).await;
    match page!(api::answer(&req, declared)) {
        Answer::Ok(v) if v.entries_withdrawn.as_ref().is_some_and(|w| !w.is_empty()) => {
            see_other("/assess?declared=1&withdrawn=1")
        }
        Answer::Ok(_) => see_other("/assess?declared=1"),
        refused => {
            let id_of = |p: &str| match head(p) {
                "company_number" => "conflict_company_number".to_string(),
                "reason" => "conflict_reason".to_string(),
                _ => String::new(),
            };
            let errors = refusal(&refused, &id_of, "conflicts");
            assess_view(&req, Assessing::Conflict(&form), errors, None).await
        }
    }
}
