//! What components declare beyond their 1.0 metadata (plugin API 1.1): the rules on their
//! configuration keys and JSON Schemas for their `json` keys.
//!
//! A library exports them as one JSON document through the function it exports under
//! [`crate::module::DETAILS_SYMBOL`] (absent in 1.0 libraries, which then declare no rules).
//! JSON keeps this extensible within the major version: readers ignore what they do not know.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::constraint::Constraint;

/// One component's details; `name` and `kind` match its [`crate::ComponentMeta`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ComponentDetails {
    pub name: String,
    pub kind: String,
    /// Rules per configuration key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub constraints: BTreeMap<String, Vec<Constraint>>,
    /// JSON Schemas of `json` keys (a model's layer list, say), folded into `gymnos-host schema`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub schemas: BTreeMap<String, Value>,
}

/// The document the details function ([`crate::module::DetailsFn`]) returns.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LibraryDetails {
    pub components: Vec<ComponentDetails>,
}

impl LibraryDetails {
    /// The details of component `name` of `kind`, or none declared.
    pub fn of(&self, kind: &str, name: &str) -> ComponentDetails {
        self.components.iter().find(|c| c.kind == kind && c.name == name).cloned().unwrap_or_default()
    }
}
