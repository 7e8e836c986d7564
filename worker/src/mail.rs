//! Email: outbox messages rendered from handlebars templates (plain text and HTML, embedded in
//! the binary) and sent over SMTP with lettre, or, with no SMTP configured, written to a
//! folder as .eml files and logged.

use handlebars::Handlebars;
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::path::PathBuf;
use std::time::Duration;

/// Each template: its name, subject (a handlebars line), text and HTML bodies.
const TEMPLATES: &[(&str, &str, &str, &str)] = &[
    (
        "application_received",
        "We have received your application for {{company_name}}",
        include_str!("../templates/application_received.txt.hbs"),
        include_str!("../templates/application_received.html.hbs"),
    ),
    (
        "application_approved",
        "Your AI voucher for {{company_name}} is approved",
        include_str!("../templates/application_approved.txt.hbs"),
        include_str!("../templates/application_approved.html.hbs"),
    ),
    (
        "application_rejected",
        "Your application for {{company_name}} was not approved",
        include_str!("../templates/application_rejected.txt.hbs"),
        include_str!("../templates/application_rejected.html.hbs"),
    ),
    (
        "key_created",
        "A new API key was created for your voucher",
        include_str!("../templates/key_created.txt.hbs"),
        include_str!("../templates/key_created.html.hbs"),
    ),
    (
        "payment_received",
        "We received your payment of {{pounds amount}}",
        include_str!("../templates/payment_received.txt.hbs"),
        include_str!("../templates/payment_received.html.hbs"),
    ),
    (
        "payment_failed",
        "Your payment of {{pounds amount}} did not go through",
        include_str!("../templates/payment_failed.txt.hbs"),
        include_str!("../templates/payment_failed.html.hbs"),
    ),
    (
        "payment_refunded",
        "{{pounds refunded}} of your payment was refunded",
        include_str!("../templates/payment_refunded.txt.hbs"),
        include_str!("../templates/payment_refunded.html.hbs"),
    ),
    (
        "payment_attention",
        "Payment {{payment_id}} needs a look",
        include_str!("../templates/payment_attention.txt.hbs"),
        include_str!("../templates/payment_attention.html.hbs"),
    ),
    (
        "refund_shortfall",
        "Refund shortfall on payment {{payment_id}}: {{pounds shortfall}} already spent",
        include_str!("../templates/refund_shortfall.txt.hbs"),
        include_str!("../templates/refund_shortfall.html.hbs"),
    ),
    (
        "low_balance",
        "{{#if exhausted}}Your AI voucher is used up{{else}}Your AI voucher is {{percent_used}}% used{{/if}}",
        include_str!("../templates/low_balance.txt.hbs"),
        include_str!("../templates/low_balance.html.hbs"),
    ),
    (
        "expiry_reminder",
        "Your AI voucher expires on {{expires_at}}",
        include_str!("../templates/expiry_reminder.txt.hbs"),
        include_str!("../templates/expiry_reminder.html.hbs"),
    ),
    (
        "voucher_expired",
        "Your AI voucher has expired",
        include_str!("../templates/voucher_expired.txt.hbs"),
        include_str!("../templates/voucher_expired.html.hbs"),
    ),
    (
        "challenge_closed",
        "The challenge {{challenge_title}} has closed",
        include_str!("../templates/challenge_closed.txt.hbs"),
        include_str!("../templates/challenge_closed.html.hbs"),
    ),
    (
        "challenge_entry_received",
        "Your entry to {{challenge_title}} was received",
        include_str!("../templates/challenge_entry_received.txt.hbs"),
        include_str!("../templates/challenge_entry_received.html.hbs"),
    ),
    (
        "challenge_entry_checked",
        "Your entry to {{challenge_title}}: {{#if accepted}}evidence accepted{{else}}evidence not accepted{{/if}}",
        include_str!("../templates/challenge_entry_checked.txt.hbs"),
        include_str!("../templates/challenge_entry_checked.html.hbs"),
    ),
    (
        "challenge_cancelled",
        "The challenge {{challenge_title}} is cancelled",
        include_str!("../templates/challenge_cancelled.txt.hbs"),
        include_str!("../templates/challenge_cancelled.html.hbs"),
    ),
    (
        "assessments_allocated",
        "Entries to assess in {{challenge_title}}",
        include_str!("../templates/assessments_allocated.txt.hbs"),
        include_str!("../templates/assessments_allocated.html.hbs"),
    ),
    (
        "assessment_reallocated",
        "An entry to assess in {{challenge_title}}",
        include_str!("../templates/assessment_reallocated.txt.hbs"),
        include_str!("../templates/assessment_reallocated.html.hbs"),
    ),
    (
        "challenge_result",
        "{{#if awarded}}Your entry wins an award in {{challenge_title}}{{else}}Results of {{challenge_title}}{{/if}}",
        include_str!("../templates/challenge_result.txt.hbs"),
        include_str!("../templates/challenge_result.html.hbs"),
    ),
    (
        "consulting_booked",
        "Your consulting session is booked",
        include_str!("../templates/consulting_booked.txt.hbs"),
        include_str!("../templates/consulting_booked.html.hbs"),
    ),
    (
        "consulting_reminder",
        "Your consulting session starts on {{starts_at}}",
        include_str!("../templates/consulting_reminder.txt.hbs"),
        include_str!("../templates/consulting_reminder.html.hbs"),
    ),
    (
        "consulting_outcome",
        "Your consulting session: next steps",
        include_str!("../templates/consulting_outcome.txt.hbs"),
        include_str!("../templates/consulting_outcome.html.hbs"),
    ),
    (
        "milestone_bonus",
        "A bonus of {{pounds amount}} was added to your AI voucher",
        include_str!("../templates/milestone_bonus.txt.hbs"),
        include_str!("../templates/milestone_bonus.html.hbs"),
    ),
    (
        "usage_overrun",
        "API key {{key_prefix}}… was billed above its hold",
        include_str!("../templates/usage_overrun.txt.hbs"),
        include_str!("../templates/usage_overrun.html.hbs"),
    ),
    (
        "milestone_bonus_refused",
        "A milestone bonus of {{pounds amount}} could not be paid",
        include_str!("../templates/milestone_bonus_refused.txt.hbs"),
        include_str!("../templates/milestone_bonus_refused.html.hbs"),
    ),
    (
        "verify_email",
        "Your confirmation code is {{code}}",
        include_str!("../templates/verify_email.txt.hbs"),
        include_str!("../templates/verify_email.html.hbs"),
    ),
    (
        "password_reset",
        "Reset your password",
        include_str!("../templates/password_reset.txt.hbs"),
        include_str!("../templates/password_reset.html.hbs"),
    ),
    (
        "account_invitation",
        "You are invited to the AI Voucher Programme",
        include_str!("../templates/account_invitation.txt.hbs"),
        include_str!("../templates/account_invitation.html.hbs"),
    ),
    (
        "upstream_auth_failed",
        "The AI provider refused the programme's credentials",
        include_str!("../templates/upstream_auth_failed.txt.hbs"),
        include_str!("../templates/upstream_auth_failed.html.hbs"),
    ),
    (
        "reconciliation_alert",
        "Ledger reconciliation found differences",
        include_str!("../templates/reconciliation_alert.txt.hbs"),
        include_str!("../templates/reconciliation_alert.html.hbs"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("mail configuration: {0}")]
    Config(String),
    #[error("rendering {template}: {message}")]
    Render { template: String, message: String },
    #[error("sending: {0}")]
    Send(String),
}

impl MailError {
    /// Whether trying again later could succeed (a bad template or address never will).
    pub fn is_transient(&self) -> bool {
        matches!(self, MailError::Send(_))
    }
}

/// Where mail goes.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// `smtp://host:port`, `smtps://user:pass@host` or `smtp://host?tls=required`
    /// (lettre's URL form); `None` writes messages to `dir` instead.
    pub smtp_url: Option<String>,
    pub from: String,
    pub dir: PathBuf,
    pub send_timeout_ms: u64,
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Folder(AsyncFileTransport<Tokio1Executor>, PathBuf),
}

pub struct Mailer {
    text: Handlebars<'static>,
    html: Handlebars<'static>,
    from: Mailbox,
    transport: Transport,
}

/// A rendered message.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// An amount as the messages carry it ("5000.00", "2499.999746") for reading: "£5,000.00",
/// to the penny with thousands separators, as the pages show money. Anything that is not an
/// amount is written as it is.
fn pounds_for_reading(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => {
            voucherd_domain::money::display_decimal(s).unwrap_or_else(|| s.clone())
        }
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

handlebars::handlebars_helper!(pounds_helper: |v: Json| pounds_for_reading(v));

impl Mailer {
    pub fn new(config: &MailConfig) -> Result<Mailer, MailError> {
        let mut text = Handlebars::new();
        text.set_strict_mode(true);
        text.register_escape_fn(handlebars::no_escape);
        text.register_helper("pounds", Box::new(pounds_helper));
        let mut html = Handlebars::new();
        html.set_strict_mode(true);
        html.register_helper("pounds", Box::new(pounds_helper));
        for (name, subject, t, h) in TEMPLATES {
            let bad = |e: handlebars::TemplateError| MailError::Render {
                template: (*name).to_string(),
                message: e.to_string(),
            };
            text.register_template_string(&format!("{name}.subject"), subject)
                .map_err(bad)?;
            text.register_template_string(name, t).map_err(bad)?;
            html.register_template_string(name, h).map_err(bad)?;
        }
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| MailError::Config(format!("mail_from {:?}: {e}", config.from)))?;
        let transport = match &config.smtp_url {
            Some(url) => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| MailError::Config(format!("smtp_url: {e}")))?
                    .timeout(Some(Duration::from_millis(config.send_timeout_ms)))
                    .build(),
            ),
            None => Transport::Folder(
                AsyncFileTransport::<Tokio1Executor>::new(&config.dir),
                config.dir.clone(),
            ),
        };
        Ok(Mailer {
            text,
            html,
            from,
            transport,
        })
    }

    /// The template names this mailer knows.
    pub fn templates() -> impl Iterator<Item = &'static str> {
        TEMPLATES.iter().map(|t| t.0)
    }

    pub fn render(&self, template: &str, data: &serde_json::Value) -> Result<Rendered, MailError> {
        let bad = |e: handlebars::RenderError| MailError::Render {
            template: template.to_string(),
            message: e.to_string(),
        };
        if !self.html.has_template(template) {
            return Err(MailError::Render {
                template: template.to_string(),
                message: "no such template".into(),
            });
        }
        // A message queued before short references existed names the ids instead.
        let mut data = std::borrow::Cow::Borrowed(data);
        for (reference, id) in [
            ("reference", "application_id"),
            ("voucher_reference", "voucher_id"),
        ] {
            if data.get(reference).is_none() {
                if let Some(id) = data.get(id).cloned() {
                    if let Some(o) = data.to_mut().as_object_mut() {
                        o.insert(reference.into(), id);
                    }
                }
            }
        }
        let data = data.as_ref();
        Ok(Rendered {
            subject: self
                .text
                .render(&format!("{template}.subject"), data)
                .map_err(bad)?,
            text: self.text.render(template, data).map_err(bad)?,
            html: self.html.render(template, data).map_err(bad)?,
        })
    }

    /// Renders and sends one message.
    pub async fn send(
        &self,
        recipient: &str,
        template: &str,
        data: &serde_json::Value,
        message_id: &str,
    ) -> Result<(), MailError> {
        let r = self.render(template, data)?;
        let to: Mailbox = recipient.parse().map_err(|e| MailError::Render {
            template: template.to_string(),
            message: format!("recipient {recipient:?}: {e}"),
        })?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(r.subject)
            // A stable id: a message re-sent after a crash can be recognised as the same.
            .message_id(Some(format!("<{message_id}@voucherd>")))
            .multipart(MultiPart::alternative_plain_html(r.text, r.html))
            .map_err(|e| MailError::Render {
                template: template.to_string(),
                message: e.to_string(),
            })?;
        match &self.transport {
            Transport::Smtp(t) => t
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| MailError::Send(e.to_string())),
            Transport::Folder(t, dir) => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| MailError::Send(format!("creating {}: {e}", dir.display())))?;
                let id = t
                    .send(message)
                    .await
                    .map_err(|e| MailError::Send(e.to_string()))?;
                tracing::info!(%recipient, template, file = %dir.join(format!("{id}.eml")).display(),
                    "no SMTP configured: message written to the mail folder");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailer() -> Mailer {
        Mailer::new(&MailConfig {
            smtp_url: None,
            from: "AI Voucher Programme <noreply@example.gov.uk>".into(),
            dir: std::env::temp_dir(),
            send_timeout_ms: 1_000,
        })
        .unwrap()
    }

    #[test]
    fn the_receipt_gives_the_short_reference_and_an_older_one_its_id() {
        let data = |reference: Option<&str>| {
            let mut d = serde_json::json!({
                "company_name": "Widgets Ltd", "company_number": "01234567",
                "application_id": "0193-uuid", "eligible": true,
            });
            if let Some(r) = reference {
                d["reference"] = serde_json::json!(r);
            }
            d
        };
        let r = mailer()
            .render("application_received", &data(Some("APP-7K2M9Q")))
            .unwrap();
        assert!(r.text.contains("reference APP-7K2M9Q."), "{}", r.text);
        assert!(!r.text.contains("0193-uuid"));
        let old = mailer()
            .render("application_received", &data(None))
            .unwrap();
        assert!(old.text.contains("reference 0193-uuid."), "{}", old.text);
    }

    #[test]
    fn the_approval_states_the_minimal_financial_assistance() {
        let r = mailer()
            .render(
                "application_approved",
                &serde_json::json!({
                    "company_name": "Widgets <Ltd>", "application_id": "a1", "voucher_id": "v1",
                    "reference": "APP-7K2M9Q", "voucher_reference": "VCH-7K2M9Q",
                    "amount": "5000.00", "awarded_on": "27 November 2026", "expires_on": "27 November 2027"
                }),
            )
            .unwrap();
        assert_eq!(r.subject, "Your AI voucher for Widgets <Ltd> is approved");
        assert!(r.text.contains("minimal financial assistance"));
        assert!(r
            .text
            .contains("worth £5,000.00, awarded on 27 November 2026"));
        // Named by references, and money to the penny with separators.
        assert!(
            r.text
                .contains("(reference APP-7K2M9Q) is approved. Voucher VCH-7K2M9Q holds £5,000.00"),
            "{}",
            r.text
        );
        // HTML escapes what the text keeps.
        assert!(r.html.contains("Widgets &lt;Ltd&gt;"));
    }

    #[test]
    fn awards_and_bonuses_state_the_minimal_financial_assistance() {
        let r = mailer()
            .render(
                "challenge_result",
                &serde_json::json!({
                    "challenge_title": "AI 2027", "entry_title": "Vision", "organisation_name": "Alpha",
                    "rank": 1, "entries": 3, "score_percent": "91.67", "awarded": true,
                    "award": "4000.00", "voucher_id": "v1", "pilot_invited": false,
                    "award_refused": null, "award_refused_reason": null, "awarded_on": "1 April 2027"
                }),
            )
            .unwrap();
        assert!(r.text.contains("minimal financial assistance"));
        assert!(r.text.contains("worth £4,000.00, awarded on 1 April 2027"));
        assert!(r.html.contains("worth £4,000.00, awarded on 1 April 2027"));
        // Queued before references existed: the id stands in.
        assert!(r.text.contains("credited to voucher v1."), "{}", r.text);
        let r = mailer()
            .render(
                "milestone_bonus",
                &serde_json::json!({
                    "voucher_id": "v1", "rule": "First requests", "amount": "250.00",
                    "awarded_on": "6 December 2026"
                }),
            )
            .unwrap();
        assert!(r.text.contains("minimal financial assistance"));
        assert!(r.text.contains("worth £250.00, awarded on 6 December 2026"));
    }

    #[test]
    fn missing_data_is_an_error_not_a_blank() {
        let e = mailer()
            .render(
                "application_rejected",
                &serde_json::json!({"company_name": "W"}),
            )
            .unwrap_err();
        assert!(!e.is_transient(), "{e}");
        assert!(mailer().render("no_such", &serde_json::json!({})).is_err());
    }

    #[test]
    fn a_bad_sender_or_smtp_url_is_refused_at_start() {
        let mut c = MailConfig {
            smtp_url: None,
            from: "not an address".into(),
            dir: std::env::temp_dir(),
            send_timeout_ms: 1_000,
        };
        assert!(Mailer::new(&c).is_err());
        c.from = "noreply@example.gov.uk".into();
        c.smtp_url = Some("ftp://nowhere".into());
        assert!(Mailer::new(&c).is_err());
    }
}
