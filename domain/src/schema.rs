//! OpenAPI schemas of what goes on the wire as text, built in one place: the domain's newtypes
//! (money, company numbers, regions, codes), the text-stored enums and the views' closed lists
//! of words all make theirs here, so each says the same things the same way.

use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;

/// A string with its description; the caller adds its pattern, limits or examples.
pub fn string(description: impl Into<String>) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

/// A string of one of `values`. The description is `doc`, then a list of each documented value
/// and what it means.
pub fn one_of(doc: &[&str], values: &[(&str, &[&str])]) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().map(|(spelling, _)| *spelling)))
        .description(described(doc, values))
        .into()
}

/// A string that is often one of `values` but may be another (words passed on from elsewhere,
/// such as the AI provider's own error codes): described like [`one_of`], without the enum.
pub fn open_list(doc: &[&str], values: &[(&str, &[&str])]) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(described(doc, values))
        .into()
}

/// `doc`, then a list of each documented value and what it means.
fn described(doc: &[&str], values: &[(&str, &[&str])]) -> Option<String> {
    let mut description = prose(doc);
    let meanings: Vec<String> = values
        .iter()
        .filter(|(_, doc)| !doc.is_empty())
        .map(|(spelling, doc)| format!("- `{spelling}`: {}", prose(doc)))
        .collect();
    if !meanings.is_empty() {
        if !description.is_empty() {
            description.push_str("\n\n");
        }
        description.push_str(&meanings.join("\n"));
    }
    (!description.is_empty()).then_some(description)
}

/// `schema`, or null.
pub fn nullable(schema: impl Into<RefOr<Schema>>) -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(schema)
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .into()
}

/// Doc comment lines as text: the lines of a paragraph joined, paragraphs apart, rustdoc's
/// links (`` [`Name`] ``) as plain code.
fn prose(doc: &[&str]) -> String {
    let mut text = String::new();
    for line in doc.iter().map(|line| line.trim()) {
        if line.is_empty() {
            text.push_str("\n\n");
        } else {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push(' ');
            }
            text.push_str(line);
        }
    }
    text.trim().replace("[`", "`").replace("`]", "`")
}
