//! Accessors over the untyped config JSON. All of them tolerate missing
//! keys and wrong types by returning None/empty.

use serde_json::Value;

/// Walk nested object keys.
pub fn get<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for k in keys {
        cur = cur.get(*k)?;
    }
    Some(cur)
}

pub fn str_at<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a str> {
    get(v, keys)?.as_str()
}

pub fn u64_at(v: &Value, keys: &[&str]) -> Option<u64> {
    get(v, keys)?.as_u64()
}

pub fn i64_at(v: &Value, keys: &[&str]) -> Option<i64> {
    get(v, keys)?.as_i64()
}

pub fn bool_at(v: &Value, keys: &[&str]) -> Option<bool> {
    get(v, keys)?.as_bool()
}

pub fn array_at<'a>(v: &'a Value, keys: &[&str]) -> &'a [Value] {
    match get(v, keys) {
        Some(Value::Array(a)) => a.as_slice(),
        _ => &[],
    }
}

/// The non-empty strings of an array (anything else is dropped).
pub fn strings_at(v: &Value, keys: &[&str]) -> Vec<String> {
    array_at(v, keys)
        .iter()
        .filter_map(|x| x.as_str().filter(|s| !s.is_empty()).map(str::to_string))
        .collect()
}

/// Whether the key path exists (even with a null value it counts as absent).
pub fn present(v: &Value, keys: &[&str]) -> bool {
    get(v, keys).is_some_and(|x| !x.is_null())
}

/// A number with a default for when the key is absent; `None` when the key
/// is present but not a non-negative integer.
pub fn u64_or(v: &Value, keys: &[&str], default: u64) -> Option<u64> {
    match get(v, keys) {
        None | Some(Value::Null) => Some(default),
        Some(x) => x.as_u64(),
    }
}

/// Whether the key path holds an array.
pub fn is_array(v: &Value, keys: &[&str]) -> bool {
    get(v, keys).is_some_and(Value::is_array)
}
