//! Schema pieces the derive cannot express: fields kept verbatim for Kamaji
//! compatibility, and the validation rules the API server enforces.

use schemars::{Schema, SchemaGenerator, json_schema};

/// An object whose content kamaji-rs keeps but does not act on (Kamaji fields such
/// as `addons.coreDNS`): accepted under strict field validation, stored as sent.
pub fn preserved_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// A list of objects kept verbatim (e.g. `dataStoreOverrides`).
pub fn preserved_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
    })
}
