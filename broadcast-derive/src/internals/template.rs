//! Room templates: `"chat|{chat.id}"` interpolates fields of the event.

/// One piece of a template.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// Text copied as is (`{{`/`}}` already unescaped).
    Text(String),
    /// A dotted path into `self`: `chat.id` -> `["chat", "id"]`.
    Field(Vec<String>),
}

/// Splits a template into pieces, or says what is wrong with it.
pub fn parse(template: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '}' => {
                return Err(
                    "unmatched `}` in room template; write `}}` for a literal brace".into(),
                );
            }
            '{' => {
                let mut field = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => field.push(c),
                        None => {
                            return Err(
                                "unclosed `{` in room template; write `{{` for a literal brace"
                                    .into(),
                            );
                        }
                    }
                }
                let path: Vec<String> = field.trim().split('.').map(str::to_string).collect();
                if path.iter().any(|s| !is_ident_or_index(s)) {
                    return Err(format!(
                        "`{{{field}}}` in room template is not a field path like `{{chat.id}}`"
                    ));
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Field(path));
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

fn is_ident_or_index(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_digit() => s.chars().all(|c| c.is_ascii_digit()),
        Some(c) if c == '_' || c.is_alphabetic() => chars.all(|c| c == '_' || c.is_alphanumeric()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(path: &[&str]) -> Piece {
        Piece::Field(path.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn parses_fields_and_text() {
        assert_eq!(
            parse("chat|{chat.id}").unwrap(),
            [Piece::Text("chat|".into()), f(&["chat", "id"])]
        );
        assert_eq!(
            parse("{0}|{1}").unwrap(),
            [f(&["0"]), Piece::Text("|".into()), f(&["1"])]
        );
        assert_eq!(parse("lobby").unwrap(), [Piece::Text("lobby".into())]);
        assert_eq!(parse("a{{b}}").unwrap(), [Piece::Text("a{b}".into())]);
    }

    #[test]
    fn rejects_bad_templates() {
        assert!(parse("chat|{").is_err());
        assert!(parse("chat|}").is_err());
        assert!(parse("chat|{}").is_err());
        assert!(parse("chat|{a b}").is_err());
        assert!(parse("chat|{a.}").is_err());
        assert!(parse("chat|{a-b}").is_err());
    }
}
