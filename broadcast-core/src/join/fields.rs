//! Reading a room's identifier fields from the data a client sent: what
//! `#[derive(Room)]` expands `from_join_data` to, kept here so the generated
//! code stays small. Not public API.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::joinable::RoomDataError;
use crate::util::echo;

/// How the struct's fields are declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `struct Lobby;`, `struct Lobby {}`, `struct Lobby()`.
    Unit,
    /// `struct ChatRoom(u64);`
    Tuple,
    /// `struct Pair { a: u64, b: String }`
    Named,
}

/// The identifier values of a join request, one per field in declaration
/// order, whatever JSON shape the client used.
///
/// Accepted shapes: for one field, the value itself (unless it is an array
/// or object, which are read as the two other shapes); for any number of
/// fields, an array with one value per field, in order; for named fields, an
/// object with exactly those keys. A room without fields accepts nothing,
/// `null`, `[]` or `{}`.
pub struct FieldValues<'a> {
    key: &'static str,
    fields: &'static [&'static str],
    values: Vec<&'a Value>,
}

impl<'a> FieldValues<'a> {
    /// Sorts `data` into one value per field, or says why it cannot.
    pub fn new(
        key: &'static str,
        fields: &'static [&'static str],
        shape: Shape,
        data: &'a Value,
    ) -> Result<Self, RoomDataError> {
        let values = match (shape, data) {
            (Shape::Unit, Value::Null) => Vec::new(),
            (Shape::Unit, Value::Array(a)) if a.is_empty() => Vec::new(),
            (Shape::Unit, Value::Object(o)) if o.is_empty() => Vec::new(),
            (Shape::Unit, other) => {
                return Err(RoomDataError::NotEmpty {
                    key,
                    got: json_type(other),
                });
            }
            (_, Value::Array(items)) => {
                if items.len() != fields.len() {
                    return Err(RoomDataError::Arity {
                        key,
                        expected: fields.len(),
                        got: items.len(),
                        fields: fields.join(", "),
                    });
                }
                items.iter().collect()
            }
            (Shape::Named, Value::Object(map)) => {
                if let Some(unknown) = map.keys().find(|k| !fields.contains(&k.as_str())) {
                    return Err(RoomDataError::UnknownField {
                        key,
                        field: echo(unknown),
                        fields: fields.join(", "),
                    });
                }
                let mut values = Vec::with_capacity(fields.len());
                for field in fields {
                    match map.get(*field) {
                        Some(v) => values.push(v),
                        None => return Err(RoomDataError::MissingField { key, field }),
                    }
                }
                values
            }
            (_, Value::Null) => {
                return Err(RoomDataError::Shape {
                    key,
                    expected: expected(fields, shape),
                    got: "nothing",
                });
            }
            (_, scalar) if fields.len() == 1 && !scalar.is_object() => vec![scalar],
            (_, other) => {
                return Err(RoomDataError::Shape {
                    key,
                    expected: expected(fields, shape),
                    got: json_type(other),
                });
            }
        };
        Ok(Self {
            key,
            fields,
            values,
        })
    }

    /// Parses the value of field `index`.
    pub fn get<T: DeserializeOwned>(&self, index: usize) -> Result<T, RoomDataError> {
        let field = self.fields.get(index).copied().unwrap_or("?");
        let Some(value) = self.values.get(index) else {
            return Err(RoomDataError::MissingField {
                key: self.key,
                field,
            });
        };
        T::deserialize(*value).map_err(|e| RoomDataError::Field {
            key: self.key,
            field,
            msg: e.to_string(),
        })
    }
}

fn expected(fields: &[&str], shape: Shape) -> String {
    let list = fields.join(", ");
    match (fields.len(), shape) {
        (1, Shape::Named) => format!("a value, [{list}] or {{\"{list}\": ...}}"),
        (1, _) => "a value or a one-element array".to_owned(),
        (_, Shape::Named) => format!("an array [{list}] or an object with keys {list}"),
        _ => format!("an array of {} values", fields.len()),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(data: Value, shape: Shape) -> Result<u64, RoomDataError> {
        FieldValues::new("chat", &["chat_id"], shape, &data)?.get(0)
    }

    #[test]
    fn single_field_accepts_scalar_array_and_object() {
        assert_eq!(one(json!(5), Shape::Tuple), Ok(5));
        assert_eq!(one(json!([5]), Shape::Tuple), Ok(5));
        assert_eq!(one(json!({"chat_id": 5}), Shape::Named), Ok(5));
        assert!(matches!(
            one(json!({"chat_id": 5}), Shape::Tuple),
            Err(RoomDataError::Shape { .. })
        ));
        assert!(matches!(
            one(json!(null), Shape::Tuple),
            Err(RoomDataError::Shape { got: "nothing", .. })
        ));
        assert!(matches!(
            one(json!("x"), Shape::Tuple),
            Err(RoomDataError::Field { .. })
        ));
        assert!(matches!(
            one(json!([1, 2]), Shape::Tuple),
            Err(RoomDataError::Arity { got: 2, .. })
        ));
        assert!(matches!(
            one(json!({"chat_id": 1, "x": 2}), Shape::Named),
            Err(RoomDataError::UnknownField { .. })
        ));
        assert!(matches!(
            one(json!({}), Shape::Named),
            Err(RoomDataError::MissingField { .. })
        ));
        assert!(matches!(
            one(json!(-1), Shape::Tuple),
            Err(RoomDataError::Field { .. })
        ));
    }

    #[test]
    fn several_fields() {
        let fields = &["a", "b"];
        let v = json!({"b": "x", "a": 1});
        let f = FieldValues::new("pair", fields, Shape::Named, &v).unwrap();
        assert_eq!(f.get::<u64>(0), Ok(1));
        assert_eq!(f.get::<String>(1), Ok("x".into()));
        let v = json!(1);
        assert!(matches!(
            FieldValues::new("pair", fields, Shape::Named, &v),
            Err(RoomDataError::Shape { .. })
        ));
    }

    #[test]
    fn unit_rooms_accept_only_nothing() {
        for ok in [json!(null), json!([]), json!({})] {
            assert!(FieldValues::new("lobby", &[], Shape::Unit, &ok).is_ok());
        }
        for bad in [json!(1), json!([1]), json!({"a": 1}), json!("")] {
            assert!(FieldValues::new("lobby", &[], Shape::Unit, &bad).is_err());
        }
    }

    #[test]
    fn long_unknown_keys_are_truncated() {
        let key = "k".repeat(1000);
        let v = json!({ key.clone(): 1 });
        let Err(RoomDataError::UnknownField { field, .. }) =
            FieldValues::new("c", &["a"], Shape::Named, &v)
        else {
            panic!("expected an unknown field error");
        };
        assert_eq!(field, echo(&key));
        assert!(field.len() < 100, "{field}");
    }
}
