//! Innovation challenges: an SME's challenges and entries (`/portal/challenges`), the
//! administrators' challenges with their milestones, progress and entries
//! (`/console/challenges`), and an assessor's allocated entries, scores and conflicts of
//! interest (`/assess`), on the challenge services (`voucherd_api::service::challenges`),
//! whose typed views the pages shape for their templates.

use crate::api::{self, Answer, Core, Failure};
use crate::forms::{posted, Trimmed};
use crate::portal::{csrf_refused, date, date_time, err, page, regions, see_other, tidy_money};
use crate::render::not_found;
use crate::render::{FieldError, Tag, View};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use voucherd_api::service::challenges::{
    self, ChallengeView, ConflictView, EntryView, MyScoreView, ResultView,
};
use voucherd_domain::challenge::{Criterion, Milestone, OrganisationKind, Standing, Status};
use voucherd_domain::money::Amount;
use voucherd_domain::{CompanyNumber, Money};

// ---------------------------------------------------------------------------------------------
// Shared parts

fn query_has(req: &HttpRequest, flag: &str) -> bool {
    req.query_string().split('&').any(|p| p == flag)
}

/// Ids the API gives (UUIDs) only: nothing else is looked up.
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

/// A field's message among `errors`.
fn message_of(errors: &[FieldError], id: &str) -> Option<String> {
    errors
        .iter()
        .find(|e| e.id == id)
        .map(|e| e.message.clone())
}

/// How far along its milestones a challenge is: 0 before it opens, 5 once decided (a
/// cancelled challenge is at 0: none of its milestones happens).
fn stage(s: Standing) -> usize {
    match s.status() {
        None | Some(Status::Upcoming) => 0,
        Some(Status::Open) => 1,
        Some(Status::Closed) => 2,
        Some(Status::InAssessment) => 3,
        Some(Status::Panel) => 4,
        Some(Status::Decided) => 5,
    }
}

fn standing_tag(s: Standing) -> Tag {
    let colour = match s {
        Standing::Live(Status::Open) => "green",
        Standing::Live(Status::Closed) => "yellow",
        Standing::Live(Status::InAssessment) => "purple",
        Standing::Live(Status::Panel) => "turquoise",
        Standing::Live(Status::Decided) => "blue",
        Standing::Live(Status::Upcoming) | Standing::Cancelled => "grey",
    };
    Tag::new(s.as_str().replace('_', " "), colour)
}

/// The five milestones in order: the form's field, its label, and what happens then.
const MILESTONES: [(Milestone, &str, &str, &str); 5] = [
    (
        Milestone::Opens,
        "opens_at",
        "Opens for entries",
        "entries open",
    ),
    (
        Milestone::Closes,
        "closes_at",
        "Closes for entries",
        "entries close",
    ),
    (
        Milestone::AssessorsAssigned,
        "assessors_assigned_at",
        "Assessors assigned",
        "assessors are assigned",
    ),
    (
        Milestone::AssessmentDeadline,
        "assessment_deadline",
        "Assessment deadline",
        "assessment ends",
    ),
    (
        Milestone::DecisionsReleased,
        "decisions_released_at",
        "Decisions released",
        "decisions are released",
    ),
];

/// When milestone `m` of challenge `c` falls.
fn milestone_at(c: &ChallengeView, m: Milestone) -> NaiveDateTime {
    match m {
        Milestone::Opens => c.opens_at.0,
        Milestone::Closes => c.closes_at.0,
        Milestone::AssessorsAssigned => c.assessors_assigned_at.0,
        Milestone::AssessmentDeadline => c.assessment_deadline.0,
        Milestone::DecisionsReleased => c.decisions_released_at.0,
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
fn paragraphs(text: &str) -> Vec<String> {
    text.split('\n')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

/// A challenge as the templates show it.
#[derive(Serialize)]
struct ChallengeCard {
    id: String,
    title: String,
    theme: Vec<String>,
    status: Standing,
    tag: Tag,
    open: bool,
    decided: bool,
    eligible: String,
    pool: String,
    pilot_places: i32,
    assessors_per_entry: i32,
    recurrence: Option<String>,
    previous_id: Option<String>,
    created: String,
    opens: String,
    closes: String,
    decisions: String,
    opens_day: String,
    closes_day: String,
    decisions_day: String,
}

impl ChallengeCard {
    fn new(c: &ChallengeView) -> ChallengeCard {
        ChallengeCard {
            id: c.id.to_string(),
            title: c.title.clone(),
            theme: paragraphs(&c.theme),
            status: c.status,
            tag: standing_tag(c.status),
            open: c.status == Standing::Live(Status::Open),
            decided: c.status == Standing::Live(Status::Decided),
            eligible: c
                .eligible
                .iter()
                .map(|k| k.label())
                .collect::<Vec<_>>()
                .join("; "),
            pool: c.award_pool.pounds(),
            pilot_places: c.pilot_places,
            assessors_per_entry: c.assessors_per_entry,
            recurrence: c.recurrence.clone(),
            previous_id: c.previous_id.as_ref().map(ToString::to_string),
            created: date(c.created_at),
            opens: date_time(c.opens_at),
            closes: date_time(c.closes_at),
            decisions: date_time(c.decisions_released_at),
            opens_day: date(c.opens_at),
            closes_day: date(c.closes_at),
            decisions_day: date(c.decisions_released_at),
        }
    }
}

/// A milestone on a challenge's timeline.
#[derive(Serialize)]
struct MilestoneRow {
    label: &'static str,
    when: String,
    passed: bool,
    tag: Tag,
}

/// The milestones with their dates; `performed` (the console's) names those the worker did.
fn milestones(c: &ChallengeView, performed: &[Milestone]) -> Vec<MilestoneRow> {
    let reached = stage(c.status);
    MILESTONES
        .iter()
        .enumerate()
        .map(|(i, (m, _, label, _))| {
            let tag = if performed.contains(m) {
                Tag::new("done", "green")
            } else if reached > i {
                Tag::new("due", "yellow")
            } else {
                Tag::new("to come", "grey")
            };
            MilestoneRow {
                label,
                when: crate::format::date_time(milestone_at(c, *m)),
                passed: reached > i,
                tag,
            }
        })
        .collect()
}

#[derive(Serialize)]
struct AwardRow {
    place: String,
    amount: String,
}

fn awards(c: &ChallengeView) -> Vec<AwardRow> {
    c.award_amounts
        .iter()
        .enumerate()
        .map(|(i, a)| AwardRow {
            place: ordinal(i + 1),
            amount: a.pounds(),
        })
        .collect()
}

/// An entry's result, once decisions are released.
#[derive(Serialize)]
struct Outcome {
    score: Option<String>,
    rank: Option<i32>,
    awarded: bool,
    award: String,
    pilot: bool,
}

impl Outcome {
    fn new(r: &ResultView) -> Outcome {
        let awarded = r.award != Amount(0);
        Outcome {
            score: r.score_percent.as_ref().map(|s| format!("{s}%")),
            rank: r.rank,
            awarded,
            award: if awarded {
                r.award.pounds()
            } else {
                "No award".to_string()
            },
            pilot: r.pilot_invited,
        }
    }
}

/// What every page shows of an entry: who entered, and what.
#[derive(Serialize)]
struct EntryCard {
    id: String,
    title: String,
    summary: Vec<String>,
    organisation_name: String,
    company_number: String,
    kind: &'static str,
    region: &'static str,
    sic_code: String,
}

impl EntryCard {
    fn new(e: &EntryView) -> EntryCard {
        EntryCard {
            id: e.id.to_string(),
            title: e.title.clone(),
            summary: paragraphs(&e.summary),
            organisation_name: e.organisation_name.clone(),
            company_number: e.company_number.clone(),
            kind: e.organisation_kind.label(),
            region: e.region.name(),
            sic_code: e.sic_code.clone(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The SME's pages

pub async fn sme_list(req: HttpRequest) -> HttpResponse {
    let Core { state, .. } = page!(api::core(&req));
    let all = page!(api::must(&req, challenges::list(&state).await));
    sme_list_page(&all).render(&req)
}

fn sme_list_page(all: &[ChallengeView]) -> View {
    let (current, past): (Vec<&ChallengeView>, Vec<&ChallengeView>) = all
        .iter()
        .partition(|c| matches!(c.status, Standing::Live(Status::Upcoming | Status::Open)));
    let cards = |list: Vec<&ChallengeView>| -> Vec<ChallengeCard> {
        list.into_iter().map(ChallengeCard::new).collect()
    };
    View::new("ch_sme_list", "Innovation challenges")
        .with("current", cards(current))
        .with("past", cards(past))
        .back("/portal")
}

/// What was posted, shown back on the challenge's page with its errors.
enum Posted<'a> {
    Nothing,
    Entry(&'a EntryForm),
    Edit(&'a str, &'a EntryTextForm),
}

/// An entry to a challenge: sent to the service as it serializes, and shown back with its
/// errors.
#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
pub struct EntryForm {
    #[serde(skip_serializing)]
    csrf: Trimmed,
    company_number: Trimmed,
    organisation_name: Trimmed,
    organisation_kind: Trimmed,
    region: Trimmed,
    sic_code: Trimmed,
    title: Trimmed,
    summary: Trimmed,
}

/// A change to an entry's title and summary.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct EntryTextForm {
    csrf: Trimmed,
    title: Trimmed,
    summary: Trimmed,
}

posted!(EntryForm, EntryTextForm);

/// The entry form's fields (each its field's id), as an API field path's first part names
/// them.
const ENTRY_FIELDS: [&str; 7] = [
    "company_number",
    "organisation_name",
    "organisation_kind",
    "region",
    "sic_code",
    "title",
    "summary",
];

fn phase(c: &ChallengeView) -> String {
    match c.status {
        Standing::Live(Status::Upcoming) => format!("Entries open on {}.", date_time(c.opens_at)),
        Standing::Live(Status::Open) => {
            format!("Open for entries until {}.", date_time(c.closes_at))
        }
        Standing::Live(Status::Decided) => format!(
            "Results were released on {}.",
            date_time(c.decisions_released_at)
        ),
        _ => format!(
            "Closed for entries on {}. Results are released on {}.",
            date_time(c.closes_at),
            date_time(c.decisions_released_at)
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
    let c = page!(api::must(req, challenges::get(&state, &user, id).await));
    let mine = page!(api::must(
        req,
        challenges::list_entries(&state, &user, id).await
    ));
    let mut view = sme_page(&c, &mine, &posted, errors);
    if let Some(b) = banner {
        view = view.banner(b, true);
    }
    view.render(req)
}

/// A kind of organisation the entry form offers.
#[derive(Serialize)]
struct KindChoice {
    value: OrganisationKind,
    label: &'static str,
    id: String,
    checked: bool,
}

/// The challenge, the viewer's entries (each with its form while it may change) and, while
/// the challenge is open and the viewer has no entry, the form to enter.
fn sme_page(
    c: &ChallengeView,
    mine: &[EntryView],
    posted: &Posted<'_>,
    errors: Vec<FieldError>,
) -> View {
    let open = c.status == Standing::Live(Status::Open);
    let entries: Vec<OwnEntry> = mine
        .iter()
        .map(|e| OwnEntry::new(e, c.id.as_str(), open, posted, &errors))
        .collect();
    let blank = EntryForm::default();
    let form = match posted {
        Posted::Entry(form) => form,
        _ => &blank,
    };
    let kinds: Vec<KindChoice> = c
        .eligible
        .iter()
        .enumerate()
        .map(|(i, k)| KindChoice {
            value: *k,
            label: k.label(),
            id: if i == 0 {
                "organisation_kind".to_string()
            } else {
                format!("organisation_kind-{}", k.as_str())
            },
            checked: form.organisation_kind == k.as_str() || c.eligible.len() == 1,
        })
        .collect();
    let can_enter = open && entries.is_empty();
    View::new("ch_sme_challenge", c.title.clone())
        .with("challenge", ChallengeCard::new(c))
        .with("phase", phase(c))
        .with("milestones", milestones(c, &[]))
        .with("criteria", &c.criteria)
        .with("awards", awards(c))
        .with("entries", entries)
        .with("can_enter", can_enter)
        .with("kinds", kinds)
        .with("regions", regions(&form.region))
        .with("values", form)
        .back("/portal/challenges")
        .errors(errors)
}

/// The title and summary in an entry's form.
#[derive(Serialize)]
struct EntryText {
    title: String,
    summary: String,
}

/// One of the viewer's own entries.
#[derive(Serialize)]
struct OwnEntry {
    #[serde(flatten)]
    card: EntryCard,
    action: String,
    submitted: String,
    updated: String,
    editable: bool,
    result: Option<Outcome>,
    values: EntryText,
    title_id: String,
    summary_id: String,
    title_error: Option<String>,
    summary_error: Option<String>,
}

impl OwnEntry {
    /// Entry `e` of challenge `id`, with its form (as posted, when it was) while the
    /// challenge is `open` and the entry not locked.
    fn new(
        e: &EntryView,
        id: &str,
        open: bool,
        posted: &Posted<'_>,
        errors: &[FieldError],
    ) -> OwnEntry {
        let eid = &e.id;
        let (title_id, summary_id) = (format!("entry-{eid}-title"), format!("entry-{eid}-summary"));
        let values = match posted {
            Posted::Edit(edited, form) if *edited == *eid => EntryText {
                title: form.title.to_string(),
                summary: form.summary.to_string(),
            },
            _ => EntryText {
                title: e.title.clone(),
                summary: e.summary.clone(),
            },
        };
        OwnEntry {
            card: EntryCard::new(e),
            action: format!("/portal/challenges/{id}/entries/{eid}"),
            submitted: date_time(e.submitted_at),
            updated: date_time(e.updated_at),
            editable: open && !e.locked,
            result: e.result.as_ref().map(Outcome::new),
            values,
            title_error: message_of(errors, &title_id),
            summary_error: message_of(errors, &summary_id),
            title_id,
            summary_id,
        }
    }
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

/// An entry's title and summary, checked as the API will (`prefix` makes the form's field
/// ids).
fn check_text(title: &str, summary: &str, prefix: &str, errors: &mut Vec<FieldError>) {
    let id = |f: &str| {
        if prefix.is_empty() {
            f.to_string()
        } else {
            format!("{prefix}-{f}")
        }
    };
    if !(1..=200).contains(&title.chars().count()) {
        errors.push(err(id("title"), "Enter a title of 1 to 200 characters"));
    }
    if !(20..=5000).contains(&summary.chars().count()) {
        errors.push(err(
            id("summary"),
            "Describe your entry in 20 to 5000 characters",
        ));
    }
}

/// Each answer checked as the API will, so every mistake shows at once.
fn check_entry(form: &EntryForm) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if CompanyNumber::parse(&form.company_number).is_err() {
        errors.push(err(
            "company_number",
            "Enter a company registration number, like 01234567 or SC123456",
        ));
    }
    if !(1..=160).contains(&form.organisation_name.chars().count()) {
        errors.push(err(
            "organisation_name",
            "Enter the organisation's name, up to 160 characters",
        ));
    }
    if form.organisation_kind.parse::<OrganisationKind>().is_err() {
        errors.push(err("organisation_kind", "Select the kind of organisation"));
    }
    crate::portal::check_region_and_sic(
        &form.region,
        &form.sic_code,
        "the organisation",
        &mut errors,
    );
    check_text(&form.title, &form.summary, "", &mut errors);
    errors
}

pub async fn sme_submit(
    req: HttpRequest,
    path: web::Path<String>,
    web::Form(form): web::Form<EntryForm>,
) -> HttpResponse {
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
    let body = json!(form);
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
    web::Form(form): web::Form<EntryTextForm>,
) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let (id, entry_id) = path.into_inner();
    if !safe_id(&id) || !safe_id(&entry_id) {
        return not_found(&req);
    }
    let prefix = format!("entry-{entry_id}");
    let mut errors = Vec::new();
    check_text(&form.title, &form.summary, &prefix, &mut errors);
    if !errors.is_empty() {
        return sme_view(&req, &id, Posted::Edit(&entry_id, &form), errors, None).await;
    }
    let body = json!({"title": form.title, "summary": form.summary});
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

/// At most this many challenges have their progress looked up for the list (one look-up
/// each); the rest link to their own page.
const PROGRESS_LOOKUPS: usize = 50;

fn progress_text(c: &ChallengeView) -> String {
    let Some(p) = &c.progress else {
        return "See the challenge".to_string();
    };
    let mut s = format!(
        "{} {}",
        p.entries,
        if p.entries == 1 { "entry" } else { "entries" }
    );
    if p.allocations > 0 {
        s.push_str(&format!(", {} of {} scores in", p.scores, p.allocations));
    }
    s
}

fn next_milestone(c: &ChallengeView) -> String {
    MILESTONES.get(stage(c.status)).map_or_else(
        || "None: results released".to_string(),
        |(m, _, label, _)| format!("{label}, {}", crate::format::date(milestone_at(c, *m))),
    )
}

/// A challenge in the console's list.
#[derive(Serialize)]
struct ConsoleRow {
    #[serde(flatten)]
    card: ChallengeCard,
    progress: String,
    next: String,
}

pub async fn console_list(req: HttpRequest) -> HttpResponse {
    let Core { state, user } = page!(api::core(&req));
    let all = page!(api::must(&req, challenges::list(&state).await));
    let mut rows = Vec::new();
    let mut looked_up = 0;
    for c in &all {
        let progress = if c.status == Standing::Live(Status::Upcoming) {
            "Not open yet".to_string()
        } else if looked_up < PROGRESS_LOOKUPS {
            looked_up += 1;
            let one = page!(api::must(
                &req,
                challenges::get(&state, &user, c.id.as_str()).await
            ));
            progress_text(&one)
        } else {
            "See the challenge".to_string()
        };
        rows.push(ConsoleRow {
            card: ChallengeCard::new(c),
            progress,
            next: next_milestone(c),
        });
    }
    View::new("ch_console_list", "Challenges")
        .with("challenges", rows)
        .render(&req)
}

pub async fn console_challenge(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let id = path.into_inner();
    if !safe_id(&id) {
        return not_found(&req);
    }
    let Core { state, user } = page!(api::core(&req));
    let c = page!(api::must(&req, challenges::get(&state, &user, &id).await));
    let entries = page!(api::must(
        &req,
        challenges::list_entries(&state, &user, &id).await
    ));
    let mut view = console_challenge_page(&c, &entries);
    if query_has(&req, "created=1") {
        view = view.banner(format!("The challenge was created. {}", phase(&c)), true);
    }
    view.render(&req)
}

/// An entry as the console lists it.
#[derive(Serialize)]
struct ConsoleEntry {
    #[serde(flatten)]
    card: EntryCard,
    submitted: String,
    updated: String,
    locked: bool,
    result: Option<Outcome>,
}

/// How far the challenge's entries are allocated and scored.
#[derive(Serialize, Default)]
struct ProgressCounts {
    entries: i64,
    entries_allocated: i64,
    allocations: i64,
    places: i64,
    scores: i64,
}

/// The challenge (with the progress the service gives administrators) and every entry.
fn console_challenge_page(c: &ChallengeView, entries: &[EntryView]) -> View {
    let rows: Vec<ConsoleEntry> = entries
        .iter()
        .map(|e| ConsoleEntry {
            card: EntryCard::new(e),
            submitted: date(e.submitted_at),
            updated: date(e.updated_at),
            locked: e.locked,
            result: e.result.as_ref().map(Outcome::new),
        })
        .collect();
    let (progress, performed) = match &c.progress {
        Some(p) => (
            ProgressCounts {
                entries: p.entries,
                entries_allocated: p.entries_allocated,
                allocations: p.allocations,
                places: p.entries * i64::from(c.assessors_per_entry),
                scores: p.scores,
            },
            p.milestones_performed.as_slice(),
        ),
        None => (ProgressCounts::default(), &[][..]),
    };
    View::new("ch_console_challenge", c.title.clone())
        .with("challenge", ChallengeCard::new(c))
        .with("milestones", milestones(c, performed))
        .with("progress", progress)
        .with("criteria", &c.criteria)
        .with("awards", awards(c))
        .with("entries", rows)
        .back("/console/challenges")
}

/// The form that creates a challenge: shown back (as it serializes) with its errors.
#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
pub struct ChallengeForm {
    #[serde(skip_serializing)]
    csrf: Trimmed,
    title: Trimmed,
    theme: Trimmed,
    opens_at: Trimmed,
    closes_at: Trimmed,
    assessors_assigned_at: Trimmed,
    assessment_deadline: Trimmed,
    decisions_released_at: Trimmed,
    /// Lines `name|max|weight`.
    criteria: Trimmed,
    assessors_per_entry: Trimmed,
    award_pool: Trimmed,
    /// One award a line, first place first.
    award_amounts: Trimmed,
    pilot_places: Trimmed,
    recurrence: Trimmed,
    /// Only the checkboxes of who may enter, one per kind of organisation
    /// (`eligible_{kind}`): their names are made from `OrganisationKind::ALL`, so they are
    /// kept by name, as the form makes them, rather than as a field for each.
    #[serde(flatten, skip_serializing)]
    eligible: BTreeMap<String, Trimmed>,
}

posted!(ChallengeForm);

impl ChallengeForm {
    /// Whether organisations of `kind` may enter.
    fn eligible(&self, kind: OrganisationKind) -> bool {
        self.eligible
            .get(&format!("eligible_{}", kind.as_str()))
            .is_some_and(|v| *v == "yes")
    }

    /// The time typed for milestone `m`.
    fn when(&self, m: Milestone) -> &str {
        match m {
            Milestone::Opens => &self.opens_at,
            Milestone::Closes => &self.closes_at,
            Milestone::AssessorsAssigned => &self.assessors_assigned_at,
            Milestone::AssessmentDeadline => &self.assessment_deadline,
            Milestone::DecisionsReleased => &self.decisions_released_at,
        }
    }
}

/// The create form's fields (each its field's id), as an API field path's first part names
/// them (the checkboxes are `eligible_{kind}`, with the id `eligible`).
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

fn new_view(req: &HttpRequest, form: &ChallengeForm, errors: Vec<FieldError>) -> HttpResponse {
    new_page(form, errors).render(req)
}

/// A kind of organisation the create form's checkboxes offer.
#[derive(Serialize)]
struct KindBox {
    name: String,
    id: String,
    label: &'static str,
    checked: bool,
}

fn new_page(form: &ChallengeForm, errors: Vec<FieldError>) -> View {
    let kinds: Vec<KindBox> = OrganisationKind::ALL
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            let k = kind.as_str();
            KindBox {
                name: format!("eligible_{k}"),
                id: if i == 0 {
                    "eligible".to_string()
                } else {
                    format!("eligible-{k}")
                },
                label: kind.label(),
                checked: form.eligible(*kind),
            }
        })
        .collect();
    View::new("ch_console_new", "Create a challenge")
        .with("values", form)
        .with("kinds", kinds)
        .back("/console/challenges")
        .errors(errors)
}

pub async fn console_new(req: HttpRequest) -> HttpResponse {
    let defaults = ChallengeForm {
        pilot_places: Trimmed::new("0"),
        ..ChallengeForm::default()
    };
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
fn parse_criteria(lines: &str) -> Result<Vec<Criterion>, String> {
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
        out.push(Criterion {
            name: name.to_string(),
            max_score: max,
            weight,
        });
    }
    if out.is_empty() {
        Err("Enter at least one criterion, like Innovation|10|3".into())
    } else {
        Ok(out)
    }
}

/// The service's request as the form gives it; sent only when the page found no mistake.
#[derive(Serialize, Default)]
struct ChallengeBody<'a> {
    title: &'a str,
    theme: &'a str,
    eligible: Vec<&'static str>,
    /// Each milestone's time by its field, RFC 3339.
    #[serde(flatten)]
    milestones: BTreeMap<&'static str, String>,
    criteria: Vec<Criterion>,
    assessors_per_entry: u32,
    award_pool: String,
    award_amounts: Vec<String>,
    pilot_places: u32,
    recurrence: Option<&'a str>,
}

/// The service's request from the form, with every mistake the page can see for itself.
fn challenge_body(form: &ChallengeForm) -> (ChallengeBody<'_>, Vec<FieldError>) {
    let mut errors = Vec::new();
    let mut body = ChallengeBody {
        title: &form.title,
        theme: &form.theme,
        ..ChallengeBody::default()
    };
    if !(1..=200).contains(&body.title.chars().count()) {
        errors.push(err("title", "Enter a title of 1 to 200 characters"));
    }
    if !(1..=2000).contains(&body.theme.chars().count()) {
        errors.push(err("theme", "Enter a description of 1 to 2000 characters"));
    }
    body.eligible = OrganisationKind::ALL
        .iter()
        .filter(|k| form.eligible(**k))
        .map(|k| k.as_str())
        .collect();
    if body.eligible.is_empty() {
        errors.push(err("eligible", "Select who may enter"));
    }
    for (milestone, key, _, what) in MILESTONES {
        match parse_when(form.when(milestone)) {
            Some(t) => {
                body.milestones.insert(key, t);
            }
            None => errors.push(err(
                key,
                format!("Enter the date and time {what}, like 2027-03-01 09:00"),
            )),
        }
    }
    match parse_criteria(&form.criteria) {
        Ok(c) => body.criteria = c,
        Err(m) => errors.push(err("criteria", m)),
    }
    match form.assessors_per_entry.parse::<u32>() {
        Ok(n) if (1..=10).contains(&n) => body.assessors_per_entry = n,
        _ => errors.push(err(
            "assessors_per_entry",
            "Enter how many assessors score each entry, a whole number from 1 to 10",
        )),
    }
    read_awards(form, &mut body, &mut errors);
    let recurrence = form.recurrence.as_str();
    if recurrence.chars().count() > 100 {
        errors.push(err(
            "recurrence",
            "Enter a schedule of 100 characters or fewer, or leave it empty",
        ));
    }
    body.recurrence = (!recurrence.is_empty()).then_some(recurrence);
    (body, errors)
}

/// The award pool, the awards and the pilot places, into `body`; what cannot be read, into
/// `errors`.
fn read_awards(form: &ChallengeForm, body: &mut ChallengeBody<'_>, errors: &mut Vec<FieldError>) {
    match money(&form.award_pool) {
        Some(p) => body.award_pool = p,
        None => errors.push(err(
            "award_pool",
            "Enter the award pool in pounds, like 100000",
        )),
    }
    let amounts: Vec<Option<String>> = form
        .award_amounts
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
        body.award_amounts = amounts.into_iter().flatten().collect();
    }
    let pilot = form.pilot_places.as_str();
    let pilot = if pilot.is_empty() {
        Ok(0)
    } else {
        pilot.parse::<u32>()
    };
    match pilot {
        Ok(n) if n <= 1000 => body.pilot_places = n,
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

pub async fn console_create(
    req: HttpRequest,
    web::Form(form): web::Form<ChallengeForm>,
) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let (body, errors) = challenge_body(&form);
    if !errors.is_empty() {
        return new_view(&req, &form, errors);
    }
    let Core { state, user } = page!(api::core(&req));
    let made = api::with_input(&json!(body), |b| challenges::create(&state, &user, b)).await;
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
    Score(&'a str, &'a ScoreForm),
    Conflict(&'a ConflictForm),
}

/// An assessor's scores of an entry, with their comment.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ScoreForm {
    csrf: Trimmed,
    comment: Trimmed,
    /// Only the scores, one per criterion of the entry's challenge, named by its place
    /// (`score_0`, `score_1`, ...): how many there are is the challenge's.
    #[serde(flatten)]
    scores: BTreeMap<String, Trimmed>,
}

impl ScoreForm {
    /// The score typed for criterion `i`.
    fn score(&self, i: usize) -> &str {
        self.scores
            .get(&format!("score_{i}"))
            .map_or("", |s| s.as_str())
    }
}

/// A conflict of interest an assessor declares; shown back (as it serializes) with its errors.
#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
pub struct ConflictForm {
    #[serde(skip_serializing)]
    csrf: Trimmed,
    company_number: Trimmed,
    reason: Trimmed,
}

posted!(ScoreForm, ConflictForm);

/// The challenges of the allocated entries, each looked up once (for criteria and dates).
async fn challenges_of(
    req: &HttpRequest,
    entries: &[EntryView],
) -> Result<BTreeMap<String, ChallengeView>, Failure> {
    let ids: BTreeSet<&str> = entries.iter().map(|e| e.challenge_id.as_str()).collect();
    let Core { state, user } = api::core(req)?;
    let mut out = BTreeMap::new();
    for id in ids {
        let c = api::must(req, challenges::get(&state, &user, id).await)?;
        out.insert(id.to_string(), c);
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
    let allocated = page!(api::must(req, challenges::assessments(&state, &user).await));
    let conflicts = page!(api::must(
        req,
        challenges::list_conflicts(&state, &user).await
    ));
    let challenges = page!(challenges_of(req, &allocated).await);
    let mut view = assess_page(&allocated, &conflicts, &challenges, &posted, errors);
    if let Some(b) = banner {
        view = view.banner(b, true);
    }
    view.render(req)
}

/// A conflict of interest the assessor declared.
#[derive(Serialize)]
struct DeclaredConflict {
    company_number: String,
    reason: String,
    declared: String,
    expires: String,
    tag: Tag,
}

impl DeclaredConflict {
    fn new(k: &ConflictView) -> DeclaredConflict {
        DeclaredConflict {
            company_number: k.company_number.clone(),
            reason: k.reason.clone(),
            declared: date(k.declared_at),
            expires: date(k.expires_at),
            tag: if k.current {
                Tag::new("current", "green")
            } else {
                Tag::new("expired", "grey")
            },
        }
    }
}

/// The allocated entries (each with its scoring form while the challenge is in assessment)
/// and the assessor's conflicts of interest with the form to declare one.
fn assess_page(
    allocated: &[EntryView],
    conflicts: &[ConflictView],
    challenges: &BTreeMap<String, ChallengeView>,
    posted: &Assessing<'_>,
    errors: Vec<FieldError>,
) -> View {
    let rows: Vec<AssessedEntry> = allocated
        .iter()
        .filter_map(|e| {
            let c = challenges.get(e.challenge_id.as_str())?;
            Some(AssessedEntry::new(e, c, posted, &errors))
        })
        .collect();
    let declared: Vec<DeclaredConflict> = conflicts.iter().map(DeclaredConflict::new).collect();
    let blank = ConflictForm::default();
    let values = match posted {
        Assessing::Conflict(f) => f,
        _ => &blank,
    };
    View::new("ch_assess", "Your assessments")
        .with("entries", rows)
        .with("conflicts", declared)
        .with("values", values)
        .errors(errors)
}

/// A form field with its value and error.
#[derive(Serialize)]
struct Answered {
    id: String,
    value: String,
    error: Option<String>,
}

/// A criterion's scoring field.
#[derive(Serialize)]
struct ScoreField {
    id: String,
    name: String,
    label: String,
    hint: String,
    max: u32,
    value: String,
    error: Option<String>,
}

/// An entry allocated to the assessor, with its scoring form.
#[derive(Serialize)]
struct AssessedEntry {
    #[serde(flatten)]
    card: EntryCard,
    anchor: String,
    action: String,
    challenge_title: String,
    tag: Tag,
    submitted: String,
    scored: bool,
    percent: Option<String>,
    scored_at: String,
    can_score: bool,
    window: String,
    criteria: Vec<ScoreField>,
    comment: Answered,
}

impl AssessedEntry {
    /// Entry `e` of challenge `c`, with its form: the scores posted, or those given before.
    fn new(
        e: &EntryView,
        c: &ChallengeView,
        posted: &Assessing<'_>,
        errors: &[FieldError],
    ) -> AssessedEntry {
        let mine = e.my_score.as_ref().and_then(Option::as_ref);
        let anchor = format!("entry-{}", e.id);
        let form = match posted {
            Assessing::Score(id, form) if *id == e.id => Some(*form),
            _ => None,
        };
        let comment_id = format!("{anchor}-comment");
        let comment = match (form, mine) {
            (Some(f), _) => f.comment.to_string(),
            (None, Some(m)) => m.comment.clone(),
            (None, None) => String::new(),
        };
        let window = match stage(c.status) {
            s if s < 3 => format!("Scoring opens on {}.", date_time(c.assessors_assigned_at)),
            3 => format!("Scores are due by {}.", date_time(c.assessment_deadline)),
            _ => format!("Scoring closed on {}.", date_time(c.assessment_deadline)),
        };
        AssessedEntry {
            card: EntryCard::new(e),
            action: format!("/assess/{}", e.id),
            challenge_title: c.title.clone(),
            tag: standing_tag(c.status),
            submitted: date_time(e.submitted_at),
            scored: mine.is_some(),
            percent: mine.map(|m| m.percent.clone()),
            scored_at: mine.map(|m| date_time(m.submitted_at)).unwrap_or_default(),
            can_score: c.status == Standing::Live(Status::InAssessment),
            window,
            criteria: score_fields(&c.criteria, mine, &anchor, form, errors),
            comment: Answered {
                error: message_of(errors, &comment_id),
                id: comment_id,
                value: comment,
            },
            anchor,
        }
    }
}

/// An entry's scoring fields, one per criterion of its challenge.
fn score_fields(
    criteria: &[Criterion],
    mine: Option<&MyScoreView>,
    anchor: &str,
    form: Option<&ScoreForm>,
    errors: &[FieldError],
) -> Vec<ScoreField> {
    criteria
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let id = format!("{anchor}-score-{i}");
            let value = match form {
                Some(f) => f.score(i).to_string(),
                None => mine
                    .and_then(|m| m.scores.get(&k.name))
                    .map(u32::to_string)
                    .unwrap_or_default(),
            };
            ScoreField {
                error: message_of(errors, &id),
                id,
                name: format!("score_{i}"),
                label: k.name.clone(),
                hint: format!("From 0 to {}. Weight {}.", k.max_score, k.weight),
                max: k.max_score,
                value,
            }
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
fn score_field(path: &str, anchor: &str, criteria: &[Criterion]) -> String {
    if let Some(i) = path
        .strip_prefix("scores.")
        .and_then(|name| criteria.iter().position(|k| k.name == name))
    {
        return format!("{anchor}-score-{i}");
    }
    match path {
        "scores" => format!("{anchor}-score-0"),
        "comment" => format!("{anchor}-comment"),
        _ => String::new(),
    }
}

pub async fn score(
    req: HttpRequest,
    path: web::Path<String>,
    web::Form(form): web::Form<ScoreForm>,
) -> HttpResponse {
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
        challenges::get(&state, &user, entry.challenge_id.as_str()).await
    ));
    let anchor = format!("entry-{entry_id}");
    let mut scores = BTreeMap::new();
    let mut errors = Vec::new();
    for (i, k) in c.criteria.iter().enumerate() {
        match form.score(i).parse::<u32>() {
            Ok(s) if s <= k.max_score => {
                scores.insert(k.name.as_str(), s);
            }
            _ => errors.push(err(
                format!("{anchor}-score-{i}"),
                format!("Enter a score for {} from 0 to {}", k.name, k.max_score),
            )),
        }
    }
    let comment = form.comment.as_str();
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
            let id_of = |p: &str| score_field(p, &anchor, &c.criteria);
            let errors = refusal(&refused, &id_of, &anchor);
            assess_view(&req, Assessing::Score(&entry_id, &form), errors, None).await
        }
    }
}

pub async fn declare_conflict(
    req: HttpRequest,
    web::Form(form): web::Form<ConflictForm>,
) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let mut errors = Vec::new();
    if CompanyNumber::parse(&form.company_number).is_err() {
        errors.push(err(
            "conflict_company_number",
            "Enter the organisation's company registration number, like 01234567 or SC123456",
        ));
    }
    if !(1..=500).contains(&form.reason.chars().count()) {
        errors.push(err(
            "conflict_reason",
            "Describe your connection with the organisation in 1 to 500 characters",
        ));
    }
    if !errors.is_empty() {
        return assess_view(&req, Assessing::Conflict(&form), errors, None).await;
    }
    let body = json!(form);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_create_form_reads_its_checkboxes_by_kind_and_its_times_by_milestone() {
        let form: ChallengeForm = serde_urlencoded::from_str(
            "csrf=t&title=+Cleaner+air+&eligible_sme=yes&eligible_startup=&opens_at=2027-03-01+09%3A00",
        )
        .unwrap();
        assert_eq!(form.title, "Cleaner air");
        assert!(form.eligible(OrganisationKind::Sme));
        assert!(!form.eligible(OrganisationKind::Startup));
        assert_eq!(form.when(Milestone::Opens), "2027-03-01 09:00");
        assert_eq!(form.when(Milestone::Closes), "");
        // Shown back as its answers, without the token or the checkboxes.
        let shown = json!(form);
        assert_eq!(shown["title"], "Cleaner air");
        assert!(shown.get("csrf").is_none() && shown.get("eligible_sme").is_none());
    }

    #[test]
    fn a_score_is_read_by_its_criterion_s_place() {
        let form: ScoreForm =
            serde_urlencoded::from_str("csrf=t&score_0=+7+&score_1=3&comment=Good").unwrap();
        assert_eq!(
            (form.score(0), form.score(1), form.score(2)),
            ("7", "3", "")
        );
        assert_eq!(form.comment, "Good");
    }
}
