//! docs/cli-json.md against real output: its JSON examples, and whether
//! what `bpg --json` printed has an example's shape.

use serde_json::Value;

/// docs/cli-json.md, as built into the tests.
pub const CLI_JSON: &str = include_str!("../../docs/cli-json.md");

/// The JSON block after `mark` in docs/cli-json.md.
pub fn doc_block(mark: &str) -> Value {
    let rest = &CLI_JSON[CLI_JSON
        .find(mark)
        .unwrap_or_else(|| panic!("{mark} missing"))..];
    let start = rest.find("```json\n").expect("a json block") + 8;
    let end = start + rest[start..].find("```").expect("block ends");
    serde_json::from_str(&rest[start..end]).unwrap()
}

/// Why `got` does not have the shape of `doc` (at `path`), if it does
/// not: the same keys at every level and the same JSON types; null
/// matches anything, a list's elements match its first (an empty
/// documented list, only an empty one).
pub fn shape_mismatch(path: &str, doc: &Value, got: &Value) -> Option<String> {
    match (doc, got) {
        (Value::Null, _) | (_, Value::Null) => None,
        (Value::Object(d), Value::Object(g)) => {
            let dk: Vec<&String> = d.keys().collect();
            let gk: Vec<&String> = g.keys().collect();
            if dk != gk {
                return Some(format!(
                    "{path}: documented keys {dk:?}, printed keys {gk:?}"
                ));
            }
            d.iter()
                .find_map(|(k, dv)| shape_mismatch(&format!("{path}.{k}"), dv, &g[k]))
        }
        (Value::Array(d), Value::Array(g)) => match d.first() {
            Some(d0) => g
                .iter()
                .enumerate()
                .find_map(|(i, gv)| shape_mismatch(&format!("{path}[{i}]"), d0, gv)),
            None if g.is_empty() => None,
            None => Some(format!(
                "{path}: documented as an empty list without an element example, printed {got}"
            )),
        },
        (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_)) => None,
        _ => Some(format!("{path}: documented {doc}, printed {got}")),
    }
}

/// Fail unless `got` has `doc`'s shape ([`shape_mismatch`]), `what` naming
/// the output.
pub fn assert_shape(what: &str, doc: &Value, got: &Value) {
    if let Some(m) = shape_mismatch(what, doc, got) {
        panic!("docs/cli-json.md is out of date: {m}\nprinted: {got:#}");
    }
}
