//! Technical consulting and tailored incentives: the SME's consulting time, bookings and
//! incentives (`/portal`), the adviser's slots and session outcomes (`/advise`), and the
//! administrators' incentive rules and an application's incentive preview (`/console`).
//! Every page calls the services (`voucherd_api::service`), as the others do.

use crate::api::{self, capitalise, Answer, Core, Failure};
use crate::forms::{self, posted, Trimmed, VoucherForm};
use crate::portal::{csrf_refused, err, page, region_name, see_other, tag, tidy_money};
use crate::render::{FieldError, Tag, View};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, TimeDelta};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use voucherd_api::auth::AuthUser;
use voucherd_api::service::consulting::BookingView;
use voucherd_api::service::incentives::RuleView;
use voucherd_api::service::programme::BudgetLineView;
use voucherd_api::service::{applications, consulting, incentives, programme};
use voucherd_api::state::AppState;
use voucherd_domain::budget::{SicSection, SizeBand};
use voucherd_domain::incentive::{Condition, Effect, Trigger};
use voucherd_domain::{ApplicationId, BookingStatus, Money, Region, VoucherId};

// ---------------------------------------------------------------------------------------------
// Shared helpers

/// Errors that name no field (a refusal of the whole request) linked to `id` instead.
fn at(mut errors: Vec<FieldError>, id: &str) -> Vec<FieldError> {
    for e in &mut errors {
        if e.id.is_empty() {
            e.id = id.to_string();
        }
    }
    errors
}

/// A service's refusal as a form's errors: each field error at its form field, introduced by
/// the field's label; a refusal of the whole request linked to `whole`.
fn form_errors<T>(
    answer: &Answer<T>,
    whole: &str,
    field_of: &dyn Fn(&str) -> (String, &'static str),
) -> Vec<FieldError> {
    match answer {
        Answer::Refused { fields, .. } if !fields.is_empty() => fields
            .iter()
            .map(|(path, message)| {
                let (id, label) = field_of(path);
                FieldError {
                    id,
                    message: format!("{label} {message}"),
                }
            })
            .collect(),
        other => at(other.field_errors(&|_| whole.to_string()), whole),
    }
}

/// The address a form sends back to: what was done, for its banner.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct DoneQuery {
    done: Option<String>,
}

/// "a", "a or b", "a, b or c".
fn or_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// Minutes in words: "1 hour 30 minutes".
fn duration(minutes: i64) -> String {
    let unit = |n: i64, one: &str| match n {
        0 => String::new(),
        1 => format!("1 {one}"),
        n => format!("{n} {one}s"),
    };
    let parts: Vec<String> = [unit(minutes / 60, "hour"), unit(minutes % 60, "minute")]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        "0 minutes".into()
    } else {
        parts.join(" ")
    }
}

/// Words someone wrote, or nothing when they are blank.
fn written(text: Option<&str>) -> Option<String> {
    text.map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

fn booking_tag(status: BookingStatus) -> Tag {
    let (text, colour) = match status {
        BookingStatus::Booked => ("booked", "blue"),
        BookingStatus::Attended => ("attended", "green"),
        BookingStatus::NoShow => ("did not attend", "orange"),
        BookingStatus::Cancelled => ("cancelled", "grey"),
    };
    Tag::new(text, colour)
}

fn slot_tag(booked: bool) -> Tag {
    if booked {
        booking_tag(BookingStatus::Booked)
    } else {
        Tag::new("free", "green")
    }
}

/// An adviser's record of a booking's outcome: sent to the service as it serializes, and shown
/// back as the booking's draft with its errors.
#[derive(Deserialize, Serialize, Clone, Default)]
#[serde(default)]
pub struct OutcomeForm {
    #[serde(skip_serializing)]
    csrf: Trimmed,
    /// `attended` or `no_show`.
    outcome: Trimmed,
    notes: Trimmed,
    next_steps: Trimmed,
}

posted!(OutcomeForm);

/// A booking as the pages show it (the adviser's notes only where the service gave them);
/// on the adviser's list of sessions to record, whether it has started and the draft.
#[derive(Serialize)]
struct BookingRow {
    id: String,
    voucher_id: VoucherId,
    voucher_reference: String,
    when: String,
    length: String,
    tag: Tag,
    booked: bool,
    next_steps: Option<String>,
    notes: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    started: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    draft: Option<OutcomeForm>,
}

fn booking_row(b: &BookingView) -> BookingRow {
    BookingRow {
        id: b.id.clone(),
        voucher_id: b.voucher_id.clone(),
        voucher_reference: b.voucher_reference.clone(),
        when: crate::format::weekday_time(b.slot.starts_at.0),
        length: duration(b.minutes),
        tag: booking_tag(b.status),
        booked: b.status == BookingStatus::Booked,
        next_steps: written(b.next_steps.as_deref()),
        notes: written(b.notes.as_ref().and_then(|n| n.as_deref())),
        started: None,
        draft: None,
    }
}

/// A slot the adviser published, or an SME may book.
#[derive(Serialize)]
struct SlotRow {
    id: voucherd_domain::SlotId,
    when: String,
    length: String,
    tag: Tag,
}

// ---------------------------------------------------------------------------------------------
// Describing incentive rules in words

fn describe_trigger(t: &Trigger) -> String {
    match t {
        Trigger::RequestsSettled { count } => {
            format!("the voucher's first {count} requests have been paid for")
        }
        Trigger::ConsultingSessionCompleted {} => {
            "a technical consulting session has taken place".into()
        }
    }
}

fn describe_effect(e: &Effect) -> String {
    match e {
        Effect::UpliftPercent { percent } => {
            format!("{percent}% of the standard voucher on top")
        }
        Effect::FixedBonus { amount } => format!(
            "{} on top",
            voucherd_domain::money::format_pounds_display(amount.micros())
        ),
        Effect::CoFundingCap { percent } => format!("A co-funding share of at most {percent}%"),
        Effect::MilestoneBonus { amount, trigger } => format!(
            "{} more once {}",
            voucherd_domain::money::format_pounds_display(amount.micros()),
            describe_trigger(trigger)
        ),
        Effect::ConsultingHours { hours } => {
            format!("{hours} more hours of technical consulting")
        }
    }
}

/// A value's name as the API spells it (a SIC section's letter, a size band's code).
fn spelling<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

fn describe_condition(c: &Condition) -> String {
    let mut parts = Vec::new();
    let regions: Vec<String> = c.regions.iter().map(|r| r.name().to_string()).collect();
    if !regions.is_empty() {
        parts.push(format!("based in {}", or_list(&regions)));
    }
    let sections: Vec<String> = c.sic_sections.iter().map(spelling).collect();
    if !sections.is_empty() {
        parts.push(format!("in SIC section {}", or_list(&sections)));
    }
    let bands: Vec<String> = c.size_bands.iter().map(spelling).collect();
    if !bands.is_empty() {
        parts.push(format!("{} businesses", or_list(&bands)));
    }
    if let Some(years) = c.founded_within_years {
        parts.push(format!("trading for at most {years} years"));
    }
    if c.university_spin_off {
        parts.push("university spin-offs".into());
    }
    if c.first_time_applicant {
        parts.push("first-time applicants".into());
    }
    if parts.is_empty() {
        "Every organisation".into()
    } else {
        capitalise(&parts.join("; "))
    }
}

/// One reason a rule matched (or did not), with region codes as their names.
fn humanise_why(s: &str) -> String {
    let (not, rest) = s.strip_prefix("not ").map_or(("", s), |r| ("not ", r));
    let rest = match rest.strip_prefix("in ") {
        Some(code) if region_name(code) != "Unknown region" => format!("in {}", region_name(code)),
        _ => rest.to_string(),
    };
    capitalise(&format!("{not}{rest}"))
}

fn whys(why: &[String]) -> Vec<String> {
    why.iter().map(|w| humanise_why(w)).collect()
}

// ---------------------------------------------------------------------------------------------
// The SME: consulting

pub async fn consulting(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let banner = match forms::query::<DoneQuery>(&req).done.as_deref() {
        Some("booked") => Some("Your session is booked. We have emailed you its details."),
        Some("cancelled") => {
            Some("Your booking was cancelled and its time returned to your voucher.")
        }
        _ => None,
    };
    consulting_view(&req, &VoucherId::new(path.into_inner()), Vec::new(), banner).await
}

async fn consulting_view(
    req: &HttpRequest,
    voucher: &VoucherId,
    errors: Vec<FieldError>,
    banner: Option<&str>,
) -> HttpResponse {
    let Core { state, user } = page!(api::core(req));
    let hours = page!(api::must(
        req,
        consulting::allowance(&state, &user, voucher).await
    ));
    let bookings = page!(api::must(
        req,
        consulting::list_bookings(&state, &user).await
    ));
    let slots = page!(api::must(req, consulting::list_slots(&state, &user).await));
    let mut mine: Vec<&BookingView> = bookings
        .iter()
        .filter(|b| b.voucher_id == *voucher)
        .collect();
    mine.sort_by_key(|b| b.slot.starts_at);
    let (upcoming, mut past): (Vec<&BookingView>, Vec<&BookingView>) = mine
        .into_iter()
        .partition(|b| b.status == BookingStatus::Booked);
    past.reverse();
    let rows = |list: Vec<&BookingView>| -> Vec<BookingRow> {
        list.into_iter().map(booking_row).collect()
    };
    let slots: Vec<SlotRow> = slots
        .iter()
        .map(|s| SlotRow {
            id: s.id.clone(),
            when: crate::format::weekday_time(s.starts_at.0),
            length: duration(s.minutes),
            tag: slot_tag(s.booked),
        })
        .collect();
    let mut view = View::new("cs_consulting", "Technical consulting")
        .with("voucher_id", json!(voucher))
        .with(
            "hours",
            json!({
                "granted": duration(hours.granted), "used": duration(hours.used),
                "held": duration(hours.held), "remaining": duration(hours.remaining),
            }),
        )
        .with("can_book", json!(hours.remaining > 0))
        .with("upcoming", rows(upcoming))
        .with("past", rows(past))
        .with("slots", slots)
        .back(&format!("/portal/vouchers/{voucher}"))
        .errors(errors);
    if let Some(b) = banner {
        view = view.banner(b, true);
    }
    view.render(req)
}

/// A slot booked with a voucher's consulting time.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct BookingForm {
    csrf: Trimmed,
    voucher_id: Trimmed,
    slot_id: Trimmed,
}

posted!(BookingForm);

pub async fn book(req: HttpRequest, web::Form(form): web::Form<BookingForm>) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let voucher = VoucherId::new(form.voucher_id.to_string());
    let body = json!({"slot_id": form.slot_id, "voucher_id": voucher});
    let Core { state, user } = page!(api::core(&req));
    let booked = api::with_input(&body, |b| consulting::book(&state, &user, b)).await;
    let answer = page!(api::answer(&req, booked));
    match answer {
        Answer::Ok(_) => see_other(&format!(
            "/portal/vouchers/{voucher}/consulting?done=booked"
        )),
        refused => {
            let errors = at(refused.field_errors(&|_| "slots".to_string()), "slots");
            consulting_view(&req, &voucher, errors, None).await
        }
    }
}

pub async fn cancel(
    req: HttpRequest,
    path: web::Path<String>,
    web::Form(form): web::Form<VoucherForm>,
) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &form) {
        return r;
    }
    let voucher = VoucherId::new(form.voucher_id.to_string());
    let Core { state, user } = page!(api::core(&req));
    let cancelled = consulting::cancel(&state, &user, &path).await;
    match page!(api::answer(&req, cancelled)) {
        Answer::Ok(_) if voucher.as_str().is_empty() => see_other("/portal"),
        Answer::Ok(_) => see_other(&format!(
            "/portal/vouchers/{voucher}/consulting?done=cancelled"
        )),
        refused => {
            let errors = at(
                refused.field_errors(&|_| "bookings".to_string()),
                "bookings",
            );
            consulting_view(&req, &voucher, errors, None).await
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The SME: incentives applied to the voucher

pub async fn voucher_incentives(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let id = VoucherId::new(path.into_inner());
    let Core { state, user } = page!(api::core(&req));
    let rows = page!(api::must(
        &req,
        incentives::for_voucher(&state, &user, &id).await
    ));
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            let amount = r.amount.pounds();
            let amount = if r.milestone {
                match r.granted_at {
                    None => format!("{amount} once the milestone is reached"),
                    Some(at) => format!("{amount}, added on {}", crate::format::date(at.0)),
                }
            } else if r.amount.micros() == 0 {
                "No extra credit".to_string()
            } else {
                amount
            };
            json!({
                "name": r.name, "version": r.version, "why": whys(&r.why),
                "effect": describe_effect(&r.effect), "amount": amount,
            })
        })
        .collect();
    View::new("cs_incentives", "Incentives on your voucher")
        .with("voucher_id", json!(id))
        .with("incentives", Value::Array(rows))
        .back(&format!("/portal/vouchers/{id}"))
        .render(&req)
}

// ---------------------------------------------------------------------------------------------
// The adviser: slots and outcomes

/// A new consulting session: its day, its start in UK time and its length. Shown back (as it
/// serializes) with its errors.
#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
pub struct SlotForm {
    #[serde(skip_serializing)]
    csrf: Trimmed,
    date: Trimmed,
    start: Trimmed,
    minutes: Trimmed,
}

posted!(SlotForm);

pub async fn advise(req: HttpRequest) -> HttpResponse {
    let banner = match forms::query::<DoneQuery>(&req).done.as_deref() {
        Some("slot") => Some("Your session was published: SMEs can book it now."),
        Some("recorded") => Some("The outcome was recorded and the SME has been told."),
        _ => None,
    };
    advise_view(&req, SlotForm::default(), Vec::new(), None, banner).await
}

async fn advise_view(
    req: &HttpRequest,
    slot: SlotForm,
    errors: Vec<FieldError>,
    draft: Option<(&str, OutcomeForm)>,
    banner: Option<&str>,
) -> HttpResponse {
    let Core { state, user } = page!(api::core(req));
    let slots = page!(api::must(req, consulting::list_slots(&state, &user).await));
    let bookings = page!(api::must(
        req,
        consulting::list_bookings(&state, &user).await
    ));
    let now = voucherd_api::service::now(&state);
    let mut all: Vec<&BookingView> = bookings.iter().collect();
    all.sort_by_key(|b| b.slot.starts_at);
    let (mut to_record, mut recorded) = (Vec::new(), Vec::new());
    for b in all {
        let mut row = booking_row(b);
        if b.status != BookingStatus::Booked {
            recorded.push(row);
            continue;
        }
        row.started = Some(b.slot.starts_at.0 <= now);
        row.draft = Some(match &draft {
            Some((id, d)) if b.id == *id => d.clone(),
            _ => OutcomeForm::default(),
        });
        to_record.push(row);
    }
    recorded.reverse();
    let slots: Vec<SlotRow> = slots
        .iter()
        .map(|s| SlotRow {
            id: s.id.clone(),
            when: crate::format::weekday_time(s.starts_at.0),
            length: duration(s.minutes),
            tag: slot_tag(s.booked),
        })
        .collect();
    let mut view = View::new("cs_advise", "Your consulting sessions")
        .with("to_record", to_record)
        .with("recorded", recorded)
        .with("slots", slots)
        .with("values", slot)
        .errors(errors);
    if let Some(b) = banner {
        view = view.banner(b, true);
    }
    view.render(req)
}

pub async fn create_slot(req: HttpRequest, web::Form(values): web::Form<SlotForm>) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &values) {
        return r;
    }
    let date = NaiveDate::parse_from_str(&values.date, "%Y-%m-%d").ok();
    let start = NaiveTime::parse_from_str(&values.start, "%H:%M").ok();
    let length = values
        .minutes
        .parse::<i64>()
        .ok()
        .and_then(TimeDelta::try_minutes);
    let mut errors = Vec::new();
    if date.is_none() {
        errors.push(err(
            "slot_date",
            "Enter the date of the session, like 2027-01-10",
        ));
    }
    if start.is_none() {
        errors.push(err(
            "slot_start",
            "Enter the start time on the 24-hour clock, like 14:30",
        ));
    }
    if length.is_none() {
        errors.push(err(
            "slot_minutes",
            "Enter the length in whole minutes, like 60",
        ));
    }
    let (Some(date), Some(start), Some(length)) = (date, start, length) else {
        return advise_view(&req, values, errors, None, None).await;
    };
    // Typed in UK time, kept in UTC.
    let Some(starts_at) = crate::format::from_uk_time(NaiveDateTime::new(date, start)) else {
        let errors = vec![err(
            "slot_start",
            "Enter a time that exists on that day: the clocks go forward an hour",
        )];
        return advise_view(&req, values, errors, None, None).await;
    };
    let Some(ends_at) = starts_at.checked_add_signed(length) else {
        let errors = vec![err(
            "slot_minutes",
            "Enter the length in whole minutes, like 60",
        )];
        return advise_view(&req, values, errors, None, None).await;
    };
    let utc = |t: NaiveDateTime| t.and_utc().to_rfc3339_opts(SecondsFormat::Secs, true);
    let body = json!({"starts_at": utc(starts_at), "ends_at": utc(ends_at)});
    let Core { state, user } = page!(api::core(&req));
    let made = api::with_input(&body, |b| consulting::create_slot(&state, &user, b)).await;
    let answer = page!(api::answer(&req, made));
    match answer {
        Answer::Ok(_) => see_other("/advise?done=slot"),
        refused => {
            let field_of = |p: &str| match p {
                "ends_at" => ("slot_minutes".to_string(), "The end of the session"),
                "starts_at" => ("slot_start".to_string(), "The session"),
                _ => ("slot_date".to_string(), "The session"),
            };
            let errors = form_errors(&refused, "slot_date", &field_of);
            advise_view(&req, values, errors, None, None).await
        }
    }
}

pub async fn record_outcome(
    req: HttpRequest,
    path: web::Path<String>,
    web::Form(draft): web::Form<OutcomeForm>,
) -> HttpResponse {
    if let Some(r) = csrf_refused(&req, &draft) {
        return r;
    }
    let id = path.into_inner();
    if draft
        .outcome
        .as_str()
        .parse::<voucherd_domain::SessionOutcome>()
        .is_err()
    {
        let errors = vec![err(
            format!("outcome-{id}"),
            "Select whether the SME came to the session",
        )];
        return advise_view(
            &req,
            SlotForm::default(),
            errors,
            Some((id.as_str(), draft)),
            None,
        )
        .await;
    }
    let Core { state, user } = page!(api::core(&req));
    let recorded = api::with_input(&json!(draft), |b| {
        consulting::record_outcome(&state, &user, &id, b)
    })
    .await;
    let answer = page!(api::answer(&req, recorded));
    match answer {
        Answer::Ok(_) => see_other("/advise?done=recorded"),
        refused => {
            // A refusal of the whole request (already recorded, not yet started) is linked
            // to the list, as the booking's form may no longer be shown.
            let field_of = |p: &str| {
                let label = match p {
                    "notes" => "Private notes",
                    "next_steps" => "Next steps and recommendations",
                    _ => "Whether the SME came",
                };
                (format!("{p}-{id}"), label)
            };
            let errors = form_errors(&refused, "to-record", &field_of);
            advise_view(
                &req,
                SlotForm::default(),
                errors,
                Some((id.as_str(), draft)),
                None,
            )
            .await
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The administrators: incentive rules

const SIZE_BANDS: [(&str, &str, SizeBand); 3] = [
    ("micro", "Micro: fewer than 10 employees", SizeBand::Micro),
    ("small", "Small: 10 to 49 employees", SizeBand::Small),
    ("medium", "Medium: 50 to 249 employees", SizeBand::Medium),
];

/// The rule form as posted.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RuleForm {
    csrf: Trimmed,
    name: Trimmed,
    sic_sections: Trimmed,
    founded_within_years: Trimmed,
    university_spin_off: Trimmed,
    first_time_applicant: Trimmed,
    /// What the rule gives (`uplift_percent`, `fixed_bonus`, ...): which of the answers below
    /// it takes.
    kind: Trimmed,
    uplift_percent: Trimmed,
    bonus_amount: Trimmed,
    requests_amount: Trimmed,
    requests_count: Trimmed,
    session_amount: Trimmed,
    cap_percent: Trimmed,
    hours: Trimmed,
    budget_line_id: Trimmed,
    /// `no` retires the rule.
    active: Trimmed,
    /// Only the checkboxes named after a region or a size of business (`region_TLC`,
    /// `size_micro`): their names are made from `Region::ALL` and [`SIZE_BANDS`], so they are
    /// kept by name, as the form makes them, rather than as a field for each.
    #[serde(flatten)]
    checkboxes: BTreeMap<String, Trimmed>,
}

posted!(RuleForm);

impl RuleForm {
    fn ticked(&self, checkbox: &str) -> bool {
        self.checkboxes.get(checkbox).is_some_and(|v| !v.is_empty())
    }

    /// The regions ticked, in the form's order.
    fn regions(&self) -> impl Iterator<Item = Region> + '_ {
        Region::ALL
            .iter()
            .copied()
            .filter(|r| self.ticked(&format!("region_{}", r.as_str())))
    }

    /// The sizes of business ticked, in the form's order: each one's code and band.
    fn size_bands(&self) -> impl Iterator<Item = (&'static str, SizeBand)> + '_ {
        SIZE_BANDS
            .iter()
            .filter(|(code, _, _)| self.ticked(&format!("size_{code}")))
            .map(|(code, _, band)| (*code, *band))
    }

    fn active(&self) -> bool {
        self.active != "no"
    }
}

/// The rule form's answers: as posted, or as a stored rule has them.
#[derive(Serialize)]
struct RuleAnswers {
    name: String,
    regions: Vec<String>,
    size_bands: Vec<String>,
    sic_sections: String,
    founded_within_years: String,
    university_spin_off: bool,
    first_time_applicant: bool,
    kind: String,
    uplift_percent: String,
    bonus_amount: String,
    requests_amount: String,
    requests_count: String,
    session_amount: String,
    cap_percent: String,
    hours: String,
    budget_line_id: String,
    active: bool,
}

impl RuleAnswers {
    /// A new rule's form: every answer blank, the rule active.
    fn blank() -> RuleAnswers {
        RuleAnswers {
            name: String::new(),
            regions: Vec::new(),
            size_bands: Vec::new(),
            sic_sections: String::new(),
            founded_within_years: String::new(),
            university_spin_off: false,
            first_time_applicant: false,
            kind: String::new(),
            uplift_percent: String::new(),
            bonus_amount: String::new(),
            requests_amount: String::new(),
            requests_count: String::new(),
            session_amount: String::new(),
            cap_percent: String::new(),
            hours: String::new(),
            budget_line_id: String::new(),
            active: true,
        }
    }

    /// The answers as posted, to show back.
    fn posted(form: &RuleForm) -> RuleAnswers {
        RuleAnswers {
            name: form.name.to_string(),
            regions: form.regions().map(|r| r.as_str().to_string()).collect(),
            size_bands: form
                .size_bands()
                .map(|(code, _)| code.to_string())
                .collect(),
            sic_sections: form.sic_sections.to_string(),
            founded_within_years: form.founded_within_years.to_string(),
            university_spin_off: !form.university_spin_off.is_empty(),
            first_time_applicant: !form.first_time_applicant.is_empty(),
            kind: form.kind.to_string(),
            uplift_percent: form.uplift_percent.to_string(),
            bonus_amount: form.bonus_amount.to_string(),
            requests_amount: form.requests_amount.to_string(),
            requests_count: form.requests_count.to_string(),
            session_amount: form.session_amount.to_string(),
            cap_percent: form.cap_percent.to_string(),
            hours: form.hours.to_string(),
            budget_line_id: form.budget_line_id.to_string(),
            active: form.active(),
        }
    }

    /// A stored rule as the form's answers, for its next version.
    fn of_rule(r: &RuleView) -> RuleAnswers {
        let c = &r.condition;
        let mut a = RuleAnswers {
            name: r.name.clone(),
            regions: c.regions.iter().map(|r| r.as_str().to_string()).collect(),
            size_bands: c.size_bands.iter().map(spelling).collect(),
            sic_sections: c
                .sic_sections
                .iter()
                .map(spelling)
                .collect::<Vec<_>>()
                .join(", "),
            founded_within_years: c
                .founded_within_years
                .map(|y| y.to_string())
                .unwrap_or_default(),
            university_spin_off: c.university_spin_off,
            first_time_applicant: c.first_time_applicant,
            budget_line_id: r
                .budget_line_id
                .as_ref()
                .map(|l| l.to_string())
                .unwrap_or_default(),
            active: r.active,
            ..RuleAnswers::blank()
        };
        match &r.effect {
            Effect::UpliftPercent { percent } => {
                a.kind = "uplift_percent".into();
                a.uplift_percent = percent.to_string();
            }
            Effect::FixedBonus { amount } => {
                a.kind = "fixed_bonus".into();
                a.bonus_amount = amount.to_string();
            }
            Effect::CoFundingCap { percent } => {
                a.kind = "co_funding_cap".into();
                a.cap_percent = percent.to_string();
            }
            Effect::MilestoneBonus {
                amount,
                trigger: Trigger::RequestsSettled { count },
            } => {
                a.kind = "milestone_requests".into();
                a.requests_amount = amount.to_string();
                a.requests_count = count.to_string();
            }
            Effect::MilestoneBonus {
                amount,
                trigger: Trigger::ConsultingSessionCompleted {},
            } => {
                a.kind = "milestone_session".into();
                a.session_amount = amount.to_string();
            }
            Effect::ConsultingHours { hours } => {
                a.kind = "consulting_hours".into();
                a.hours = hours.to_string();
            }
        }
        a
    }
}

/// A whole number typed in field `id` (a percentage may keep its sign); what cannot be read
/// is added to `errors` with `message`.
fn whole(typed: &str, id: &str, message: &str, errors: &mut Vec<FieldError>) -> u32 {
    typed
        .trim_end_matches('%')
        .trim()
        .parse::<u32>()
        .unwrap_or_else(|_| {
            errors.push(err(id, message));
            0
        })
}

/// An amount of money typed in field `id`; what cannot be read is added to `errors`.
fn pounds(typed: &str, id: &str, errors: &mut Vec<FieldError>) -> Money {
    Money::parse(&tidy_money(typed)).unwrap_or_else(|_| {
        errors.push(err(id, "Enter the amount in pounds, like 500"));
        Money::ZERO
    })
}

/// The API's request for the rule form: the answers as a condition and an effect, or what
/// must be corrected before the API can read them.
fn rule_body(form: &RuleForm) -> Result<Value, Vec<FieldError>> {
    let mut errors = Vec::new();
    if form.name.is_empty() {
        errors.push(err("name", "Enter the rule's name"));
    }
    let condition = rule_condition(form, &mut errors);
    let effect = rule_effect(form, &mut errors);
    let line = match form.budget_line_id.as_str() {
        "" => Value::Null,
        id => json!(id),
    };
    match effect {
        Some(effect) if errors.is_empty() => Ok(json!({
            "name": form.name, "condition": condition, "effect": effect,
            "budget_line_id": line, "active": form.active(),
        })),
        _ => Err(errors),
    }
}

/// The rule form's condition: who the rule applies to. What cannot be read is added to
/// `errors`.
fn rule_condition(form: &RuleForm, errors: &mut Vec<FieldError>) -> Condition {
    let mut sic_sections = BTreeSet::new();
    for part in form
        .sic_sections
        .split([',', ' '])
        .filter(|p| !p.is_empty())
    {
        match SicSection::parse(part) {
            Ok(s) => {
                sic_sections.insert(s);
            }
            Err(_) => {
                errors.push(err(
                    "sic_sections",
                    "Enter SIC sections as letters from A to U, separated by commas, like J, M",
                ));
                break;
            }
        }
    }
    let founded_within_years = match form.founded_within_years.as_str() {
        "" => None,
        years => Some(whole(
            years,
            "founded_within_years",
            "Enter the number of years as a whole number, like 3",
            errors,
        )),
    };
    Condition {
        regions: form.regions().collect(),
        sic_sections,
        size_bands: form.size_bands().map(|(_, band)| band).collect(),
        founded_within_years,
        university_spin_off: !form.university_spin_off.is_empty(),
        first_time_applicant: !form.first_time_applicant.is_empty(),
    }
}

/// The rule form's effect: what the rule gives, or `None` when no kind was chosen. What cannot
/// be read is added to `errors`.
fn rule_effect(form: &RuleForm, errors: &mut Vec<FieldError>) -> Option<Effect> {
    let percent = "Enter the percentage as a whole number, like 20";
    match form.kind.as_str() {
        "uplift_percent" => Some(Effect::UpliftPercent {
            percent: whole(&form.uplift_percent, "uplift_percent", percent, errors),
        }),
        "fixed_bonus" => Some(Effect::FixedBonus {
            amount: pounds(&form.bonus_amount, "bonus_amount", errors),
        }),
        "milestone_requests" => Some(Effect::MilestoneBonus {
            amount: pounds(&form.requests_amount, "requests_amount", errors),
            trigger: Trigger::RequestsSettled {
                count: whole(
                    &form.requests_count,
                    "requests_count",
                    "Enter the number of requests as a whole number, like 1000",
                    errors,
                ),
            },
        }),
        "milestone_session" => Some(Effect::MilestoneBonus {
            amount: pounds(&form.session_amount, "session_amount", errors),
            trigger: Trigger::ConsultingSessionCompleted {},
        }),
        "co_funding_cap" => Some(Effect::CoFundingCap {
            percent: whole(&form.cap_percent, "cap_percent", percent, errors),
        }),
        "consulting_hours" => Some(Effect::ConsultingHours {
            hours: whole(
                &form.hours,
                "hours",
                "Enter the number of hours as a whole number, like 5",
                errors,
            ),
        }),
        _ => {
            errors.push(err("kind", "Select what the rule gives"));
            None
        }
    }
}

/// An API field path of a rule request, as the form's field id and label.
fn rule_field(path: &str, kind: &str) -> (String, &'static str) {
    let (id, label) = match path {
        "budget_line_id" => ("budget_line_id", "The budget line"),
        p if p.starts_with("condition.regions") => ("regions", "Regions"),
        p if p.starts_with("condition.sic_sections") => ("sic_sections", "SIC 2007 sections"),
        p if p.starts_with("condition.size_bands") => ("size_bands", "Size of business"),
        p if p.starts_with("condition.founded_within_years") => (
            "founded_within_years",
            "Trading for at most this many years",
        ),
        "effect.percent" if kind == "co_funding_cap" => ("cap_percent", "The co-funding share"),
        "effect.percent" => ("uplift_percent", "The percentage"),
        "effect.amount" => match kind {
            "milestone_requests" => ("requests_amount", "The bonus"),
            "milestone_session" => ("session_amount", "The bonus"),
            _ => ("bonus_amount", "The amount"),
        },
        "effect.hours" => ("hours", "Extra consulting hours"),
        p if p.starts_with("effect.trigger") => ("requests_count", "The number of requests"),
        p if p.starts_with("effect") => ("kind", "What the rule gives"),
        _ => ("name", "The name"),
    };
    (id.to_string(), label)
}

/// The incentive rules' address: what was done, for its banner, and the rule to change.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct IncentivesQuery {
    done: Option<String>,
    edit: Option<String>,
}

pub async fn incentives(req: HttpRequest) -> HttpResponse {
    let q = forms::query::<IncentivesQuery>(&req);
    let banner = match q.done.as_deref() {
        Some("added") => Some("The rule was added: it applies to approvals from now on."),
        Some("changed") => Some(
            "A new version of the rule was saved. Vouchers approved before keep the version they got.",
        ),
        _ => None,
    };
    let edit = q.edit.as_deref();
    incentives_view(&req, edit, None, Vec::new(), banner).await
}

async fn incentives_view(
    req: &HttpRequest,
    editing: Option<&str>,
    values: Option<RuleAnswers>,
    errors: Vec<FieldError>,
    banner: Option<&str>,
) -> HttpResponse {
    let Core { state, user } = page!(api::core(req));
    let rules = page!(api::must(req, incentives::list(&state).await));
    let lines = page!(api::must(req, programme::list_lines(&state).await));
    let matches = page!(rule_matches(req, &state, &user).await);
    let rows = rule_rows(&rules, &lines, &matches);
    let rule = editing.and_then(|k| rules.iter().find(|r| r.key == k));
    let values =
        values.unwrap_or_else(|| rule.map_or_else(RuleAnswers::blank, RuleAnswers::of_rule));
    let form = rule_form(rule);
    let (regions, sizes, line_options) = rule_choices(&values, &lines);
    let limits = incentives::limits(&state);
    let mut view = View::new("cs_console_incentives", "Incentive rules")
        .with("rules", Value::Array(rows))
        .with("form", form)
        .with("values", values)
        .with("regions", regions)
        .with("sizes", sizes)
        .with("lines", line_options)
        .with("limits", limits)
        .errors(errors);
    if let Some(b) = banner {
        view = view.banner(b, true);
    }
    view.render(req)
}

/// Which organisations waiting for a decision each rule (by key) matches.
async fn rule_matches(
    req: &HttpRequest,
    state: &AppState,
    user: &AuthUser,
) -> Result<HashMap<String, Vec<String>>, Failure> {
    // Which organisations waiting for a decision each rule matches: the same evaluation an
    // approval would make, for each of the latest waiting applications.
    let q = applications::ListQuery {
        status: Some("submitted".into()),
        limit: Some(50),
        ..Default::default()
    };
    let waiting = api::must(req, applications::list(state, user, q).await)?.data;
    let mut matches: HashMap<String, Vec<String>> = HashMap::new();
    for a in &waiting {
        let q = applications::PreviewQuery::default();
        let preview = applications::preview_incentives(state, &a.id, q).await;
        let preview = api::must(req, preview)?;
        for applied in preview.applied {
            matches
                .entry(applied.rule)
                .or_default()
                .push(a.company_name.clone());
        }
    }
    Ok(matches)
}

/// The rules' table: each rule described, with its budget line and what it matches now.
fn rule_rows(
    typed_rules: &[RuleView],
    typed_lines: &[BudgetLineView],
    matches: &HashMap<String, Vec<String>>,
) -> Vec<Value> {
    let line_name = |id: &Option<voucherd_domain::BudgetLineId>| {
        typed_lines
            .iter()
            .find(|l| id.as_ref() == Some(&l.id))
            .map(|l| format!("{} ({})", l.name, l.financial_year))
    };
    typed_rules
        .iter()
        .map(|r| {
            let matched = matches.get(&r.key).cloned().unwrap_or_default();
            json!({
                "matches": if matched.is_empty() { "None".to_string() } else { matched.join(", ") },
                "key": r.key, "name": r.name, "version": r.version,
                "condition": describe_condition(&r.condition),
                "effect": describe_effect(&r.effect),
                "line": line_name(&r.budget_line_id),
                "tag": tag(if r.active { "active" } else { "retired" }),
                "changed": crate::format::date(r.created_at.0),
            })
        })
        .collect()
}

/// The rule form's heading, action and button.
#[derive(Serialize)]
struct RuleFormHeading {
    action: String,
    heading: String,
    version: Option<i32>,
    button: &'static str,
}

/// The form for adding a rule, or for changing `rule` as a new version.
fn rule_form(rule: Option<&RuleView>) -> RuleFormHeading {
    match rule {
        Some(r) => RuleFormHeading {
            action: format!("/console/incentives/{}", r.key),
            heading: format!("Change the rule “{}”", r.name),
            version: Some(r.version + 1),
            button: "Save as a new version",
        },
        None => RuleFormHeading {
            action: "/console/incentives".into(),
            heading: "Add a rule".into(),
            version: None,
            button: "Add rule",
        },
    }
}

/// A checkbox or an option of the rule form.
#[derive(Serialize)]
struct Choice {
    value: String,
    label: String,
    checked: bool,
    selected: bool,
}

impl Choice {
    fn new(value: &str, label: impl Into<String>, on: bool) -> Choice {
        Choice {
            value: value.to_string(),
            label: label.into(),
            checked: on,
            selected: on,
        }
    }
}

/// The rule form's choices, as ticked in `values`: regions, size bands and budget lines.
fn rule_choices(
    values: &RuleAnswers,
    lines: &[BudgetLineView],
) -> (Vec<Choice>, Vec<Choice>, Vec<Choice>) {
    let regions = Region::ALL
        .iter()
        .map(|r| {
            let on = values.regions.iter().any(|p| p == r.as_str());
            Choice::new(r.as_str(), r.name(), on)
        })
        .collect();
    let sizes = SIZE_BANDS
        .iter()
        .map(|(code, label, _)| {
            Choice::new(code, *label, values.size_bands.iter().any(|p| p == code))
        })
        .collect();
    let chosen = values.budget_line_id.as_str();
    let mut line_options = vec![Choice::new("", "The programme fund", chosen.is_empty())];
    line_options.extend(lines.iter().map(|l| {
        Choice::new(
            l.id.as_str(),
            format!("{} ({})", l.name, l.financial_year),
            l.id == chosen,
        )
    }));
    (regions, sizes, line_options)
}

pub async fn create_rule(req: HttpRequest, web::Form(form): web::Form<RuleForm>) -> HttpResponse {
    save_rule(&req, None, &form).await
}

pub async fn new_version(
    req: HttpRequest,
    path: web::Path<String>,
    web::Form(form): web::Form<RuleForm>,
) -> HttpResponse {
    let key = path.into_inner();
    save_rule(&req, Some(&key), &form).await
}

async fn save_rule(req: &HttpRequest, key: Option<&str>, form: &RuleForm) -> HttpResponse {
    if let Some(r) = csrf_refused(req, form) {
        return r;
    }
    let body = match rule_body(form) {
        Ok(b) => b,
        Err(errors) => {
            return incentives_view(req, key, Some(RuleAnswers::posted(form)), errors, None).await
        }
    };
    let Core { state, user } = page!(api::core(req));
    let (saved, done) = match key {
        Some(k) => (
            api::with_input(&body, |b| incentives::update(&state, &user, k, b)).await,
            "changed",
        ),
        None => (
            api::with_input(&body, |b| incentives::create(&state, &user, b)).await,
            "added",
        ),
    };
    match page!(api::answer(req, saved)) {
        Answer::Ok(_) => see_other(&format!("/console/incentives?done={done}")),
        refused => {
            let kind = form.kind.to_string();
            let errors = form_errors(&refused, "name", &|p| rule_field(p, &kind));
            incentives_view(req, key, Some(RuleAnswers::posted(form)), errors, None).await
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The administrators: an application's incentive preview

/// The incentive preview's address: a voucher amount to preview, as typed.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PreviewAmountQuery {
    amount: String,
}

pub async fn application_incentives(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let id = ApplicationId::new(path.into_inner());
    let entered = forms::query::<PreviewAmountQuery>(&req).amount;
    let amount = tidy_money(&entered);
    let Core { state, user } = page!(api::core(&req));
    let a = page!(api::must(&req, applications::get(&state, &user, &id).await));
    let mut errors = Vec::new();
    let mut q = applications::PreviewQuery::default();
    if !amount.is_empty() {
        match Money::parse(&amount) {
            Ok(m) => q.amount = Some(m),
            Err(_) => errors.push(err("amount", "Enter the amount in pounds, like 5000")),
        }
    }
    let previewed = applications::preview_incentives(&state, &id, q).await;
    let e = match page!(api::answer(&req, previewed)) {
        Answer::Ok(e) => e,
        refused => {
            errors = at(refused.field_errors(&|_| "amount".to_string()), "amount");
            let q = applications::PreviewQuery::default();
            page!(api::must(
                &req,
                applications::preview_incentives(&state, &id, q).await
            ))
        }
    };
    let applied: Vec<Value> = e
        .applied
        .iter()
        .map(|r| {
            json!({
                "name": r.name, "version": r.version, "why": whys(&r.why),
                "effect": describe_effect(&r.effect), "now": r.now, "later": r.later,
            })
        })
        .collect();
    let not_matched: Vec<Value> = e
        .not_matched
        .iter()
        .map(|r| json!({"name": r.name, "why": whys(&r.why)}))
        .collect();
    let cap = e
        .co_funding_cap_percent
        .map_or(Value::Null, |p| json!(format!("{p}%")));
    View::new(
        "cs_console_preview",
        format!("Incentives for {}", a.company_name),
    )
    .with("id", json!(id))
    .with(
        "preview",
        json!({
            "base": e.base, "extra": e.extra, "total": e.total,
            "milestone_bonuses": e.milestone_bonuses, "co_funding_cap": cap,
            "consulting_hours": e.consulting_hours_added,
            "limited_by": e.limited_by.iter().map(|l| capitalise(l)).collect::<Vec<_>>(),
        }),
    )
    .with("applied", Value::Array(applied))
    .with("not_matched", Value::Array(not_matched))
    .with("values", json!({"amount": entered.trim()}))
    .back(&format!("/console/applications/{id}"))
    .errors(errors)
    .render(&req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_form_reads_the_regions_and_sizes_ticked() {
        let form: RuleForm = serde_urlencoded::from_str(&format!(
            "csrf=t&name=Rural&region_{}=on&size_micro=on&size_small=&kind=fixed_bonus",
            Region::Wales.as_str()
        ))
        .unwrap();
        assert_eq!(form.regions().collect::<Vec<_>>(), [Region::Wales]);
        assert_eq!(
            form.size_bands().map(|(code, _)| code).collect::<Vec<_>>(),
            ["micro"]
        );
        assert!(form.active());
        assert_eq!(form.kind, "fixed_bonus");
    }
}
