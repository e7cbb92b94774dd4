//! The JSON Schema of event payloads (feature `schema`, through
//! [schemars]), for tools that generate client types.
//!
//! A derived event records a function that returns its payload's schema when
//! the payload type implements `schemars::JsonSchema`, and `None` otherwise:
//! the derive probes the type with autoref-based dispatch, so events whose
//! payload has no schema still compile and simply stay untyped for clients.
//!
//! [schemars]: https://docs.rs/schemars

use std::marker::PhantomData;

use serde_json::Value;

/// Carries a payload type to the probe. Not public API.
#[doc(hidden)]
pub struct SchemaProbe<T: ?Sized>(PhantomData<fn() -> Box<T>>);

impl<T: ?Sized> SchemaProbe<T> {
    #[doc(hidden)]
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T: ?Sized> Default for SchemaProbe<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Chosen when the payload type has a schema. Not public API.
#[doc(hidden)]
pub trait SchemaKind {
    fn __broadcast_schema(&self) -> Option<Value>;
}

#[cfg(feature = "schema")]
impl<T: schemars::JsonSchema + ?Sized> SchemaKind for SchemaProbe<T> {
    fn __broadcast_schema(&self) -> Option<Value> {
        let schema = schemars::SchemaGenerator::default().into_root_schema_for::<T>();
        serde_json::to_value(schema).ok()
    }
}

/// Chosen otherwise. Not public API.
#[doc(hidden)]
pub trait NoSchemaKind {
    fn __broadcast_schema(&self) -> Option<Value> {
        None
    }
}

impl<T: ?Sized> NoSchemaKind for &SchemaProbe<T> {}

/// The schema function of events that have none.
pub fn no_schema() -> Option<Value> {
    None
}
