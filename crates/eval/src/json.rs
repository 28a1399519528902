//! JSON with sorted keys, whatever `serde_json`'s map features.

use serde_json::{Map, Value};

/// `value` with every object's keys in sorted order, at every depth (serde_json keeps
/// insertion order when its `preserve_order` feature is on; the reports that have always
/// been printed sorted stay so).
pub(crate) fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sorted(v)))
                    .collect::<Map<String, Value>>(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sorted_at_every_depth() {
        let value = serde_json::json!({"b": {"z": 1, "a": [{"y": 2, "x": 3}]}, "a": null});
        let text = serde_json::to_string(&sorted(value)).expect("json");
        assert_eq!(text, r#"{"a":null,"b":{"a":[{"x":3,"y":2}],"z":1}}"#);
    }
}
