//! The proxy's request bodies as JSON schemas, generated from the tables that check them: the
//! allowlist (`allowlist.rs`) says what may be sent, and [`Surface::reads`] what the proxy
//! itself requires of the fields it reads (types and bounds). The OpenAPI document lists them
//! as `ChatCompletionRequest`, `ResponseRequest` and `EmbeddingRequest`, so the document cannot
//! accept a field the proxy refuses, or refuse one it forwards.
//!
//! What the schemas leave to the operation's prose: a `null` value counts as absent (only the
//! output limits and `n` show it); `service_tier: auto` is forwarded as `default`; Chat's
//! `store: true` is refused unless the programme allows provider storage, and the Responses
//! API's `store` is forwarded as `false` unless it does. Two points are stricter than the
//! checker, in the direction a client can always meet: an input item without `type` shows
//! `role` as required even when it says `type: message`, and a whole number written as `1.0`
//! is an integer to JSON Schema though the proxy refuses it.

use super::allowlist::{self, Field, Kinds, Rule, Shape};
use super::surface::{Read, Surface};
use utoipa::openapi::schema::{
    AdditionalProperties, AnyOfBuilder, ArrayBuilder, Object, ObjectBuilder, Schema, SchemaType,
    Type,
};
use utoipa::openapi::RefOr;

/// Every surface's request schema, named as the document lists it.
pub fn requests() -> Vec<(String, RefOr<Schema>)> {
    [Surface::Chat, Surface::Responses, Surface::Embeddings]
        .into_iter()
        .map(|s| (schema_name(s).to_string(), request(s)))
        .collect()
}

fn schema_name(surface: Surface) -> &'static str {
    match surface {
        Surface::Chat => "ChatCompletionRequest",
        Surface::Responses => "ResponseRequest",
        Surface::Embeddings => "EmbeddingRequest",
    }
}

fn description(surface: Surface) -> &'static str {
    match surface {
        Surface::Chat => "An OpenAI chat completion request: the fields the proxy forwards (an allowlist). Any other, and any value outside these, is refused with 400 `unsupported_parameter` naming where it is.",
        Surface::Responses => "An OpenAI Responses API request: the fields the proxy forwards (an allowlist). Any other, and any value outside these, is refused with 400 `unsupported_parameter` naming where it is.",
        Surface::Embeddings => "An OpenAI embeddings request: the fields the proxy forwards (an allowlist). Any other is refused with 400 `unsupported_parameter` naming it.",
    }
}

/// One surface's request: its allowlist, with what `parse` requires laid over it.
fn request(surface: Surface) -> RefOr<Schema> {
    let mut object = fields(allowlist::fields(surface));
    for (name, read, required) in surface.reads() {
        let listed = object.properties.remove(*name);
        object
            .properties
            .insert((*name).to_string(), typed(*read, listed));
        if *required {
            object.required.push((*name).to_string());
        }
    }
    object.description = Some(description(surface).to_string());
    Schema::Object(object).into()
}

/// A field the proxy reads itself: its allowlist schema (`listed`) narrowed to what `parse`
/// accepts.
fn typed(read: Read, listed: Option<RefOr<Schema>>) -> RefOr<Schema> {
    match read {
        Read::Model => ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .description(Some("A model with a price set."))
            .into(),
        Read::Flag => ObjectBuilder::new().schema_type(Type::Boolean).into(),
        Read::Count(max) => ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
            .minimum(Some(1))
            .maximum(Some(max))
            .into(),
        Read::NonEmpty => non_empty(listed.unwrap_or_else(any)),
    }
}

/// A schema that admits no empty string or array: a list gets at least one item, text at
/// least one character, and a value of any type becomes a non-empty string or array.
fn non_empty(schema: RefOr<Schema>) -> RefOr<Schema> {
    match schema {
        RefOr::T(Schema::Array(mut array)) => {
            array.min_items = Some(1);
            RefOr::T(Schema::Array(array))
        }
        RefOr::T(Schema::AnyOf(mut any_of)) => {
            any_of.items = any_of.items.into_iter().map(non_empty).collect();
            RefOr::T(Schema::AnyOf(any_of))
        }
        RefOr::T(Schema::Object(mut object))
            if object.schema_type == SchemaType::Type(Type::String) =>
        {
            object.min_length = Some(1);
            RefOr::T(Schema::Object(object))
        }
        RefOr::T(Schema::Object(object)) if object.schema_type == SchemaType::AnyValue => {
            AnyOfBuilder::new()
                .item(non_empty(text()))
                .item(non_empty(ArrayBuilder::new().items(any()).into()))
                .into()
        }
        other => other,
    }
}

/// Any value: forwarded as sent.
fn any() -> RefOr<Schema> {
    Object::with_type(SchemaType::AnyValue).into()
}

fn text() -> RefOr<Schema> {
    Object::with_type(Type::String).into()
}

/// An object with exactly these fields; a refused field is left out, so it is refused as any
/// unknown one is.
fn fields(allowed: &[Field]) -> Object {
    let mut object = Object::with_type(Type::Object);
    for field in allowed {
        if let Some(schema) = rule(&field.rule) {
            object.properties.insert(field.name.to_string(), schema);
        }
    }
    object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
    object
}

/// A rule's schema; `None` for a field refused whatever its value.
fn rule(of: &Rule) -> Option<RefOr<Schema>> {
    Some(match *of {
        Rule::Any => any(),
        Rule::OneOf(values) => ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(values.iter().copied()))
            .into(),
        Rule::False => ObjectBuilder::new()
            .schema_type(Type::Boolean)
            .enum_values(Some([false]))
            .into(),
        Rule::Boolean => ObjectBuilder::new().schema_type(Type::Boolean).into(),
        Rule::Fields(allowed) => Schema::Object(fields(allowed)).into(),
        Rule::Kind(kinds_of) => kinds(kinds_of),
        Rule::Each(inner) => array(inner),
        Rule::TextOr(inner) => AnyOfBuilder::new().item(text()).item(array(inner)).into(),
        Rule::OneOfOr(values, kinds_of) => {
            let mut any_of = AnyOfBuilder::new().item(rule(&Rule::OneOf(values))?);
            for kind in variants(kinds_of) {
                any_of = any_of.item(kind);
            }
            any_of.into()
        }
        Rule::Check(_, shown) => return rule(shown),
        Rule::Refuse(_) => return None,
    })
}

fn array(inner: &Rule) -> RefOr<Schema> {
    let mut array = ArrayBuilder::new();
    if let Some(items) = rule(inner) {
        array = array.items(items);
    }
    array.into()
}

/// An object of one of these kinds, told apart by its `type`.
fn kinds(kinds_of: &Kinds) -> RefOr<Schema> {
    let variants = variants(kinds_of);
    match <[RefOr<Schema>; 1]>::try_from(variants) {
        Ok([one]) => one,
        Err(many) => many
            .into_iter()
            .fold(AnyOfBuilder::new(), |any_of, v| any_of.item(v))
            .into(),
    }
}

/// One object schema per kind that is forwarded: its `type`, its fields, and the field it
/// must carry. The kind an untyped object is taken as (with a `role`) needs no `type`.
fn variants(kinds_of: &Kinds) -> Vec<RefOr<Schema>> {
    kinds_of
        .kinds
        .iter()
        .filter_map(|kind| {
            let Shape::Fields(allowed) = kind.shape else {
                return None;
            };
            let mut object = fields(allowed);
            object.properties.insert(
                "type".to_string(),
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some([kind.name]))
                    .into(),
            );
            if kinds_of.untyped == Some(kind.name) {
                object.required.push("role".to_string());
            } else {
                object.required.push("type".to_string());
            }
            if let Some((field, _)) = kind.requires {
                object.required.push(field.to_string());
            }
            Some(Schema::Object(object).into())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(schema: &RefOr<Schema>) -> &Object {
        match schema {
            RefOr::T(Schema::Object(o)) => o,
            _ => panic!("not an object"),
        }
    }

    /// Every field the allowlist forwards is in the schema, no refused one is, nothing else
    /// is accepted, and the fields `parse` needs are required.
    #[test]
    fn each_request_schema_is_its_allowlist() {
        for surface in [Surface::Chat, Surface::Responses, Surface::Embeddings] {
            let schema = request(surface);
            let o = object(&schema);
            for field in allowlist::fields(surface) {
                let refused = matches!(field.rule, Rule::Refuse(_));
                assert_eq!(
                    o.properties.contains_key(field.name),
                    !refused,
                    "{surface:?} {}",
                    field.name
                );
            }
            assert_eq!(o.properties.len(), {
                let f = allowlist::fields(surface);
                f.iter()
                    .filter(|f| !matches!(f.rule, Rule::Refuse(_)))
                    .count()
            });
            assert!(matches!(
                o.additional_properties.as_deref(),
                Some(AdditionalProperties::FreeForm(false))
            ));
            let required: Vec<&str> = surface
                .reads()
                .iter()
                .filter(|r| r.2)
                .map(|r| r.0)
                .collect();
            assert_eq!(o.required, required);
        }
    }

    #[test]
    fn a_checked_field_shows_the_values_it_accepts() {
        let schema = request(Surface::Chat);
        let tier = serde_json::to_value(&object(&schema).properties["service_tier"]).unwrap();
        assert_eq!(
            tier,
            serde_json::json!({"type": "string", "enum": ["auto", "default"]})
        );
        let store = serde_json::to_value(&object(&schema).properties["store"]).unwrap();
        assert_eq!(store, serde_json::json!({"type": "boolean"}));
    }
}
